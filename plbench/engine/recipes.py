"""Training recipes: named presets of the settings a published method trains with.

``csl`` reproduces the CSL authors' training script (Ben-Baruch et al., CVPR 2022; their repository's
``train.py`` and ``src/helper_functions/get_data.py``):

============== ============================== =====================================================
setting        value                          where it comes from
============== ============================== =====================================================
optimizer      Adam, lr 2e-4                  ``train.py``: ``torch.optim.Adam(..., lr=2e-4)``
weight decay   1e-4 on weights only           ``add_weight_decay(model, 1e-4)``: biases and 1-D norm
                                              parameters are not decayed
schedule       OneCycleLR, pct_start 0.2      ``lr_scheduler.OneCycleLR(max_lr=lr, epochs=...,
                                              pct_start=0.2)``, stepped every batch
epochs         30                             the README's training commands (``--epochs``)
batch          64                             ``--batch-size 64`` (README)
image size     448 (COCO, LVIS), 224 (OI)     ``--image-size`` in the README commands
augmentation   square resize, Cutout(0.5),    ``get_data.py``: ``Resize((s, s))``, ``CutoutPIL(cutout_
               RandAugment, to tensor         factor=0.5)``, ``RandAugment()``, ``ToTensor()``
EMA            decay 0.9997, every step       ``ModelEma(model, 0.9997)``; ``ema.update(model)`` after
                                              each ``optimizer.step()``
evaluation     plain and EMA model per epoch  ``validate_multi(val_loader, model, ema)``
============== ============================== =====================================================

``light`` keeps the same optimizer and schedule but flips images horizontally only and keeps no EMA: the
quick CPU setting of the demo and the tests.

The authors report the best mAP over all epochs of max(plain, EMA), chosen on the evaluation split;
plbench's headline number is the final epoch of a model fixed before training (the EMA model under
``csl``), and records the authors' number beside it (``authors_map`` in ``summary.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plbench.choices import Augment, Recipe


@dataclass(frozen=True)
class RecipeSettings:
    """The TrainConfig fields a recipe sets (each can still be overridden on the command line)."""

    augment: Augment
    ema_decay: float  # 0 = no EMA
    epochs: int
    batch_size: int
    lr: float  # peak of the one-cycle schedule
    weight_decay: float  # on weights only
    warmup_fraction: float  # OneCycleLR pct_start
    image_size: dict[str, int]  # per dataset; "*" = any other


RECIPES: dict[Recipe, RecipeSettings] = {
    Recipe.CSL: RecipeSettings(
        augment=Augment.CUTOUT_RANDAUGMENT, ema_decay=0.9997, epochs=30, batch_size=64, lr=2e-4,
        weight_decay=1e-4, warmup_fraction=0.2,
        image_size={"coco": 448, "lvis": 448, "openimages": 224, "*": 224},
    ),
    Recipe.LIGHT: RecipeSettings(
        augment=Augment.FLIP, ema_decay=0.0, epochs=10, batch_size=64, lr=2e-4, weight_decay=1e-4,
        warmup_fraction=0.2, image_size={"*": 224},
    ),
}

#: datasets whose published results use the CSL recipe; others (synthetic, fiftyone) default to light
CSL_DATASETS = ("coco", "lvis", "openimages")


def default_recipe(dataset: str) -> Recipe:
    """``csl`` for the datasets of the published tables, ``light`` otherwise."""
    return Recipe.CSL if dataset in CSL_DATASETS else Recipe.LIGHT


def recipe_values(recipe: Recipe | str, dataset: str) -> dict[str, Any]:
    """TrainConfig fields of ``recipe`` for ``dataset`` (the ``recipe`` field included)."""
    recipe = Recipe.parse(recipe)
    r = RECIPES[recipe]
    return {
        "recipe": recipe.value, "augment": r.augment.value, "ema_decay": r.ema_decay, "epochs": r.epochs,
        "batch_size": r.batch_size, "lr": r.lr, "weight_decay": r.weight_decay,
        "warmup_fraction": r.warmup_fraction, "image_size": r.image_size.get(dataset, r.image_size["*"]),
    }

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

``spml`` is the single-positive protocol of Cole et al. (CVPR 2021, github.com/elijahcole/single-positive-
multi-label, ``train.py`` and ``datasets.py``) that Zhou et al. 2022, Kim et al. 2022 / 2023 and Chen et al.
2024 train with (their code is built on it):

============== ============================== =====================================================
setting        value                          where it comes from
============== ============================== =====================================================
data           COCO train2014 less 20 %;      ``generate_split(..., val_frac=0.2, RandomState(1200))``:
               the 20 % select the epoch      split names ``train2014-spml-train`` / ``-spml-val``
                                              (:mod:`plbench.datasets.holdout`); test: val2014
labels         one positive per image         ``preproc/generate_observed_labels.py``; plbench's ``spl``
                                              simulation (its own seeded draw, not theirs)
model          ResNet-50 (torchvision         ``models.py``: ``resnet50(pretrained=True)``, global
               ImageNet weights), linear head average pool, ``Linear(2048, C)``
image size     448                            ``get_transforms``: ``Resize((448, 448))``
augmentation   horizontal flip                ``RandomHorizontalFlip(0.5)``
optimizer      Adam, no weight decay          ``torch.optim.Adam(opt_params, lr=P['lr'])``
batch, lr      8, 1e-5                        Cole et al. search batch {8, 16} x lr {1e-2 .. 1e-5};
                                              Kim et al. (``BridgeGapExplanationPAMC`` README,
                                              Chen et al.'s ``config.py``): 8 and 1e-5 on COCO
epochs         10                             ``P['num_epochs'] = 10`` (end to end)
EMA            none                           (not in their code)
============== ============================== =====================================================

Their learning rate is constant (``lr_schedule = "constant"``), and Kim et al. and Chen et al. train the
linear head at ``lr_mult = 10`` times the backbone's rate (``train.py``: ``{'params':
linear_classifier_params, 'lr': P['lr_mult'] * P['lr']}``; plbench: ``head_lr_mult = 10``; in Cole et
al.'s code ``lr_mult`` is the rate of ROLE's label estimator only, which plbench's ROLE method has).
"Linear init" (``train_mode = 'linear_init'``) is two runs, not a recipe: first a linear classifier on frozen
pre-extracted features (25 epochs; COCO: lr 1e-4 and batch 8 for AN-LS, 1e-3 and 16 for ROLE,
``linear_init_params``), its best epoch on the held-out split kept (with ROLE's label estimates, which plbench
does not carry over), then 10 end-to-end epochs starting from that classifier: ``plbench train --init-head
RUN``, or ``protocols = ["linear-init"]`` with a ``[linear_init]`` table in an experiment file
(:mod:`plbench.sweep.spec`). Chen et al.'s ``--linear_init N`` instead freezes the backbone for the
first N epochs of one run. The paper's number is the epoch with the best mAP on the held-out split;
plbench's headline is the final epoch, and ``best_val_map`` is the best epoch on whatever split the
run validates on (``plbench evaluate RUN --checkpoint best`` scores that epoch on val2014).

The authors of csl report the best mAP over all epochs of max(plain, EMA), chosen on the evaluation split;
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
    lr_schedule: str = "one_cycle"  # or "constant"
    head_lr_mult: float = 1.0  # the head's learning rate over the backbone's


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
    Recipe.SPML: RecipeSettings(
        augment=Augment.FLIP, ema_decay=0.0, epochs=10, batch_size=8, lr=1e-5, weight_decay=0.0,
        warmup_fraction=0.2, image_size={"*": 448}, lr_schedule="constant", head_lr_mult=10.0,
    ),
}

#: the spml protocol's splits of COCO 2014 (train on the 80 %, select on the 20 %, test on val2014)
SPML_SPLITS = {"train": "train2014-spml-train", "select": "train2014-spml-val", "test": "val2014"}
#: the backbone of the spml protocol: torchvision's ImageNet ResNet-50 weights, as timm names them
SPML_BACKBONE = "resnet50.tv_in1k"

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
        "lr_schedule": r.lr_schedule, "head_lr_mult": r.head_lr_mult,
    }

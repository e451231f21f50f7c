"""The spml recipe (Cole et al. 2021's single-positive protocol) as TrainConfig values."""

from __future__ import annotations

from plbench.choices import Recipe
from plbench.config import TrainConfig
from plbench.engine.recipes import SPML_SPLITS, recipe_values


def test_spml_values_are_the_authors():
    v = recipe_values("spml", "coco")
    assert v == {"recipe": "spml", "augment": "flip", "ema_decay": 0.0, "epochs": 10, "batch_size": 8, "lr": 1e-5,
                 "weight_decay": 0.0, "warmup_fraction": 0.2, "image_size": 448, "lr_schedule": "constant",
                 "head_lr_mult": 10.0}
    assert recipe_values("csl", "coco")["lr_schedule"] == "one_cycle" and recipe_values("csl", "coco")["head_lr_mult"] == 1
    assert recipe_values(Recipe.SPML, "nuswide")["image_size"] == 448  # Resize((448, 448)) for every dataset
    config = TrainConfig(**v)  # every value is a valid TrainConfig field
    assert config.headline_model == "plain"


def test_spml_splits_name_the_holdout_parts():
    assert SPML_SPLITS == {"train": "train2014-spml-train", "select": "train2014-spml-val", "test": "val2014"}

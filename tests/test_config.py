import json

import pytest

from plbench.config import TrainConfig
from plbench.errors import InputError


def test_round_trip(tmp_path):
    cfg = TrainConfig(dataset="coco", epochs=3, loss_options={"gamma_neg": 4.0})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert TrainConfig.load(path) == cfg


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"epochz": 3}))
    with pytest.raises(InputError) as e:
        TrainConfig.load(path)
    assert "epochz" in str(e.value) and str(path) in str(e.value)


# -- types and ranges from the annotations (issue 18, defect 4: each case was accepted or crashed before) --
@pytest.mark.parametrize("key, value, problem", [
    ("max_train_images", "abc", "expected int or null, but got 'abc'"),  # was a raw TypeError in the engine
    ("max_train_images", 2.5, "expected int or null, but got 2.5"),  # was accepted: trained on 3 images
    ("simulation", 5, "expected str or null, but got 5"),  # was accepted
    ("mode", 3.5, "expected str or null, but got 3.5"),  # was accepted
    ("epochs", "3", "expected int, but got '3'"),  # no string-to-number conversion
    ("pretrained", 1, "expected bool, but got 1"),
    ("lr", True, "expected float, but got True"),
    ("lr", float("nan"), "expected a finite number, but got nan"),
    ("image_size", 8, "expected a value >= 16, but got 8"),
    ("ema_decay", 1.0, "expected a value in [0, 1), but got 1.0"),
    ("warmup_fraction", 1.5, "expected a value in [0, 1], but got 1.5"),
    ("max_train_images", 0, "expected a value >= 1, but got 0"),
    ("mode", "bogus", "expected a mode in {ignore, negative, selective, ignore_normalized}, but got 'bogus'"),
    ("head", "mlp", "unknown head 'mlp'; available: boostlu, gap, ml-decoder"),  # heads are open (issue 19)
    ("head", "no_such_module:Head", "cannot import module 'no_such_module' of head 'no_such_module:Head'"),
    ("dataset_options", [1], "expected an object"),
])
def test_bad_value_in_a_file_is_an_input_error_naming_the_key(tmp_path, key, value, problem):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({key: value}))
    with pytest.raises(InputError) as e:
        TrainConfig.load(path)
    assert (e.value.field, e.value.path) == (key, path)
    assert e.value.problem.startswith(problem), e.value.problem
    assert e.value.message.startswith(f"Error in {path}, {key}: ")


def test_construction_and_replace_are_validated_too():
    with pytest.raises(InputError, match="max_train_images: expected int or null, but got 2.5"):
        TrainConfig(max_train_images=2.5)
    with pytest.raises(InputError, match="epochs: expected a value >= 1, but got 0"):
        TrainConfig().replace(epochs=0)
    with pytest.raises(InputError, match=r"unknown config key\(s\) \['epochz', 'zz'\]"):
        TrainConfig(epochz=3, zz=1)


def test_accepted_values_keep_their_meaning(tmp_path):
    from pathlib import Path

    from plbench.choices import Head, Mode

    cfg = TrainConfig(data_root=Path("d/x"), lr=1, mode=Mode.IGNORE, head=Head.ML_DECODER, max_train_images=None)
    # a Path becomes its string, an int lr a float, enum members their plain values (config.json is unchanged)
    assert cfg.data_root == "d/x" and type(cfg.data_root) is str
    assert cfg.lr == 1.0 and type(cfg.lr) is float
    assert type(cfg.mode) is str and cfg.mode == "ignore" and type(cfg.head) is str and cfg.head == "ml-decoder"
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()
    assert TrainConfig(mode=None).mode is None


def test_defaults_and_config_json_keys_unchanged():
    d = TrainConfig().to_dict()
    assert list(d) == [
        "dataset", "data_root", "train_split", "val_split", "select_split", "dataset_options", "simulation", "mode", "loss",
        "loss_options", "method", "prior", "backbone", "pretrained", "checkpoint", "head", "head_options", "init_head",
        "features", "recipe",
        "augment", "ema_decay", "image_size", "batch_size", "epochs", "lr", "weight_decay", "warmup_fraction",
        "lr_schedule", "head_lr_mult", "seed",
        "device", "amp", "compile", "workers", "preload", "cache_dir", "max_train_images", "out_dir", "run_name", "tag",
        "zsl_split", "class_embeddings", "prompt", "alignment_weight", "classification_weight", "missing_embeddings",
        "clip_model", "alignment_trainable"]
    assert (d["mode"], d["loss"], d["head"], d["recipe"], d["augment"], d["image_size"], d["batch_size"], d["epochs"],
            d["lr"], d["weight_decay"], d["warmup_fraction"], d["ema_decay"]) == (
        "selective", "pasl", "gap", "light", "flip", 224, 64, 10, 2e-4, 1e-4, 0.2, 0.0)


def test_pickles():
    import pickle

    cfg = TrainConfig(epochs=3, loss_options={"gamma_neg": 1.0})
    assert pickle.loads(pickle.dumps(cfg)) == cfg

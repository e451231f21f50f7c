"""``select_split`` in an experiment's ``[[datasets]]``: its runs select the epoch there, its cache and feature
stages cover the split, and a dataset without one keeps the stage hashes it always had (pinned below)."""

from __future__ import annotations

from pathlib import Path

from plbench.sweep import StageKind, expand, load_spec, parse_spec
from sweep_support import assert_refused, changed, stages_of

BASE = {
    "sweep": {"name": "t"},
    "datasets": [{"name": "synthetic", "data_root": "/nonexistent/data", "cache": True}],
    "labels": [{"scheme": "spl"}],
    "methods": [{"loss": "an"}],
    "seeds": [0],
    "protocols": ["fine-tuned", "linear"],
    "training": {"epochs": 1, "image_size": 32, "recipe": "light"},
}
#: the hashes of BASE's stages before select_split existed (computed with plbench at commit 34a9343)
PINNED = {
    "cache synthetic-train-32": "e493133845397a7d489d7b08bb6f8f3d48393fc69172ec7bbd7a87586f3503ad",
    "cache synthetic-val-32": "625506a52aa2991cc600a9a28c43599aca33b7eff46c624726fadf0dcf94d0ca",
    "simulate synthetic-spl-s0": "c6ea320ad55d8a198ce62cfdd603c14b185195521cd771e84bc99eed02968774",
    "train synthetic-spl-none-an-resnet10t-gap-s0-951b4549":
        "951b45493b37413272e97acd8ae4e64c6a47d0bf3831e256eb14645d7b8a8609",
    "features synthetic-resnet10t-32-484e1758": "99091acb7d55c3f3a40c880cf8ad55398fc5f8d58301dcb7686eb7a6fcd76103",
    "train synthetic-spl-none-an-resnet10t-gap-linear-s0-16e7aa5e":
        "16e7aa5ee0f35df0b117576a45f28435f29d2c4e5c9bcf1d98bb82878f9203de",
}


def _with_select(split: str = "train-spml-val") -> dict:
    return changed(BASE, datasets=[{**BASE["datasets"][0], "train_split": "train-spml-train", "select_split": split}])


def test_without_select_split_the_hashes_are_unchanged(tmp_path):
    plan = expand(parse_spec(BASE), tmp_path)
    got = {s.id: s.hash for s in plan.stages if s.kind is not StageKind.REPORT}
    assert got == PINNED
    assert all(s.settings["config"]["select_split"] is None for s in stages_of(plan, StageKind.TRAIN))


def test_select_split_reaches_the_runs_caches_and_features(tmp_path):
    plan = expand(parse_spec(_with_select()), tmp_path)
    trains = stages_of(plan, StageKind.TRAIN)
    assert [s.settings["config"]["select_split"] for s in trains] == ["train-spml-val"] * 2
    assert sorted(s.settings["split"] for s in stages_of(plan, StageKind.CACHE)) == \
        ["train-spml-train", "train-spml-val", "val"]
    (features,) = stages_of(plan, StageKind.FEATURES)
    assert features.settings["splits"] == ["train-spml-train", "val", "train-spml-val"]
    # the selection split is part of a run's identity: another one is another stage
    other = expand(parse_spec(_with_select("val-spml-val")), tmp_path)
    assert not {s.hash for s in trains} & {s.hash for s in stages_of(other, StageKind.TRAIN)}


def test_select_split_belongs_to_the_dataset_not_to_training():
    assert_refused(changed(BASE, training={**BASE["training"], "select_split": "x"}), "training.select_split",
                   ["unknown key 'select_split'", "put select_split in that [[datasets]] entry"])


def test_spml_coco_validates_on_val2014_and_selects_on_the_held_out_split():
    spec = load_spec(Path(__file__).resolve().parents[1] / "experiments" / "spml_coco.toml")
    configs = [s.settings["config"] for s in expand(spec, "out").stages if s.kind is StageKind.TRAIN]
    assert {(c["train_split"], c["val_split"], c["select_split"]) for c in configs} == \
        {("train2014-spml-train", "val2014", "train2014-spml-val")}

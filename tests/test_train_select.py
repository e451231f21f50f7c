"""Held-out epoch selection (``TrainConfig.select_split``, ``plbench train --select-split``): every epoch the
headline model is also scored on a selection split; the summary's selected epoch is the argmax of those
scores (the earliest on ties) and ``selected_map`` the validation mAP at that epoch; ``best.pt`` is that epoch;
kill and resume gives the same; a selection split the run cannot score is refused before anything is written.

Most runs here are linear (a GAP head on stored features of a fixed random resnet10t): the loop, checkpoints
and summary are the fine-tuned runs', at a fraction of the time; one CLI run covers images.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner

from plbench.artifacts.features import FeatureStore, store_folder
from plbench.artifacts.runs import RunFolder
from plbench.cli import app
from plbench.config import TrainConfig
from plbench.datasets import load_dataset
from plbench.datasets.holdout import spml_holdout
from plbench.engine.summary import selected_record, selection_key
from plbench.engine.train import train
from plbench.errors import InputError
from features_support import random_backbone_stores

runner = CliRunner()
TRAIN, SELECT = "train-spml-train", "train-spml-val"  # 80 / 20 % of the synthetic train split (datasets.holdout)
#: metrics.jsonl fields that depend on the clock
TIMING = ("train_seconds", "train_images_per_s")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return random_backbone_stores(tmp_path_factory.mktemp("select"), train=40, val=16, num_classes=4, data_seed=6,
                                  torch_seed=7, splits=(TRAIN, "val", SELECT))


def _config(setup, out, **kw):
    root, features, weights = setup
    cfg = dict(dataset="synthetic", data_root=str(root), features=str(features), backbone="resnet10t",
               checkpoint=str(weights), head="gap", image_size=32, batch_size=8, epochs=5, lr=3e-2, seed=2,
               device="cpu", out_dir=str(out), mode="ignore", train_split=TRAIN, select_split=SELECT)
    cfg.update(kw)
    return TrainConfig(**cfg)


@pytest.fixture(scope="module")
def selected_run(setup, tmp_path_factory):
    return train(_config(setup, tmp_path_factory.mktemp("runs")), progress=False)


def _lines(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_selected_record_is_the_first_best_and_skips_missing_values():
    history = [{"epoch": 0, "select_map": 50.0}, {"epoch": 1, "select_map": None},
               {"epoch": 2, "select_map": 60.0}, {"epoch": 3, "select_map": 60.0},
               {"epoch": 4, "select_map": float("nan")}, {"epoch": 5, "select_map": 59.9}]
    assert selected_record(history, "select_map")["epoch"] == 2  # ties: the earliest
    assert selected_record(history[:2], "select_map")["epoch"] == 0
    assert selected_record([{"epoch": 0, "select_map": None}, {"epoch": 1}], "select_map") is None
    assert selected_record([], "val_map") is None
    assert selection_key(TrainConfig(select_split="x")) == "select_map"
    assert selection_key(TrainConfig()) == "val_map"


def test_summary_selects_the_epoch_on_the_held_out_split(selected_run, setup):
    root = setup[0]
    lines, s = _lines(selected_run.run_dir), selected_run.summary
    assert [m["epoch"] for m in lines] == list(range(5))
    select = np.array([m["select_map"] for m in lines])
    e = int(np.argmax(select))  # numpy's argmax: the first of equal maxima
    assert (s["selection_split"], s["selected_epoch"]) == (SELECT, lines[e]["epoch"])
    assert s["selection_map"] == select[e]
    assert s["selected_map"] == lines[e]["val_map"]
    assert s["val_map"] == lines[-1]["val_map"]  # the headline stays the final epoch
    assert s["best_val_map"] == max(m["val_map"] for m in lines)  # still selected on the evaluation split
    # the selection split is the held-out 20 % of the train split, disjoint from the images trained on
    source = load_dataset("synthetic", root, "train")
    has_positive = (source.labels.matrix == 1).any(axis=1)
    train_rows, held_rows = spml_holdout(source.labels.image_ids, has_positive)
    assert s["selection_images"] == len(held_rows) == 8 and s["train_images"] == len(train_rows) == 32
    # best.pt is the chosen epoch, not the best validation epoch
    assert RunFolder(selected_run.run_dir).load_checkpoint("best")["epoch"] == s["selected_epoch"]


def test_selection_map_is_the_mAP_of_the_held_out_images(selected_run, setup):
    """The last epoch's select_map recomputed outside plbench: the final head on the stored features of the
    held-out images, per-class AP by scikit-learn, against the split's own labels."""
    root, features, _ = setup
    store = FeatureStore.open(store_folder(features, SELECT))
    pooled = np.asarray(store.pooled, dtype=np.float32)  # (8, 512)
    w = selected_run.model.state_dict()
    logits = pooled @ w["head.fc.weight"].numpy().T + w["head.fc.bias"].numpy()
    labels = load_dataset("synthetic", root, SELECT).labels
    np.testing.assert_array_equal(store.image_ids().astype(str), labels.image_ids.astype(str))  # rows aligned
    targets = labels.matrix
    aps = [average_precision_score(targets[:, c], logits[:, c]) for c in range(targets.shape[1])
           if 0 < targets[:, c].sum() < len(targets)]
    assert _lines(selected_run.run_dir)[-1]["select_map"] == pytest.approx(100 * np.mean(aps), abs=1e-3)


def test_kill_and_resume_gives_the_same_selection(selected_run, setup, tmp_path):
    class Stop(Exception):
        pass

    def stop_after_third(record):
        if record["epoch"] == 2:
            raise Stop

    cfg = _config(setup, tmp_path)
    with pytest.raises(Stop):
        train(cfg, progress=False, on_epoch=stop_after_third)
    assert [m["epoch"] for m in _lines(tmp_path / selected_run.run_dir.name)] == [0, 1, 2]
    resumed = train(cfg, progress=False)
    keys = ("selection_split", "selection_images", "selected_epoch", "selection_map", "selected_map", "val_map",
            "best_val_map")
    assert {k: resumed.summary[k] for k in keys} == {k: selected_run.summary[k] for k in keys}
    strip = lambda lines: [{k: v for k, v in m.items() if k not in TIMING} for m in lines]  # noqa: E731
    assert strip(_lines(resumed.run_dir)) == strip(_lines(selected_run.run_dir))
    best = [RunFolder(r.run_dir).load_checkpoint("best") for r in (resumed, selected_run)]
    assert best[0]["epoch"] == best[1]["epoch"]
    assert all(torch.equal(best[0]["model"][k], best[1]["model"][k]) for k in best[1]["model"])


def test_without_a_selection_split_nothing_is_selected_on_held_out_data(setup, tmp_path):
    run = train(_config(setup, tmp_path, select_split=None, epochs=2), progress=False)
    s = run.summary
    assert {k: s[k] for k in ("selection_split", "selected_epoch", "selected_map")} == dict.fromkeys(
        ("selection_split", "selected_epoch", "selected_map"))
    assert all("select_map" not in m for m in _lines(run.run_dir))
    assert set(s["data_fingerprints"]) == {"train_labels", "val_annotations"}  # older run folders still resume
    lines = _lines(run.run_dir)
    best_epoch = int(np.argmax([m["val_map"] for m in lines]))
    assert RunFolder(run.run_dir).load_checkpoint("best")["epoch"] == best_epoch


def _train_cli(setup, out, *extra):
    root, _, weights = setup
    return runner.invoke(app, ["train", "--dataset", "synthetic", "--data-root", str(root), "--backbone", "resnet10t",
                               "--checkpoint", str(weights), "--image-size", "32", "--batch-size", "8", "--lr",
                               "1e-3", "--device", "cpu", "--mode", "ignore", "--train-split", TRAIN, "--out",
                               str(out), "--run-name", "r", *extra])


def test_feature_store_without_the_selection_split_exits_2(setup, tmp_path):
    features = tmp_path / "features"
    for split in (TRAIN, "val"):  # a store of the training and validation splits only
        shutil.copytree(store_folder(setup[1], split), store_folder(features, split))
    result = _train_cli(setup, tmp_path / "runs", "--features", str(features), "--epochs", "1",
                        "--select-split", SELECT)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"no features of split '{SELECT}'" in message
    assert "plbench features extract --dataset synthetic" in message and f"--split {SELECT}" in message
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize("extra, words", [
    (("--select-split", "val"), "is the evaluation split"),
    (("--select-split", "nope-spml-val"), "nope"),
])
def test_a_selection_split_that_cannot_select_exits_2(setup, tmp_path, extra, words):
    result = _train_cli(setup, tmp_path / "runs", "--epochs", "1", *extra)
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split())
    assert not (tmp_path / "runs").exists()


def test_zero_shot_runs_take_no_selection_split(setup, tmp_path):
    with pytest.raises(InputError, match="not supported for zero-shot runs"):
        train(_config(setup, tmp_path, features=None, checkpoint=None, head="ml-decoder", zsl_split="nuswide",
                      class_embeddings="random"), progress=False)
    assert not any(tmp_path.iterdir())


def test_fine_tuned_cli_run_reports_the_epoch_chosen_on_the_split(setup, tmp_path):
    result = _train_cli(setup, tmp_path, "--epochs", "2", "--preload", "--select-split", SELECT)
    assert result.exit_code == 0, result.output
    s = RunFolder(tmp_path / "r").summary()
    lines = _lines(tmp_path / "r")
    assert s["protocol"] == "fine-tuned" and s["selection_split"] == SELECT
    e = int(np.argmax([m["select_map"] for m in lines]))
    assert (s["selected_epoch"], s["selected_map"]) == (e, lines[e]["val_map"])
    assert f"at the epoch chosen on {SELECT} (epoch {e + 1}): {s['selected_map']:.2f}" in result.stdout
    assert json.loads((tmp_path / "r" / "config.json").read_text())["select_split"] == SELECT

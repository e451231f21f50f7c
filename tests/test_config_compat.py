"""Run folders written before newer TrainConfig keys existed (method, zsl_split, class_embeddings, prompt,
compile) still resume: a key their config.json lacks counts as its default (plbench.config.DEFAULTS)."""

from __future__ import annotations

import json

import pytest

from faults_support import invoke, synthetic_root
from plbench.artifacts.runs import RunFolder
from plbench.config import DEFAULTS, TrainConfig
from plbench.errors import InputError

#: keys added to TrainConfig after run folders were first written (git log -p plbench/config.py)
LATER = ("compile", "method", "zsl_split", "class_embeddings", "prompt")


def _old_config_json(run_dir) -> dict:
    """Rewrite the run's config.json as a version without the later keys wrote it; returns what is left."""
    path = run_dir / "config.json"
    old = {k: v for k, v in json.loads(path.read_text()).items() if k not in LATER}
    path.write_text(json.dumps(old))
    return old


def test_a_missing_key_compares_as_its_default_and_only_then(tmp_path):
    cfg = TrainConfig(epochs=2)
    run = RunFolder(tmp_path / "r")
    run.open(cfg.to_dict(), DEFAULTS)
    old = _old_config_json(run.path)
    assert set(cfg.to_dict()) - set(old) == set(LATER)
    run.open(cfg.to_dict(), DEFAULTS)  # the same run
    with pytest.raises(InputError, match=r"differs in: method\)"):
        run.open(cfg.replace(method="role").to_dict(), DEFAULTS)
    with pytest.raises(InputError, match=r"differs in: compile, epochs\)"):  # a key present still counts
        run.open(cfg.replace(epochs=3, compile=True).to_dict(), DEFAULTS)
    with pytest.raises(InputError, match="a different configuration"):
        run.open(cfg.to_dict())  # without defaults: the strict comparison of before
    assert json.loads((run.path / "config.json").read_text()) == old  # never rewritten


def test_an_old_run_folder_is_returned_by_train_and_by_train_config(tmp_path):
    from plbench.engine.train import train

    root = synthetic_root(tmp_path / "synthetic", train=12, val=6, classes=3, seed=2)
    cfg = TrainConfig(data_root=str(root), backbone="resnet10t", image_size=32, batch_size=6, epochs=1, lr=1e-3,
                      device="cpu", mode="ignore", out_dir=str(tmp_path / "runs"), run_name="old")
    first = train(cfg, progress=False)
    _old_config_json(first.run_dir)
    again = train(cfg, progress=False)  # finished: returned as is, not refused as "a different configuration"
    assert again.summary == first.summary
    result = invoke(["train", "--config", str(first.run_dir / "config.json")])
    assert result.exit_code == 0, result.output
    assert "final mAP" in result.output

"""``--init-head RUN`` (Cole et al.'s "linear init"): the head starts from another run's best checkpoint;
a run with another head, other classes or another feature width is refused before anything is written."""

from __future__ import annotations

import pytest
import torch

from faults_support import expect_user_error, invoke, synthetic_root
from plbench.artifacts.runs import RunFolder
from plbench.engine.model import build_model
from plbench.engine.run_model import load_head_from_run
from plbench.errors import InputError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("init-head")
    data = synthetic_root(root / "syn", train=16, val=8, classes=3, seed=2)
    other = synthetic_root(root / "syn4", train=16, val=8, classes=4, seed=2)
    result = invoke(_args(data, root / "runs", "--run-name", "first"))
    assert result.exit_code == 0, result.output
    return {"data": data, "other": other, "run": root / "runs" / "first"}


def _args(data, out, *extra):
    return ["train", "--dataset", "synthetic", "--data-root", str(data), "--backbone", "resnet10t", "--image-size",
            "32", "--batch-size", "8", "--epochs", "1", "--lr", "1e-3", "--device", "cpu", "--preload", "--mode",
            "ignore", "--out", str(out), *extra]


def _head(state):
    return {k: v for k, v in state.items() if k.startswith("head.")}


def test_the_head_is_the_runs_best_checkpoint_head(base):
    run = RunFolder(base["run"])
    best = _head(run.load_checkpoint("best")["model"])
    model = build_model("resnet10t", "gap", 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    epoch = load_head_from_run(model, base["run"], run.summary()["class_names"], "gap")
    after = model.state_dict()
    assert epoch == 0
    for k, v in best.items():
        assert torch.equal(after[k], v) and not torch.equal(before[k], v)
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith("head."))  # backbone untouched


def test_a_run_started_from_a_head_records_it_and_differs(base, tmp_path):
    for name, extra in (("plain", ()), ("init", ("--init-head", str(base["run"])))):
        result = invoke(_args(base["data"], tmp_path, "--run-name", name, *extra))
        assert result.exit_code == 0, result.output
    init, plain = RunFolder(tmp_path / "init"), RunFolder(tmp_path / "plain")
    assert init.config()["init_head"] == str(base["run"]) and plain.config()["init_head"] is None
    assert not torch.equal(init.load_checkpoint("last")["model"]["head.fc.weight"],
                           plain.load_checkpoint("last")["model"]["head.fc.weight"])


@pytest.mark.parametrize("case, words", [
    ("other classes", ["--init-head", "3 classes", "4"]),
    ("other head", ["--init-head", "head is 'gap'", "ml-decoder"]),
    ("other width", ["--init-head", "best.pt", "does not fit", "fc.weight (3, 512) vs (3, 256)"]),
])
def test_refusals_name_the_mismatch_and_write_nothing(base, tmp_path, case, words):
    out = tmp_path / "runs"
    args = {
        "other classes": _args(base["other"], out),
        "other head": _args(base["data"], out, "--head", "ml-decoder"),
        "other width": [*_args(base["data"], out), "--backbone", "test_efficientnet_gn"],
    }[case]
    expect_user_error([*args, "--init-head", str(base["run"])], words, [out])


def test_a_folder_without_a_run_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        load_head_from_run(build_model("resnet10t", "gap", 3), tmp_path / "empty", ["a", "b", "c"], "gap")

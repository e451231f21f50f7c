"""Heads open the way methods do (issue 19): ``--head``, ``TrainConfig.head`` and an experiment's ``heads``
take the built-in heads (gap, ml-decoder, boostlu), installed entry points and ``package.module:Name``; a run
trained with an imported head is rebuilt by predict / evaluate; bad specs exit 2 before anything is written."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest
import torch

from faults_support import expect_user_error, invoke, synthetic_root
from plbench.artifacts.runs import RunFolder
from plbench.heads import GAPHead, create_head, list_heads, needs_spatial_features
from plbench.heads.boostlu import BoostLUHead

HEAD_MODULE = '''
import torch
from torch import nn


class MeanMaxHead(nn.Module):
    """Linear layer on the mean and the max over positions: (B, D, H, W) or (B, L, D) -> (B, C)."""

    def __init__(self, in_features, num_classes, scale=1.0):
        super().__init__()
        self.scale = float(scale)
        self.fc = nn.Linear(2 * in_features, num_classes)

    def forward(self, x):
        tokens = x.flatten(2).transpose(1, 2) if x.ndim == 4 else x
        return self.fc(torch.cat([tokens.mean(1), tokens.amax(1)], dim=1)) * self.scale
'''


@pytest.fixture(autouse=True)
def forget_plugins():
    yield
    for name in [n for n in sys.modules if n.startswith("plug_heads_")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("heads") / "synthetic", train=16, val=8, classes=3, seed=7)


def _train_args(root, out, *extra):
    """A one-epoch CPU run of resnet10t on ``root`` (``extra``: --head, and --mode or --method)."""
    return ["train", "--dataset", "synthetic", "--data-root", root, "--backbone", "resnet10t", "--image-size", "32",
            "--batch-size", "8", "--epochs", "1", "--lr", "1e-3", "--device", "cpu", "--preload", "--out", out, *extra]


def test_builtin_heads_and_what_they_read():
    assert list_heads() == ["boostlu", "gap", "ml-decoder"]
    assert isinstance(create_head("boostlu", 8, 3, alpha=2.0), BoostLUHead)
    assert (needs_spatial_features("gap"), needs_spatial_features("ml-decoder"), needs_spatial_features("boostlu")) \
        == (False, True, True)
    assert needs_spatial_features(torch.nn.Linear)  # a head that does not say: spatial, as before for non-gap heads


def test_a_module_name_head_trains_then_predict_and_evaluate_rebuild_it(tiny, tmp_path, monkeypatch):
    (tmp_path / "plug_heads_a.py").write_text(HEAD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "runs"
    result = invoke(_train_args(tiny, out, "--head", "plug_heads_a:MeanMaxHead", "--mode", "ignore"))
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    assert run_dir.name.endswith("-resnet10t-plug_heads_a.MeanMaxHead-s0")  # no colon in folder names
    run = RunFolder(run_dir)
    assert run.config()["head"] == "plug_heads_a:MeanMaxHead"
    rec = run.summary()["head_provenance"]
    assert rec["import_path"] == "plug_heads_a:MeanMaxHead" and rec["package"] is None
    assert rec["source_sha256"] == hashlib.sha256((tmp_path / "plug_heads_a.py").read_bytes()).hexdigest()
    assert run.load_checkpoint("last")["model"]["head.fc.weight"].shape == (3, 2 * 512)

    # evaluate on the run's own validation split gives exactly the run's scores (same batch size)
    result = invoke(["evaluate", run_dir, "--dataset", "synthetic", "--data-root", tiny, "--split", "val",
                     "--device", "cpu"])
    assert result.exit_code == 0, result.output
    got = RunFolder(run_dir / "eval-synthetic-val-last").predictions()
    np.testing.assert_allclose(got["scores"], run.predictions()["scores"], atol=1e-6)
    result = invoke(["predict", run_dir, tiny / "val2017", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 8

    # without the module, the run's head cannot be rebuilt: exit 2 naming config.json and the head
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    del sys.modules["plug_heads_a"]
    expect_user_error(["predict", run_dir, tiny / "val2017"],
                      [str(run_dir / "config.json"), "head", "the run was trained with head 'plug_heads_a:MeanMaxHead'",
                       "cannot import module 'plug_heads_a'", "PYTHONPATH"], [run_dir])


def test_boostlu_head_trains_with_ll_r_at_ten_times_the_learning_rate(tiny, tmp_path):
    out = tmp_path / "runs"
    result = invoke(_train_args(tiny, out, "--head", "boostlu", "--method", "ll_r"))
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    run = RunFolder(run_dir)
    assert run.summary()["head"] == "boostlu" and run.summary()["loss"] == "ll_r"
    assert run.summary()["head_provenance"]["import_path"] == "plbench.heads.boostlu:BoostLUHead"
    state = run.load_checkpoint("last")
    groups = state["optimizer"]["param_groups"]
    # backbone (decay, no decay), then the head's 1x1 convolution (weight, bias) at lr_mult 10 (authors' config.py)
    assert [g.get("lr_mult", 1.0) for g in groups] == [1.0, 1.0, 10.0, 10.0]
    assert [len(g["params"]) for g in groups[2:]] == [1, 1]
    assert groups[2]["lr"] == pytest.approx(10 * groups[0]["lr"]) and groups[0]["lr"] > 0
    weights = {k: v for k, v in state["model"].items() if k.startswith("head.")}
    assert set(weights) == {"head.fc.weight", "head.fc.bias"}


def test_parameter_groups_split_only_a_head_with_lr_mult():
    from plbench.engine.model import MultiLabelClassifier
    from plbench.engine.train import parameter_groups

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    plain = parameter_groups(MultiLabelClassifier(net, GAPHead(4, 2)), 0.1)
    assert [len(g["params"]) for g in plain] == [2, 4] and all("lr_mult" not in g for g in plain)
    boosted = parameter_groups(MultiLabelClassifier(net, BoostLUHead(4, 2)), 0.1)
    assert [(len(g["params"]), g["weight_decay"], g.get("lr_mult")) for g in boosted] == [
        (1, 0.1, None), (3, 0.0, None), (1, 0.1, 10.0), (1, 0.0, 10.0)]


def test_bad_head_specs_exit_2_before_anything_is_written(tiny, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    expect_user_error(_train_args(tiny, out, "--head", "hat", "--mode", "ignore"),
                      ["--head", "unknown head 'hat'; available: boostlu, gap, ml-decoder"], [out, tiny])
    expect_user_error(_train_args(tiny, out, "--head", "plug_heads_none:Head", "--mode", "ignore"),
                      ["--head", "cannot import module 'plug_heads_none'"], [out, tiny])
    (tmp_path / "plug_heads_b.py").write_text(HEAD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    expect_user_error(_train_args(tiny, out, "--head", "plug_heads_b:MeanMax", "--mode", "ignore"),
                      ["module 'plug_heads_b' has no attribute 'MeanMax'; it defines: MeanMaxHead"], [out, tiny])
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"head": "hat", "data_root": str(tiny), "out_dir": str(out)}))
    expect_user_error(["train", "--config", config], [str(config), "head: unknown head 'hat'"], [out, tiny])


def test_help_lists_the_builtin_heads():
    from faults_support import flat

    text = flat(invoke(["train", "--help"]).output)
    assert "Classification head: gap, ml-decoder, boostlu (built in), an installed plug-in" in text


def test_a_spatial_head_refuses_pooled_features(tmp_path):
    from plbench.engine.features import extract_split

    root = synthetic_root(tmp_path / "synthetic", train=8, val=4, classes=3, seed=1)
    torch.manual_seed(0)
    import timm

    weights = tmp_path / "w.pt"
    torch.save(timm.create_model("resnet10t", num_classes=0, global_pool="").state_dict(), weights)
    for split in ("train", "val"):
        extract_split("synthetic", root, split, tmp_path / "features", backbone="resnet10t", image_size=32,
                      checkpoint=weights, batch_size=8, device="cpu")  # pooled only (no --tokens)
    out = tmp_path / "runs"
    args = ["train", "--dataset", "synthetic", "--data-root", root, "--features", tmp_path / "features",
            "--checkpoint", weights, "--epochs", "1", "--device", "cpu", "--mode", "ignore", "--out", out]
    expect_user_error([*args, "--head", "boostlu"], ["the boostlu head reads spatial tokens, but these features are "
                                                     "pooled only", "--tokens"], [out, tmp_path / "features"])


SWEEP = """heads = ["gap", {{ name = "{head}", options = {{ scale = 2.0 }} }}]

[sweep]
name = "t"

[[datasets]]
name = "synthetic"
data_root = "{data}"

[[labels]]
scheme = "full"

[[methods]]
loss = "pasl"
mode = "negative"

[training]
epochs = 1
image_size = 32
device = "cpu"
"""


def test_a_sweep_with_a_module_name_head_dry_runs(tiny, tmp_path, monkeypatch):
    (tmp_path / "plug_heads_c.py").write_text(HEAD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "t.toml"
    path.write_text(SWEEP.format(head="plug_heads_c:MeanMaxHead", data=tiny))
    result = invoke(["sweep", path, "--out", tmp_path / "sweep", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "plug_heads_c.MeanMaxHead" in result.output or "plug_heads_c:MeanMaxHead" in result.output, result.output
    path.write_text(SWEEP.format(head="plug_heads_none:Head", data=tiny))
    expect_user_error(["sweep", path, "--out", tmp_path / "sweep2", "--dry-run"],
                      ["heads[1].name", "cannot import module 'plug_heads_none'"], [tmp_path / "sweep2"])

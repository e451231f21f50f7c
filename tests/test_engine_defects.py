"""Defects of the training engine found in review (issue 18), each with a test that failed before its fix:
``train --features`` taking its settings from the store (5), ``--strict`` refusing a corrupt image before
the run folder exists (7), no per-step target check in the loss and batched feature reads under torchrun
(9), the GPU code path (bfloat16 autocast, channels-last) exercised on the CPU (11), and the package's
import graph (no cycle; nothing outside training imports the training loop)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from faults_support import synthetic_root
from plbench.cli import app
from plbench.config import TrainConfig
from plbench.errors import InputError

runner = CliRunner()
BACKBONE = "test_efficientnet_gn"  # not the CLI's default backbone, so taking the store's value shows


def _invoke(args):
    return runner.invoke(app, [str(a) for a in args])


def _flat(text):
    return " ".join(text.split())


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("defects") / "synthetic", train=12, val=8, classes=3, seed=3)


@pytest.fixture(scope="module")
def features(synthetic, tmp_path_factory):
    from plbench.engine.features import extract_split

    out = tmp_path_factory.mktemp("features") / "feat"
    for split in ("train", "val"):
        extract_split("synthetic", synthetic, split, out, backbone=BACKBONE, image_size=32, batch_size=8,
                      device="cpu")
    return out


def _train_args(root, out, *extra):
    return ["train", "--dataset", "synthetic", "--data-root", root, "--batch-size", "8", "--epochs", "1",
            "--device", "cpu", "--mode", "ignore", "--out", out, "--run-name", "r", *extra]


# -- 5: train --features takes backbone, image size and pretrained from the store ------------------
def test_train_on_features_takes_the_store_settings(synthetic, features, tmp_path):
    result = _invoke(_train_args(synthetic, tmp_path / "runs", "--features", features))
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert (config["backbone"], config["image_size"], config["pretrained"]) == (BACKBONE, 32, False)
    # a value that agrees with the store is accepted too
    same = _invoke(_train_args(synthetic, tmp_path / "same", "--features", features, "--backbone", BACKBONE,
                               "--image-size", "32", "--no-pretrained"))
    assert same.exit_code == 0, same.output


@pytest.mark.parametrize("option, given, stored", [(["--backbone", "resnet10t"], "--backbone resnet10t",
                                                    f"--backbone {BACKBONE}"),
                                                   (["--image-size", "64"], "--image-size 64", "--image-size 32"),
                                                   (["--pretrained"], "--pretrained", "--no-pretrained")])
def test_train_on_features_refuses_a_contradicting_value_naming_both(synthetic, features, tmp_path, option,
                                                                       given, stored):
    result = _invoke(_train_args(synthetic, tmp_path / "runs", "--features", features, *option))
    out = _flat(result.output)
    assert result.exit_code == 2 and "Traceback" not in out, result.output
    assert f"{given} contradicts the feature store, which was extracted with {stored}" in out, out
    assert not (tmp_path / "runs").exists()


# -- 7: --strict on a corrupt JPEG stops before the run folder is made --------------------------------
def test_strict_refuses_a_corrupt_image_before_the_run_folder_exists(synthetic, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(synthetic, root)
    broken = sorted((root / "val2017").iterdir())[3]
    with open(broken, "r+b") as f:  # truncate the JPEG: undecodable
        f.truncate(100)
    result = _invoke(_train_args(root, tmp_path / "runs", "--image-size", "32", "--strict"))
    assert result.exit_code == 2 and broken.name in _flat(result.output), result.output
    assert not (tmp_path / "runs").exists()  # no run folder, not even config.json
    # without --strict the image is skipped and counted
    lenient = _invoke(_train_args(root, tmp_path / "lenient", "--image-size", "32"))
    assert lenient.exit_code == 0, lenient.output
    assert json.loads((tmp_path / "lenient" / "r" / "summary.json").read_text())["val_images_skipped"] == 1


# -- 9: no per-step target check in the loss; batched feature reads under torchrun -------------------
def _config(root, out, **kw):
    cfg = dict(dataset="synthetic", data_root=str(root), backbone="resnet10t", head="gap", image_size=32,
               batch_size=4, epochs=1, lr=1e-3, seed=0, device="cpu", out_dir=str(out), mode="ignore")
    cfg.update(kw)
    return TrainConfig(**cfg)


def test_targets_are_checked_once_at_load_not_in_every_step(synthetic, tmp_path, monkeypatch):
    import plbench.losses.functional as LF
    from plbench.engine.train import train

    calls = {"n": 0}
    original = LF.check_logits_targets

    def counting(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    monkeypatch.setattr(LF, "check_logits_targets", counting)
    train(_config(synthetic, tmp_path / "runs"), progress=False)
    assert calls["n"] == 0  # the loss checked the targets of each of the 3 steps before (a GPU sync each)

    from plbench.engine.inputs import check_targets
    from plbench.labels import PartialLabels

    bad = PartialLabels(["a", "b"], ["x", "y"], matrix=np.array([[1, 0], [2, -1]], np.int8))  # unvalidated
    with pytest.raises(InputError, match=r"expected label values in \{1, 0, -1\}, but got \[2\]"):
        check_targets(bad, "sim.parquet")


@pytest.mark.parametrize("in_memory", [False, True])
def test_rank_shard_keeps_feature_reads_batched(features, synthetic, monkeypatch, in_memory):
    """A store too large for memory: one positioned-read pass per batch; a small one: one read of all rows."""
    from plbench.artifacts.features import FeatureStore, store_folder
    from plbench.datasets import load_dataset
    from plbench.datasets.images import collate_skip_none
    from plbench.engine import features as engine_features
    from plbench.engine.distributed import RankShard
    from plbench.engine.features import FeatureDataset

    if not in_memory:
        monkeypatch.setattr(engine_features, "IN_MEMORY_BYTES", 0)
    store = FeatureStore.open(store_folder(features, "val"))
    dataset = FeatureDataset(store, load_dataset("synthetic", synthetic, "val").labels)
    reads = []
    original = store.read_rows
    store.read_rows = lambda rows, **k: reads.append(list(rows)) or original(rows, **k)
    shard = RankShard(dataset, 1, 2)  # rank 1 of 2: items 1, 3, 5, 7
    loader = torch.utils.data.DataLoader(shard, batch_size=3, collate_fn=collate_skip_none)
    batches = list(loader)
    # one positioned-read pass per batch (a read per item before), or every row once
    assert reads == ([list(range(len(dataset)))] if in_memory else [[1, 3, 5], [7]])
    assert [b[2].tolist() for b in batches] == [[1, 3, 5], [7]]
    np.testing.assert_array_equal(batches[0][0][:, 0].numpy(), store.pooled[[1, 3, 5]].astype(np.float32))


# -- 11: the GPU code path on the CPU: bfloat16 autocast and channels-last -------------------------
def _layout_probe(model):
    """Record (input dtype, input channels-last, output dtype) of the model's first convolution."""
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))

    def hook(module, inputs, output):
        x = inputs[0]
        seen.append((x.dtype, x.is_contiguous(memory_format=torch.channels_last), output.dtype))

    return seen, conv.register_forward_hook(hook)


def test_training_and_prediction_run_in_bf16_channels_last_on_the_cpu(synthetic, tmp_path, monkeypatch):
    from plbench.engine import train as engine
    from plbench.engine.predict import predict_files
    from plbench.engine.run_model import load_run_model

    monkeypatch.setenv("PLBENCH_CHANNELS_LAST", "1")
    seen: list = []
    build = engine.make_model

    def probed(config, data, device):
        model = build(config, data, device)
        seen.append(_layout_probe(model)[0])
        return model

    monkeypatch.setattr(engine, "make_model", probed)
    result = engine.train(_config(synthetic, tmp_path / "runs", amp=True, ema_decay=0.9), progress=False)
    (trained,) = seen
    # 3 training steps and the validation passes: every forward in bf16 on channels-last float32 input
    assert len(trained) >= 3 and set(trained) == {(torch.float32, True, torch.bfloat16)}, set(trained)
    s = result.summary
    assert np.isfinite(s["val_map"]) and np.isfinite(s["val_map_ema"]) and s["val_images"] == 8
    state = torch.load(result.run_dir / "last.pt", weights_only=True)
    weights = [v for v in state["model"].values() if v.is_floating_point()]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights)  # autocast: fp32 master weights

    model, pre, names = load_run_model(result.run_dir)
    probe, handle = _layout_probe(model)
    paths = sorted(str(p) for p in (synthetic / "val2017").iterdir())
    out = predict_files(model, paths, pre, len(names), batch_size=4, amp=True)
    handle.remove()
    assert probe and set(probe) == {(torch.float32, True, torch.bfloat16)}, set(probe)
    assert out.scores.dtype == np.float32 and out.scores.shape == (8, 3) and np.isfinite(out.scores).all()
    # bf16 scores agree with float32 NCHW ones to bf16 precision (8 bits of mantissa)
    monkeypatch.setenv("PLBENCH_CHANNELS_LAST", "0")
    ref = predict_files(model, paths, pre, len(names), batch_size=4, amp=False)
    np.testing.assert_allclose(out.scores, ref.scores, atol=3e-2)
    assert not np.array_equal(out.scores, ref.scores)  # the bf16 path really ran


# -- the import graph --------------------------------------------------------------------------------
def _engine_imports():
    """plbench.engine module -> the plbench modules it imports anywhere (function-level imports included)."""
    import ast
    from pathlib import Path

    import plbench.engine

    graph = {}
    for path in Path(plbench.engine.__file__).parent.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[f"plbench.engine.{path.stem}"] = {m for m in found if m.startswith("plbench.")}
    return graph


def test_no_import_cycle_and_nothing_outside_training_imports_the_loop():
    graph = _engine_imports()
    engine = set(graph)

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for m in graph.get(todo.pop(), ()):
                if m in engine and m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    cycles = sorted(m for m in engine if m in reach(m))
    assert cycles == [], cycles  # engine.features <-> engine.train before
    training = {"plbench.engine.train", "plbench.engine.loop", "plbench.engine.checkpoints"}
    for name in ("features", "inputs", "runtime", "predict", "evaluate_run", "export", "run_model", "forward"):
        module = f"plbench.engine.{name}"
        if module in graph:
            assert not reach(module) & training, (module, reach(module) & training)

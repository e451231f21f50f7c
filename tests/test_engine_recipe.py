"""The engine's recipes, faults and run-folder ownership: csl recipe (EMA, Cutout, RandAugment), NaN loss,
Ctrl-C (in process and as a real SIGINT to a subprocess), mid-epoch resume, locks, losses without modes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from plbench.artifacts.runs import RunFolder
from plbench.config import TrainConfig
from plbench.engine import loop as engine_loop
from plbench.engine import train as engine
from plbench.engine.train import AUTHORS_PROTOCOL, TrainingInterrupted, train
from plbench.errors import InputError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from plbench.datasets.synthetic import write_synthetic_coco

    root = tmp_path_factory.mktemp("tiny") / "synthetic"
    write_synthetic_coco(root, train=40, val=16, num_classes=4, image_size=32, seed=5)
    return root


def _config(root, out, **kw):
    base = dict(dataset="synthetic", data_root=str(root), backbone="resnet10t", head="gap", image_size=32,
                batch_size=8, epochs=2, lr=1e-3, seed=3, device="cpu", preload=True, out_dir=str(out), mode="ignore")
    base.update(kw)
    return TrainConfig(**base)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_csl_recipe_one_epoch_ema_cutout_randaugment(tiny_data, tmp_path, monkeypatch):
    from plbench.engine import data as engine_data
    from plbench.engine import transforms
    from plbench.engine.recipes import recipe_values

    csl = recipe_values("csl", "synthetic")
    assert (csl["augment"], csl["ema_decay"], csl["epochs"], csl["lr"]) == ("cutout-randaugment", 0.9997, 30, 2e-4)
    assert recipe_values("csl", "coco")["image_size"] == 448 and recipe_values("csl", "openimages")["image_size"] == 224
    calls = {"cutout": 0, "randaugment": 0}
    real_cutout, real_ra = transforms.cutout, transforms.rand_augment

    def counting_cutout(*a, **k):
        calls["cutout"] += 1
        return real_cutout(*a, **k)

    def counting_ra(*a, **k):
        calls["randaugment"] += 1
        return real_ra(*a, **k)

    monkeypatch.setattr(transforms, "cutout", counting_cutout)
    monkeypatch.setattr(transforms, "rand_augment", counting_ra)
    assert engine_data.train_augment is transforms.train_augment
    cfg = _config(tiny_data, tmp_path, **{**csl, "epochs": 1, "image_size": 32, "batch_size": 8, "lr": 1e-3})
    result = train(cfg, progress=False)
    s = result.summary
    # every training image went through Cutout and RandAugment once (40 images, 5 batches of 8)
    assert calls == {"cutout": 40, "randaugment": 40}
    assert s["recipe"] == "csl" and s["headline_model"] == "ema" and s["evaluation_protocol"].startswith("final epoch, EMA")
    rec = RunFolder(result.run_dir).metrics()[0]
    assert rec["val_map_plain"] is not None and rec["val_map_ema"] is not None
    assert s["val_map"] == s["val_map_ema"] == rec["val_map_ema"]
    assert s["authors_map"] == max(rec["val_map_plain"], rec["val_map_ema"])
    assert s["authors_map_protocol"] == AUTHORS_PROTOCOL
    # the EMA after 5 steps of decay 0.9997 is almost the initial model, not the trained one
    state = RunFolder(result.run_dir).load_checkpoint("last")
    assert state["ema"]["updates"] == 5
    assert result.model is not None and not result.model.training
    # the predictions are the headline (EMA) model's
    pred = RunFolder(result.run_dir).predictions()
    from plbench.metrics import mean_average_precision

    assert float(mean_average_precision(pred["scores"], pred["targets"])) == pytest.approx(s["val_map"], abs=1e-9)


def test_light_recipe_has_no_ema_and_uses_plain_model(tiny_data, tmp_path):
    result = train(_config(tiny_data, tmp_path, epochs=1), progress=False)
    s = result.summary
    assert s["headline_model"] == "plain" and s["val_map_ema"] is None and s["val_map"] == s["val_map_plain"]
    assert s["authors_map"] == s["val_map_plain"]
    assert s["preprocessing"] == {"image_size": 32, "mean": pytest.approx([0.485, 0.456, 0.406]),
                                  "std": pytest.approx([0.229, 0.224, 0.225])}
    assert s["protocol"] == "fine-tuned" and s["provenance"]["command"]


def test_tf_backbone_uses_its_own_normalization():
    cfg = TrainConfig(backbone="tf_efficientnet_lite0")
    assert engine.normalization(cfg) == ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])


def test_loss_without_modes_carries_no_mode(tiny_data, tmp_path):
    from plbench.artifacts.simulations import save_simulation
    from plbench.datasets import load_dataset
    from plbench.simulate import simulate

    split = load_dataset("synthetic", tiny_data, "train")
    sim = tmp_path / "spl.parquet"
    save_simulation(sim, simulate(split.labels, "spl", 1, 0), dataset="synthetic", fingerprint=split.fingerprint,
                    scheme="spl", param=1, seed=0)
    result = train(_config(tiny_data, tmp_path, epochs=1, loss="an", mode=None, simulation=str(sim)), progress=False)
    assert result.summary["mode"] is None and result.summary["loss"] == "an"
    assert result.run_dir.name == "synthetic-spl1-an-resnet10t-gap-s3"
    with pytest.raises(InputError, match="loss 'an' has no partial-label modes"):
        train(_config(tiny_data, tmp_path, epochs=1, loss="an", mode="selective"), progress=False)
    assert not (tmp_path / "synthetic-full-selective-an-resnet10t-gap-s3").exists()  # nothing written


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    from plbench.losses import LOSSES
    from plbench.losses.modules import PartialAsymmetricLoss

    class NaNInSecondEpoch(PartialAsymmetricLoss):
        calls = 0

        def forward(self, logits, targets):
            type(self).calls += 1
            loss = super().forward(logits, targets)
            return loss * float("nan") if type(self).calls == 7 else loss  # step 6 = epoch 2, step 1 of 5

    monkeypatch.setitem(LOSSES, "nan_test", NaNInSecondEpoch)
    cfg = _config(tiny_data, tmp_path, loss="nan_test")
    with pytest.raises(InputError, match=r"the loss became nan at epoch 2, step 6.*last good checkpoint"):
        train(cfg, progress=False)
    run = next(tmp_path.iterdir())
    state = RunFolder(run).load_checkpoint("last")
    assert state["epoch"] == 0 and state["partial"] is None
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (run / "summary.json").exists()


def test_interrupt_mid_epoch_then_resume_equals_uninterrupted(tiny_data, tmp_path, monkeypatch):
    full = train(_config(tiny_data, tmp_path / "full", ema_decay=0.9), progress=False)
    cfg = _config(tiny_data, tmp_path / "cut", ema_decay=0.9)
    checks = {"n": 0}

    def stop_after_seven_steps(self, device):
        checks["n"] += 1
        return checks["n"] == 7  # epoch 2 (5 steps per epoch), after its second step

    monkeypatch.setattr(engine.InterruptFlag, "is_set", stop_after_seven_steps)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, progress=False)
    assert (info.value.epoch, info.value.step) == (1, 7)
    state = RunFolder(info.value.run_dir).load_checkpoint("last")
    assert state["epoch"] == 0 and state["partial"]["batches_done"] == 2
    monkeypatch.undo()
    resumed = train(cfg, progress=False)
    assert _same(_weights(full.model), _weights(resumed.model))
    a, b = full.summary, resumed.summary
    for key in ("val_map", "val_map_plain", "val_map_ema", "best_val_map", "authors_map", "ap_per_class"):
        assert a[key] == b[key], key
    assert [m["epoch"] for m in RunFolder(resumed.run_dir).metrics()] == [0, 1]
    assert RunFolder(resumed.run_dir).metrics()[1]["train_loss"] == RunFolder(full.run_dir).metrics()[1]["train_loss"]


def test_second_process_on_the_same_run_folder_is_refused(tmp_path):
    a, b = RunFolder(tmp_path / "r"), RunFolder(tmp_path / "r")
    a.lock()
    try:
        with pytest.raises(InputError, match="another plbench process is training in this run folder"):
            b.lock()
    finally:
        a.unlock()
    b.lock()  # free again once released (a killed process releases it too: flock dies with the process)
    b.unlock()


def test_damaged_last_checkpoint_is_a_clear_error_and_best_resumes(tiny_data, tmp_path):
    cfg = _config(tiny_data, tmp_path, epochs=2)

    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, on_epoch=stop)
    run = next(tmp_path.iterdir())
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"last\.pt.*cannot be read.*--resume-from best"):
        train(cfg, progress=False)
    result = train(cfg, progress=False, resume_from="best")
    assert [m["epoch"] for m in RunFolder(run).metrics()] == [0, 1] and result.summary["epochs"] == 2


@pytest.mark.slow
def test_sigint_to_a_real_process_saves_and_prints_the_resume_command(tiny_data, tmp_path):
    cmd = [sys.executable, "-m", "plbench", "train", "--dataset", "synthetic", "--data-root", str(tiny_data),
           "--backbone", "resnet10t", "--image-size", "32", "--batch-size", "4", "--epochs", "40", "--lr", "1e-3",
           "--device", "cpu", "--preload", "--mode", "ignore", "--out", str(tmp_path), "--run-name", "r"]
    env = {**os.environ, "PLBENCH_PROGRESS": "off", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.time() + 240
    while not metrics.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Resume with: plbench train --config" in err and "Traceback" not in err
    state = RunFolder(tmp_path / "r").load_checkpoint("last")
    assert state["epoch"] >= 0 and not (tmp_path / "r" / "summary.json").exists()
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["epochs"] == 40 and cfg["recipe"] == "light"


def test_persistent_loader_workers_see_each_epoch(tiny_data, tmp_path):
    """One loader with persistent workers serves every epoch; augmentation still follows (seed, epoch, index)."""
    a = train(_config(tiny_data, tmp_path / "a", preload=False), progress=False)
    b = train(_config(tiny_data, tmp_path / "b", preload=False, workers=2), progress=False)
    assert _same(_weights(a.model), _weights(b.model))


def test_epoch_batch_sampler_shards_global_batches():
    from plbench.engine.data import EpochBatchSampler, epoch_order

    one = EpochBatchSampler(21, 8, seed=4)
    one.set_epoch(2)
    batches = list(one)
    order = epoch_order(21, 4, 2).tolist()
    assert batches == [order[0:8], order[8:16], order[16:21]] and len(one) == 3
    halves = [EpochBatchSampler(21, 8, seed=4, rank=r, world_size=2) for r in (0, 1)]
    for s in halves:
        s.set_epoch(2, start_batch=1)
    r0, r1 = (list(s) for s in halves)
    assert [a + b for a, b in zip(r0, r1)] == batches[1:]  # each global batch split between the ranks
    keyed = EpochBatchSampler(21, 8, seed=4, with_epoch=True)
    keyed.set_epoch(5)
    assert all(e == 5 for batch in keyed for e, _ in batch)
    # a last batch of one image is dropped (BatchNorm cannot train on it)
    assert sum(len(b) for b in EpochBatchSampler(17, 8, seed=0)) == 16
    # batch sizes without drawing the order equal those of the drawn batches, for every rank
    for n, bs, world, start in ((21, 8, 2, 1), (22, 8, 3, 0), (17, 8, 1, 0), (5, 4, 4, 0)):
        for r in range(world):
            s = EpochBatchSampler(n, bs, seed=1, rank=r, world_size=world)
            s.set_epoch(3, start_batch=start)
            assert s.batch_sizes() == [len(b) for b in s], (n, bs, world, r)


def test_piped_output_is_one_line_per_epoch(tiny_data, tmp_path, capsys, monkeypatch):
    """Not a terminal (CI, Slurm, a log file): no carriage-return frames, one plain line per epoch."""
    monkeypatch.delenv("PLBENCH_PROGRESS", raising=False)
    train(_config(tiny_data, tmp_path, epochs=3), progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 3, lines
    assert lines[2].startswith("synthetic-full-ignore-resnet10t-gap-s3 epoch 3/3: loss ") and "val mAP" in lines[2]


def test_head_lr_mult_and_constant_schedule(tiny_data, tmp_path, monkeypatch):
    """spml's settings: the head's groups step at 10x the backbone's rate, and a constant schedule keeps ``lr``
    every step (the one-cycle default ramps from lr/25 and anneals to ~0)."""
    seen = []
    real = engine_loop.train_step

    def spy(t, batch, lr):
        out = real(t, batch, lr)
        seen.append([(g["lr"], len(g["params"]), g.get("lr_mult", 1.0)) for g in t.optimizer.param_groups])
        return out

    monkeypatch.setattr(engine_loop, "train_step", spy)
    result = train(_config(tiny_data, tmp_path / "c", head_lr_mult=10.0, lr_schedule="constant"), progress=False)
    head = {id(p) for p in result.model.head.parameters()}
    assert len(seen) == 10  # 2 epochs x 5 steps
    for groups in seen:
        backbone = [lr for lr, n, mult in groups if mult == 1.0]
        heads = [lr for lr, n, mult in groups if mult == 10.0]
        assert backbone == [1e-3, 1e-3] and heads == pytest.approx([1e-2, 1e-2])
    assert sum(n for _, n, mult in seen[0] if mult == 10.0) == len(head) == 2  # the head's weight and bias
    assert [m["lr_end"] for m in RunFolder(result.run_dir).metrics()] == [1e-3, 1e-3]
    seen.clear()
    train(_config(tiny_data, tmp_path / "o"), progress=False)  # defaults: two groups, one-cycle
    assert all(len(groups) == 2 for groups in seen)
    lrs = [groups[0][0] for groups in seen]
    assert lrs[0] == pytest.approx(1e-3 / 25, rel=0.05) and max(lrs) <= 1e-3 and lrs[-1] < 1e-4

"""torchrun with two CPU processes (gloo): one run folder, every validation image scored once, and the
same result as one process.

Tolerance: the backbone is timm's ``test_efficientnet_gn`` (GroupNorm: no batch statistics, so a rank's
half batch normalises exactly as the whole batch would), so the two runs differ only by the order of
floating-point sums (the gradient all-reduce); scores agree to 1e-4 and mAP to 0.01 points. With
BatchNorm backbones on CPUs (no SyncBatchNorm there) the statistics are per rank and results differ more.
"""

import json

import numpy as np
import pytest

from distributed_support import PLBENCH, TORCHRUN, run, torchrun, train_args
from faults_support import synthetic_root
from plbench.artifacts.runs import RunFolder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("ddp") / "synthetic", train=48, val=21, classes=4, seed=5)


def _args(data, out):
    return train_args(data, out, "--mode", "ignore")


def test_torchrun_two_processes_equals_one_process(data, tmp_path):
    one = run([*PLBENCH, *_args(data, tmp_path / "one")], tmp_path)
    two = run([*TORCHRUN, *_args(data, tmp_path / "two")], tmp_path)
    assert two.stdout.count("final mAP") == 1  # only rank 0 reports
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["r"]  # one run folder
    a, b = RunFolder(tmp_path / "one" / "r"), RunFolder(tmp_path / "two" / "r")
    sa, sb = a.summary(), b.summary()
    assert sb["provenance"]["world_size"] == 2 and sa["provenance"]["world_size"] == 1
    pa, pb = a.predictions(), b.predictions()
    # every validation image scored exactly once, in dataset order
    assert len(pb["image_ids"]) == len(set(pb["image_ids"].tolist())) == 21 == sb["val_images"]
    np.testing.assert_array_equal(pa["image_ids"], pb["image_ids"])
    np.testing.assert_allclose(pa["scores"], pb["scores"], atol=1e-4)
    assert sb["val_map"] == pytest.approx(sa["val_map"], abs=0.01)
    la, lb = a.metrics(), b.metrics()
    assert [m["epoch"] for m in lb] == [0, 1]
    # the loss is the global batch's: rank 0 logs its own half, so it is not compared; lr schedule is the same
    assert [m["lr_end"] for m in la] == [m["lr_end"] for m in lb]


def test_torchrun_resume_after_a_finished_epoch(data, tmp_path):
    """A run folder written by two processes resumes (and is returned when finished) in one process."""
    run([*TORCHRUN, *_args(data, tmp_path)], tmp_path)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    again = run([*PLBENCH, "train", "--config", str(tmp_path / "r" / "config.json")], tmp_path)
    assert "final mAP" in again.stdout and cfg["epochs"] == 2


def test_torchrun_three_processes_with_an_empty_last_share(tmp_path):
    """50 images in global batches of 16: the last batch holds 2 images, so the third process has none. It
    must still join the gradient all-reduce (gloo aborted with 'Received data size doesn't match expected
    size' before), and the run must equal one process (a summed loss over the global batch either way)."""
    root = synthetic_root(tmp_path / "synthetic", train=50, val=9, classes=4, seed=5)
    args = [*_args(root, tmp_path / "three"), "--epochs", "1"]
    three = run([*torchrun(3), *args], tmp_path)
    one = run([*PLBENCH, *_args(root, tmp_path / "one"), "--epochs", "1"], tmp_path)
    assert three.stdout.count("final mAP") == 1
    a, b = RunFolder(tmp_path / "one" / "r"), RunFolder(tmp_path / "three" / "r")
    assert b.summary()["provenance"]["world_size"] == 3 and b.summary()["train_images_skipped"] == 0
    np.testing.assert_allclose(a.predictions()["scores"], b.predictions()["scores"], atol=1e-4)

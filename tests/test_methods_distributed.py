"""Methods under torchrun (two CPU processes, gloo): ROLE (an N x C parameter, its gradients averaged over the
processes) gives one process's result, and the example plug-in (per-image state written with write_rows, checked
for identical replicas every epoch) runs from ``module:Name`` on PYTHONPATH. Tolerances as tests/test_distributed.py
(GroupNorm backbone: the runs differ by the order of floating-point sums only)."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from plbench.artifacts.runs import RunFolder
from plugin_support import EXAMPLE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from plbench.datasets.synthetic import write_synthetic_coco

    root = tmp_path_factory.mktemp("ddp-methods") / "synthetic"
    write_synthetic_coco(root, train=32, val=12, num_classes=4, image_size=32, seed=5)
    return root


def _args(data, out, *extra):
    return ["train", "--dataset", "synthetic", "--data-root", str(data), "--backbone", "test_efficientnet_gn",
            "--image-size", "32", "--batch-size", "16", "--epochs", "2", "--lr", "1e-3", "--device", "cpu",
            "--preload", "--seed", "1", "--out", str(out), "--run-name", "r", *extra]


def _run(cmd, cwd):
    env = {**os.environ, "PLBENCH_PROGRESS": "off", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "plbench"]


def test_role_under_two_processes_equals_one_process(data, tmp_path):
    role = ("--method", "role", "--loss-option", "expected_num_pos=1.5")
    _run([sys.executable, "-m", "plbench", *_args(data, tmp_path / "one", *role)], tmp_path)
    _run([*TORCHRUN, *_args(data, tmp_path / "two", *role)], tmp_path)
    a, b = RunFolder(tmp_path / "one" / "r"), RunFolder(tmp_path / "two" / "r")
    from plbench.datasets import load_dataset
    from plbench.methods.role import init_estimate_logits
    init = init_estimate_logits(torch.from_numpy(load_dataset("synthetic", data, "train").labels.to_dense()), 1)
    ea = a.load_checkpoint("last")["extra"]["method"]["role.estimator.logits"]
    eb = b.load_checkpoint("last")["extra"]["method"]["role.estimator.logits"]
    # the estimates (gradients averaged over processes) agree to float rounding (measured 5e-7) while training
    # moved them by 1e-2; the model's scores differ more (measured 4e-4) because ROLE's EPR term is a statistic
    # of each process's half batch, as EPR's is (plbench.engine.distributed)
    assert float((ea - init).abs().max()) > 1e-3
    torch.testing.assert_close(ea, eb, atol=1e-5, rtol=0)
    np.testing.assert_allclose(a.predictions()["scores"], b.predictions()["scores"], atol=2e-3)
    assert b.summary()["provenance"]["world_size"] == 2


def test_example_plugin_from_module_name_under_two_processes(data, tmp_path):
    _run([*TORCHRUN, *_args(data, tmp_path, "--method", "plbench_example_method:SoftTargets")], tmp_path)
    run = RunFolder(tmp_path / "r")
    running = run.load_checkpoint("last")["extra"]["method"]["running"]
    assert running.shape == (32, 4) and (running > 0).all()  # rows of both processes' batches were written
    assert run.summary()["method"]["import_path"] == "plbench_example_method:SoftTargets"


def test_per_image_state_with_an_empty_share_under_three_processes(tmp_path):
    """50 images in global batches of 16: the last batch holds 2 images, so the third process trains on an
    empty batch. LL-Cp writes its corrections with write_rows (an all_gather) inside its loss; the empty
    process must run the loss too and join the gather (it skipped the loss, and the other two waited forever)."""
    from plbench.datasets.synthetic import write_synthetic_coco

    root = tmp_path / "synthetic"
    write_synthetic_coco(root, train=50, val=9, num_classes=4, image_size=32, seed=5)
    three = [*TORCHRUN[:TORCHRUN.index("2")], "3", *TORCHRUN[TORCHRUN.index("2") + 1:]]
    env = {**os.environ, "PLBENCH_PROGRESS": "off", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*three, *_args(root, tmp_path, "--method", "ll_cp", "--epochs", "1")], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=180)  # measured 15 s on 2 cores; the hang never ends
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its three workers
        proc.communicate()
        pytest.fail("the run hung: a process with an empty batch did not join write_rows")
    assert proc.returncode == 0, err[-4000:]
    run = RunFolder(tmp_path / "r")
    assert run.summary()["provenance"]["world_size"] == 3 and run.summary()["train_images_skipped"] == 0
    corrected = run.load_checkpoint("last")["extra"]["method"]["ll.corrected"]
    assert corrected.shape == (50, 4)  # identical on the three processes: checked at the epoch's end

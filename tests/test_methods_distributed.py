"""Methods under torchrun (two CPU processes, gloo): ROLE (an N x C parameter, its gradients averaged over the
processes) and EM + APL (pseudo-labels from a pass over the training set at each epoch's end) give one process's
result, and the example plug-in (per-image state written with write_rows, checked
for identical replicas every epoch) runs from ``module:Name`` on PYTHONPATH. Tolerances as tests/test_distributed.py
(GroupNorm backbone: the runs differ by the order of floating-point sums only)."""

import os
import signal
import subprocess

import numpy as np
import pytest
import torch

from distributed_support import PLBENCH, TORCHRUN, run, torchrun, train_args
from faults_support import simulation_file, synthetic_root
from plbench.artifacts.runs import RunFolder
from plugin_support import EXAMPLE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("ddp-methods") / "synthetic", train=32, val=12, classes=4, seed=5)


def _run(cmd, cwd):
    return run(cmd, cwd, pythonpath=(str(EXAMPLE),))


def test_role_under_two_processes_equals_one_process(data, tmp_path):
    role = ("--method", "role", "--loss-option", "expected_num_pos=1.5")
    _run([*PLBENCH, *train_args(data, tmp_path / "one", *role)], tmp_path)
    _run([*TORCHRUN, *train_args(data, tmp_path / "two", *role)], tmp_path)
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


def test_em_apl_under_two_processes_equals_one_process(data, tmp_path):
    """EM + APL's epoch-end pass gathers every process's scores, so each process writes the same pseudo-labels;
    warm-up 1 of 2 epochs: rounds after both epochs, so the second epoch trains on pseudo-labels."""
    spl = simulation_file(data, tmp_path / "spl.parquet")  # single positives: the rest is unannotated
    em_apl = ("--method", "em_apl", "--loss-option", "settings=coco", "--loss-option", "warmup_epoch=1",
              "--simulation", str(spl))
    _run([*PLBENCH, *train_args(data, tmp_path / "one", *em_apl)], tmp_path)
    _run([*TORCHRUN, *train_args(data, tmp_path / "two", *em_apl)], tmp_path)
    a, b = RunFolder(tmp_path / "one" / "r"), RunFolder(tmp_path / "two" / "r")
    sa, sb = (r.load_checkpoint("last")["extra"]["method"] for r in (a, b))
    # quota: int(0.9 * unannotated per class / (2 - 1)) per round; two rounds cover nearly all of them
    assert int(sa["apl.pseudo_mask"].sum()) > 0
    assert torch.equal(sa["apl.pseudo_mask"], sb["apl.pseudo_mask"]) and torch.equal(sa["apl.quota"], sb["apl.quota"])
    torch.testing.assert_close(sa["apl.pseudo_targets"], sb["apl.pseudo_targets"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(a.predictions()["scores"], b.predictions()["scores"], atol=2e-3)
    assert b.summary()["provenance"]["world_size"] == 2


def test_example_plugin_from_module_name_under_two_processes(data, tmp_path):
    _run([*TORCHRUN, *train_args(data, tmp_path, "--method", "plbench_example_method:SoftTargets")], tmp_path)
    run = RunFolder(tmp_path / "r")
    running = run.load_checkpoint("last")["extra"]["method"]["running"]
    assert running.shape == (32, 4) and (running > 0).all()  # rows of both processes' batches were written
    assert run.summary()["method"]["import_path"] == "plbench_example_method:SoftTargets"


def test_installed_example_plugin_by_entry_point_name_under_two_processes(data, tmp_path, tmp_path_factory):
    from plugin_support import install_example

    site = install_example(tmp_path_factory.mktemp("site"))
    run([*TORCHRUN, *train_args(data, tmp_path, "--method", "soft_targets")], tmp_path, pythonpath=(str(site),))
    folder = RunFolder(tmp_path / "r")
    rec = folder.summary()["method"]
    assert (rec["spec"], rec["package"], rec["version"]) == ("soft_targets", "plbench-example-method", "0.1.0")
    assert folder.summary()["provenance"]["world_size"] == 2
    assert (folder.load_checkpoint("last")["extra"]["method"]["running"] > 0).all()


def test_per_image_state_with_an_empty_share_under_three_processes(tmp_path):
    """50 images in global batches of 16: the last batch holds 2 images, so the third process trains on an
    empty batch. LL-Cp writes its corrections with write_rows (an all_gather) inside its loss; the empty
    process must run the loss too and join the gather (it skipped the loss, and the other two waited forever)."""
    root = synthetic_root(tmp_path / "synthetic", train=50, val=9, classes=4, seed=5)
    env = {**os.environ, "PLBENCH_PROGRESS": "off", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*torchrun(3), *train_args(root, tmp_path, "--method", "ll_cp", "--epochs", "1")], env=env,
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

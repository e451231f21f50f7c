"""Interrupted work: a writer of each artifact kind killed with SIGKILL in the middle of its write leaves the
previous file intact and no partial file in its place; a training killed with SIGKILL at three points (one of
them while a checkpoint is written) and run again ends with the same weights and metrics as an uninterrupted
run.

The kill is made deterministic: the child process replaces ``os.replace`` by a function that, for the target
file, cuts the finished temporary file to half its size (the state of a write stopped halfway) and SIGKILLs
its own process before the rename; a training is killed at a chosen optimizer step the same way. A writer
that does not go through a temporary file and a rename never reaches the hook, and its test fails.

(The engine's Ctrl-C / SIGINT resume, run-folder lock and damaged last.pt are in tests/test_engine_recipe.py.)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
pytest.register_assert_rewrite("faults_support")  # its asserts report values, as in a test module

from faults_support import invoke, simulation_file, synthetic_root

#: imported first by every child: kill the process while ``target`` is being put in place
HOOK = """
import os, signal, sys
from pathlib import Path
_real_replace = os.replace
TARGET, NTH = {target!r}, {nth}
_seen = [0]

def _replace(src, dst, *a, **k):
    if Path(dst).name == TARGET:
        _seen[0] += 1
    if Path(dst).name == TARGET and _seen[0] == NTH:
        os.truncate(src, os.path.getsize(src) // 2)  # the temporary file, half written
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_replace(src, dst, *a, **k)

os.replace = _replace
"""

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PLBENCH_PROGRESS": "off"}


def _run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=ENV, check=False,
                          cwd=Path(__file__).resolve().parents[1])


def _assert_killed(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == -signal.SIGKILL, \
        f"the writer finished without a temporary file + rename (rc {done.returncode}):\n{done.stderr[-2000:]}"


# ------------------------------------------------------------------------------------------- the writers

#: kind -> (target file name, Python code writing a NEW version of it into folder ``out`` (a str))
WRITERS = {
    "parquet simulation": ("s.parquet", """
from plbench.artifacts.simulations import save_simulation
from plbench.datasets import load_dataset
from plbench.simulate import simulate
split = load_dataset("synthetic", {syn!r}, "train")
save_simulation(out + "/s.parquet", simulate(split.labels, "rps", 0.5, {seed}), dataset="synthetic",
                fingerprint=split.fingerprint, scheme="rps", param=0.5, seed={seed})
"""),
    "prior CSV": ("p.csv", """
from plbench.priors import write_prior_csv
write_prior_csv(out + "/p.csv", ["a", "b", "c"], [0.1 * {seed}, 0.2, 0.3])
"""),
    "JSON": ("summary.json", """
from plbench.artifacts.atomic import write_json
write_json(out + "/summary.json", {{"val_map": {seed}, "pad": "x" * 5000}})
"""),
    "checkpoint": ("last.pt", """
import torch
from plbench.artifacts.runs import RunFolder
torch.manual_seed({seed})
RunFolder(out).save_checkpoint("last", {{"model": torch.nn.Linear(64, 64).state_dict(), "epoch": {seed}}})
"""),
    "report": ("report.html", """
from plbench.report import write_report
write_report([{run!r}], out + "/rep", title="version {seed}")
"""),
    "image cache": ("images.u8", """
from plbench.datasets import load_dataset
from plbench.datasets.images import build_image_cache
split = load_dataset("synthetic", {syn!r}, "val")
build_image_cache(split.image_paths.tolist(), 16 + {seed}, out + "/cache", workers=1)
"""),
    "features": ("pooled.f16", """
import numpy as np
from plbench.artifacts.features import write_feature_store
x = np.full((4, 8), {seed}, dtype=np.float32)
write_feature_store(out + "/feat", [(np.arange(4), x, None)], num_images=4, num_features=8, num_tokens=None,
                    image_ids=np.arange(4), meta={{"dataset": "synthetic", "split": "val", "version {seed}": 1}})
"""),
}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    syn = synthetic_root(base / "syn", train=8, val=4, classes=3)
    r = invoke(["train", "--dataset", "synthetic", "--data-root", syn, "--image-size", "32", "--batch-size", "8",
                "--epochs", "1", "--device", "cpu", "--mode", "ignore", "--out", base / "runs", "--run-name", "r"])
    assert r.exit_code == 0, r.output
    return {"syn": str(syn), "run": str(base / "runs" / "r")}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_writer_killed_mid_write_keeps_the_old_file(small, tmp_path, kind):
    target, code = WRITERS[kind]
    out = tmp_path / "out"
    out.mkdir()
    prelude = f"out = {str(out)!r}\n"
    # the old version, written normally
    done = _run_child(prelude + textwrap.dedent(code).format(seed=1, **small))
    assert done.returncode == 0, done.stderr[-3000:]
    before = _files(out)
    old = {k: v for k, v in before.items() if Path(k).name == target}
    assert len(old) == 1, sorted(before)
    # a new version, killed halfway through writing the target
    done = _run_child(HOOK.format(target=target, nth=1) + prelude + textwrap.dedent(code).format(seed=2, **small))
    _assert_killed(done)
    after = _files(out)
    (path,) = old
    assert after.get(path) == old[path], f"{path} was replaced or damaged"
    for name, data in after.items():  # anything else in place is the old file (or a new one, complete)
        if name in before and not Path(name).name.endswith(".tmp"):
            assert data == before[name] or Path(name).name != target
    partial = [n for n in after if n not in before and not Path(n).name.startswith(".")]
    assert not partial, f"new non-temporary files appeared: {partial}"
    _still_readable(kind, out)


def _still_readable(kind: str, out: Path) -> None:
    """What remains opens as the old artifact, or is refused with an InputError: never read half-written."""
    from plbench.errors import InputError

    if kind == "image cache":
        from plbench.datasets.images import ImageCache

        try:  # the index is removed before the data file is replaced: the cache is rebuilt, never misread
            cache = ImageCache.open(out / "cache")
            assert len(cache) == 4
        except InputError:
            pass
    elif kind == "features":
        from plbench.artifacts.features import FeatureStore

        try:
            store = FeatureStore.open(out / "feat")
            assert np.all(store.pooled == 1)
        except InputError:
            pass
    elif kind == "parquet simulation":
        from plbench.artifacts.simulations import load_simulation

        _, meta = load_simulation(out / "s.parquet")
        assert meta["seed"] == 1
    elif kind == "checkpoint":
        from plbench.artifacts.runs import RunFolder

        assert RunFolder(out).load_checkpoint("last", map_location="cpu")["epoch"] == 1


# --------------------------------------------------------------------------------------------- training

TRAIN_CHILD = """
import os, signal, sys, torch
KILL_AT_STEP = {step}
_count = [0]
_real_step = torch.optim.Adam.step

def step(self, *a, **k):
    _count[0] += 1
    if _count[0] == KILL_AT_STEP:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_step(self, *a, **k)

torch.optim.Adam.step = step
from plbench.cli import app
sys.argv = ["plbench"] + {args!r}
app()
"""


def _train_args(syn: str, out: Path, labels: list[str] = ("--mode", "ignore")) -> list[str]:
    return ["train", "--dataset", "synthetic", "--data-root", syn, "--image-size", "32", "--batch-size", "8",
            "--epochs", "3", "--lr", "1e-3", "--seed", "4", "--device", "cpu", *labels,
            "--out", str(out), "--run-name", "r"]


def _train(args: list[str], step: int = 0, hook: str = "") -> subprocess.CompletedProcess:
    return _run_child(hook + TRAIN_CHILD.format(step=step, args=args), timeout=300)


@pytest.mark.slow
def test_training_killed_three_times_ends_equal_to_uninterrupted(tmp_path):
    """24 images, batch 8: 3 steps per epoch, 3 epochs. Kills: at a random step of the first epoch (before any
    checkpoint), while last.pt is written (after epoch 1 or 2), at a random step of a later epoch; then run to
    the end. Weights (last.pt model) and every epoch's metrics equal those of an uninterrupted run."""
    import torch

    from plbench.artifacts.runs import RunFolder

    syn = str(synthetic_root(tmp_path / "syn", train=24, val=8, classes=3, seed=2))
    rng = random.Random(14)
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    done = _train(_train_args(syn, ref_dir))
    assert done.returncode == 0, done.stderr[-3000:]

    args = _train_args(syn, cut_dir)
    _assert_killed(_train(args, step=rng.randint(1, 3)))  # first epoch: no checkpoint yet
    assert not (cut_dir / "r" / "last.pt").exists()
    # while last.pt of epoch 2 is written: the one of epoch 1 stays, whole
    _assert_killed(_train(args, hook=HOOK.format(target="last.pt", nth=2)))
    assert RunFolder(cut_dir / "r").load_checkpoint("last", "cpu")["epoch"] == 0
    _assert_killed(_train(args, step=rng.randint(1, 6)))  # resumed at epoch 2: a step of epoch 2 or 3
    done = _train(args)
    assert done.returncode == 0, done.stderr[-3000:]

    ref, cut = RunFolder(ref_dir / "r"), RunFolder(cut_dir / "r")
    a, b = ref.load_checkpoint("last", "cpu"), cut.load_checkpoint("last", "cpu")
    assert a["epoch"] == b["epoch"] == 2
    assert set(a["model"]) == set(b["model"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    keys = ("epoch", "train_loss", "val_map", "val_map_plain")
    assert [{k: m.get(k) for k in keys} for m in ref.metrics()] == [{k: m.get(k) for k in keys} for m in cut.metrics()]
    assert ref.summary()["val_map"] == cut.summary()["val_map"]
    assert not [p for p in (cut_dir / "r").iterdir() if p.name.endswith(".tmp") and p.stat().st_size == 0]


@pytest.mark.slow
@pytest.mark.parametrize("method, options", [
    ("role", ["expected_num_pos=1.5"]),  # per-image state: a learnable N x C matrix of label estimates
    ("em_apl", ["warmup_epoch=1", "settings=coco"]),  # epoch-end hook: pseudo-labels written after epoch 1
])
def test_a_method_with_per_image_state_killed_twice_ends_equal_to_uninterrupted(tmp_path, method, options):
    """SIGKILL (no chance to save anything) during epoch 2 and during epoch 3: each run again resumes from the
    last.pt of the last finished epoch, whose method state (ROLE's estimates, EM + APL's pseudo-labels) is
    restored; the weights, the method state and every epoch's metrics equal an uninterrupted run's."""
    import torch

    from plbench.artifacts.runs import RunFolder

    root = synthetic_root(tmp_path / "syn", train=24, val=8, classes=3, seed=2)
    spl = simulation_file(root, tmp_path / "spl.parquet")
    labels = ["--simulation", str(spl), "--method", method]
    for option in options:
        labels += ["--loss-option", option]
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    done = _train(_train_args(str(root), ref_dir, labels))
    assert done.returncode == 0, done.stderr[-3000:]
    args = _train_args(str(root), cut_dir, labels)
    _assert_killed(_train(args, step=5))  # epoch 2, second step: last.pt holds epoch 1
    assert RunFolder(cut_dir / "r").load_checkpoint("last", "cpu")["epoch"] == 0
    _assert_killed(_train(args, step=5))  # resumed at epoch 2: killed in epoch 3
    assert RunFolder(cut_dir / "r").load_checkpoint("last", "cpu")["epoch"] == 1
    done = _train(args)
    assert done.returncode == 0, done.stderr[-3000:]

    a = RunFolder(ref_dir / "r").load_checkpoint("last", "cpu")
    b = RunFolder(cut_dir / "r").load_checkpoint("last", "cpu")
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    state_a, state_b = a["extra"]["method"], b["extra"]["method"]
    assert set(state_a) == set(state_b) and any(v.any() for v in state_a.values())
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    keys = ("epoch", "train_loss", "val_map")
    ref, cut = RunFolder(ref_dir / "r").metrics(), RunFolder(cut_dir / "r").metrics()
    assert [{k: m.get(k) for k in keys} for m in ref] == [{k: m.get(k) for k in keys} for m in cut]

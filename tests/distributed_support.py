"""What the torchrun tests share: the tiny training command line and running it in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

def torchrun(nproc: int) -> list[str]:
    """``python -m torch.distributed.run`` with ``nproc`` CPU (gloo) processes, running ``python -m plbench``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "plbench"]


TORCHRUN = torchrun(2)
#: one process
PLBENCH = [sys.executable, "-m", "plbench"]


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    """``plbench train`` arguments of a 2-epoch run named ``r`` on the synthetic data at ``data`` (batch 16)."""
    return ["train", "--dataset", "synthetic", "--data-root", str(data), "--backbone", "test_efficientnet_gn",
            "--image-size", "32", "--batch-size", "16", "--epochs", "2", "--lr", "1e-3", "--device", "cpu",
            "--preload", "--seed", "1", "--out", str(out), "--run-name", "r", *extra]


def run(cmd: list[str], cwd: Path, *, pythonpath: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``cmd`` (progress bars off, one thread per process, ``pythonpath`` prepended); assert it exits 0."""
    env = {**os.environ, "PLBENCH_PROGRESS": "off", "OMP_NUM_THREADS": "1"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*pythonpath, os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc

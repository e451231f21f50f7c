"""Where a result came from: plbench version, git commit, command line, hardware, times."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from plbench import __version__


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the plbench checkout in use (with ``+dirty`` when it has changes), or None."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def hardware() -> str:
    """E.g. ``2 x x86_64 CPU`` or ``NVIDIA H100 80GB HBM3 x 1``."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    return f"{os.cpu_count()} x {platform.machine()} CPU"


def provenance(command: str | None, started: float) -> dict[str, Any]:
    """The provenance record of a run summary (times as ISO-8601 UTC)."""
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "plbench_version": __version__, "git_commit": git_commit(),
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hardware": hardware(), "torch_version": torch.__version__, "python": platform.python_version(),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "started_at": time.strftime(iso, time.gmtime(started)), "finished_at": time.strftime(iso, time.gmtime()),
    }

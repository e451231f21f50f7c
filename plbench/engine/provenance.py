"""Where a result came from: plbench version, git commit, command line, hardware, times."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import logging
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import torch

from plbench import __version__
from plbench.artifacts.files import sha256_file

log = logging.getLogger(__name__)


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


def input_digests(paths: Iterable[str]) -> dict[str, str | None]:
    """sha256 of each input file (None for one that does not exist), keyed by the path as given."""
    return {str(p): sha256_file(p) if Path(p).is_file() else None for p in paths}


def changed_inputs(recorded: dict[str, str | None], what: str) -> list[str]:
    """The files of ``recorded`` (:func:`input_digests` of an earlier time) whose content differs now; each
    is logged as a warning naming ``what`` (e.g. ``run runs/x``), since results then mix two versions."""
    now = input_digests(recorded)
    changed = [p for p, digest in recorded.items() if now[p] != digest]
    for p in changed:
        was, got = recorded[p], now[p]
        log.warning("%s: input file %s changed since the run started (sha256 %s, recorded %s): results read "
                    "the file as it is now; restore it to reproduce the run", what, p,
                    got[:12] + "..." if got else "missing", was[:12] + "..." if was else "missing")
    return changed


def track_inputs(run: Any, files: Iterable[str]) -> dict[str, str | None]:
    """A run's input files at its (re)start: ``inputs.json`` written the first time (the digests of
    ``files``), compared on resume (:func:`changed_inputs` warns). Returns the recorded digests.

    Args:
        run: the :class:`plbench.artifacts.runs.RunFolder` (rank 0 only under torchrun).
        files: :meth:`plbench.config.TrainConfig.input_files`.
    """
    recorded = run.inputs()
    if recorded is None:
        recorded = input_digests(files)
        run.write_inputs(recorded)
    else:
        changed_inputs(recorded, f"run {run.path}")
    return recorded

"""The example plug-in package (examples/plbench-example-method) installed for tests: pip, no dependencies, no
index, into a fresh folder that tests put on sys.path or PYTHONPATH (its entry points are found there)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plbench-example-method"


def install_example(base: Path) -> Path | str:
    """The folder the example was installed into, or pip's error text (the caller skips). The source is copied
    first so no build files land in the repository."""
    shutil.copytree(EXAMPLE, base / "src")
    target = base / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(base / "src")],
                          capture_output=True, text=True, timeout=300)
    return target if proc.returncode == 0 else proc.stderr[-500:]

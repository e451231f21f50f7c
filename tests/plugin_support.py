"""The example plug-in package (examples/plbench-example-method) installed for tests: pip, no dependencies, into a
fresh folder that tests put on sys.path or PYTHONPATH (its entry points are found there).

A failed install fails the test that asked for it: the plug-in path (entry points, provenance of an installed
package) is what those tests are for, so it is never skipped. Offline when it can be: with setuptools >= 64
(the example's build backend) in this environment the build runs here without the package index
(``--no-build-isolation --no-index``); without it pip builds in an isolated environment and fetches setuptools
from the index (CI has it)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plbench-example-method"
#: the example's build-system requirement (its pyproject.toml)
SETUPTOOLS_MIN = (64,)

_installed: list[Path] = []  # one install per test session, shared by every caller


def _setuptools_here() -> bool:
    if importlib.util.find_spec("setuptools") is None:
        return False
    from importlib.metadata import version

    major = version("setuptools").split(".")[0]
    return major.isdigit() and (int(major),) >= SETUPTOOLS_MIN


def pip_install_args(source: Path, target: Path, *, offline: bool) -> list[str]:
    """The pip command line installing ``source`` into ``target`` (no dependencies: plbench is the one already
    imported); ``offline``: build with this environment's setuptools, never asking the index."""
    build = ["--no-build-isolation", "--no-index"] if offline else []
    return [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *build, "--target", str(target),
            str(source)]


def install_example(base: Path) -> Path:
    """The folder the example is installed in (the first call installs it under ``base``; later calls in the
    session return that folder). The source is copied first so no build files land in the repository.

    Fails the calling test (``pytest.fail``) with pip's command and error when pip cannot install it."""
    if _installed:
        return _installed[0]
    shutil.copytree(EXAMPLE, base / "src")
    target = base / "site"
    cmd = pip_install_args(base / "src", target, offline=_setuptools_here())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"pip could not install the example plug-in ({' '.join(cmd)}), exit {proc.returncode}:\n"
                    f"{proc.stderr[-2000:]}", pytrace=False)
    _installed.append(target)
    return target

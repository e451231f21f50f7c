"""Command-line interface: ``plbench simulate | estimate-prior | train | report | demo | data | export``.

Each command lives in its own module and registers itself on :data:`plbench.cli.app.app`.
"""

from __future__ import annotations

from plbench.cli.app import app
from plbench.cli import simulate_cmd as _simulate  # noqa: F401
from plbench.cli import data_cmd as _data  # noqa: F401
from plbench.cli import synthetic_cmd as _synthetic  # noqa: F401
from plbench.cli import train_cmd as _train  # noqa: F401
from plbench.cli import report_cmd as _report  # noqa: F401
from plbench.cli import demo_cmd as _demo  # noqa: F401
from plbench.cli import export_cmd as _export  # noqa: F401
from plbench.cli import predict_cmd as _predict  # noqa: F401
from plbench.cli import sweep_cmd as _sweep  # noqa: F401
from plbench.cli import features_cmd as _features  # noqa: F401
from plbench.cli import methods_cmd as _methods  # noqa: F401


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]

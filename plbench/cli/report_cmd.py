"""``plbench report``: mAP tables and plots from run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List

import typer

from plbench.cli.app import app, command


@command(app, "report")
def report_command(
    runs: Annotated[List[Path], typer.Argument(help="Run folders, or folders of run folders.")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/latest"),
    title: Annotated[str, typer.Option()] = "plbench report",
) -> None:
    """Write report.md, report.html, map.png and results.csv for the given runs."""
    from plbench.report import find_runs, write_report

    paths = write_report(find_runs(runs), out, title=title)
    typer.echo(f"wrote {paths['md']} and {paths['html']}")

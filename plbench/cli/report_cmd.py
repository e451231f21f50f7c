"""``plbench report``: tables (mean ± std over seeds, paired differences, published numbers) and figures."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from plbench.cli.app import app, command


@command(app, "report")
def report_command(
    runs: Annotated[List[Path], typer.Argument(help="Run folders, or folders searched recursively for runs.")],
    out: Annotated[Path, typer.Option(help="Report folder (report.md, report.html, PNG figures, CSV tables).")]
    = Path("reports/latest"),
    title: Annotated[str, typer.Option(help="Heading of the report.")] = "plbench report",
    reference: Annotated[Optional[str], typer.Option(
        help="Column the paired differences are taken against: a mode (ignore), a loss (an) or loss:mode "
             "(bce:ignore). Default: Ignore, else AN, else the first column.")] = None,
    published: Annotated[Optional[Path], typer.Option(
        exists=True, dir_okay=False,
        help="CSV of published numbers to compare with (default: the file shipped with plbench).")] = None,
) -> None:
    """Write report.md, a self-contained report.html, each figure as PNG and each table as CSV."""
    from plbench.report import write_report

    argv = ["plbench", "report", *map(str, runs), "--out", str(out)]
    if title != "plbench report":
        argv += ["--title", title]
    if reference is not None:
        argv += ["--reference", reference]
    if published is not None:
        argv += ["--published", str(published)]
    paths = write_report(runs, out, title=title, command=shlex.join(argv), reference=reference, published=published)
    typer.echo(f"wrote {paths['md']} and {paths['html']}")

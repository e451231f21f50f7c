"""``plbench export fiftyone RUN``: a run's predictions as a FiftyOne ``Classifications`` field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from plbench.cli.app import command, export_app


@command(export_app, "fiftyone")
def fiftyone_command(
    run: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Run folder with predictions.npz.")],
    fo_dataset: Annotated[Optional[str], typer.Option(
        help="Dataset to create (default plbench-RUNNAME; for a FiftyOne-trained run: its own dataset).")] = None,
    field: Annotated[str, typer.Option(help="Prediction field name (also FIELD_fp, FIELD_fn).")] = "plbench",
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Score at or above which a class is predicted.")] = 0.5,
    top_k: Annotated[int, typer.Option(min=0, help="Always show this many top-scoring classes.")] = 5,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset of that name.")] = False,
) -> None:
    """Write a run's validation scores into FiftyOne so mistakes can be browsed in the App."""
    from plbench.datasets.fiftyone_ import export_predictions

    result = export_predictions(run, fo_dataset=fo_dataset, field=field, threshold=threshold, top_k=top_k,
                                overwrite=overwrite)
    verb = "created" if result.created else "updated"
    typer.echo(f"{verb} FiftyOne dataset {result.dataset!r}: {result.samples:,} samples, field {result.field!r} "
               f"(+ {result.field}_fp, {result.field}_fn). Browse: fiftyone app launch {result.dataset}")

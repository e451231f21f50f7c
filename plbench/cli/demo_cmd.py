"""``plbench demo``: the whole benchmark on built-in synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plbench.cli.app import app, command
from plbench.datasets.synthetic import MAX_CLASSES
from plbench.demo import DemoSettings as _D


@command(app, "demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Base folder: data/, simulations/, priors/, runs/, reports/demo/ go here.")] = Path("."),
    train_images: Annotated[int, typer.Option(min=50)] = _D.train_images,
    val_images: Annotated[int, typer.Option(min=20)] = _D.val_images,
    num_classes: Annotated[int, typer.Option(min=2, max=MAX_CLASSES)] = _D.num_classes,
    epochs: Annotated[int, typer.Option(min=1)] = _D.epochs,
    seed: Annotated[int, typer.Option(min=0)] = _D.seed,
) -> None:
    """Synthetic data -> FPC/RPS simulation -> Negative/Ignore/Selective training (prior from the Ignore run) -> report."""
    from plbench.demo import run_demo

    settings = _D(out=str(out), train_images=train_images, val_images=val_images, num_classes=num_classes,
                            epochs=epochs, seed=seed)
    run_demo(settings, say=lambda s: typer.echo(s, err=True))

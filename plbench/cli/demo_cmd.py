"""``plbench demo``: the whole benchmark on built-in synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plbench.cli.app import app, command


@command(app, "demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Base folder: data/, simulations/, priors/, runs/, reports/demo/ go here.")] = Path("."),
    train_images: Annotated[int, typer.Option(min=50)] = 2000,
    val_images: Annotated[int, typer.Option(min=20)] = 500,
    num_classes: Annotated[int, typer.Option(min=2)] = 20,
    epochs: Annotated[int, typer.Option(min=1)] = 4,
    prior_epochs: Annotated[int, typer.Option(min=1)] = 2,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Synthetic data -> FPC/RPS simulation -> priors -> Ignore/Negative/Selective training -> report."""
    from plbench.demo import DemoSettings, run_demo

    settings = DemoSettings(out=str(out), train_images=train_images, val_images=val_images, num_classes=num_classes,
                            epochs=epochs, prior_epochs=prior_epochs, seed=seed)
    run_demo(settings, say=lambda s: typer.echo(s, err=True))

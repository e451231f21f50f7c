"""``plbench demo``: a small partial-label experiment on built-in synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from plbench.choices import Protocol
from plbench.cli.app import app, command
from plbench.datasets.synthetic import MAX_CLASSES
from plbench.demo import DemoSettings as _D
from plbench.demo import FineTunedDemoSettings as _F


@command(app, "demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Base folder: data/, features/, simulations/, priors/, runs/, "
                                           "reports/demo/ go here.")] = Path("."),
    protocol: Annotated[Protocol, typer.Option(help="linear: heads on frozen pretrained features, 3 seeds, every "
                                                    "mode and loss; fine-tuned: the earlier demo, a small network "
                                                    "trained from scratch on the images, one seed.")] = Protocol.LINEAR,
    train_images: Annotated[Optional[int], typer.Option(min=50, help=f"Default: {_D.train_images} (linear), "
                                                                     f"{_F.train_images} (fine-tuned).")] = None,
    val_images: Annotated[Optional[int], typer.Option(min=20, help=f"Default: {_D.val_images} (linear), "
                                                                   f"{_F.val_images} (fine-tuned).")] = None,
    num_classes: Annotated[int, typer.Option(min=2, max=MAX_CLASSES)] = _D.num_classes,
    epochs: Annotated[Optional[int], typer.Option(min=1, help=f"Default: {_D.epochs} (linear), "
                                                              f"{_F.epochs} (fine-tuned).")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds 0..N-1 (linear; the fine-tuned demo uses seed 0).")] = len(_D.seeds),
) -> None:
    """Synthetic data -> FPC/RPS/single-positive labels -> every mode and loss (Selective prior from the
    Ignore-mode run of the same seed) -> report with mean +- std over seeds and paired differences."""
    from plbench.demo import run_demo, run_fine_tuned_demo

    sizes = {k: v for k, v in {"train_images": train_images, "val_images": val_images, "epochs": epochs}.items()
             if v is not None}
    say = lambda s: typer.echo(s, err=True)  # noqa: E731
    if protocol is Protocol.LINEAR_INIT:  # a sweep protocol (two trainings per run); the demo has none
        raise typer.BadParameter("the demo runs linear or fine-tuned; linear-init is for experiment files "
                                 "(protocols = [\"linear-init\"])", param_hint="--protocol")
    if protocol is Protocol.FINE_TUNED:
        run_fine_tuned_demo(_F(out=str(out), num_classes=num_classes, **sizes), say=say)
    else:
        run_demo(_D(out=str(out), num_classes=num_classes, seeds=tuple(range(seeds)), **sizes), say=say)

"""``plbench data synthetic``: write the built-in synthetic dataset in the COCO 2017 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plbench.cli.app import command, data_app
from plbench.cli.options import Force, refuse_existing
from plbench.datasets.synthetic import MAX_CLASSES


@command(data_app, "synthetic")
def synthetic(
    out: Annotated[Path, typer.Option(file_okay=False, help="Dataset root to write (created if needed).")],
    train: Annotated[int, typer.Option(min=1, max=999_999, help="Number of training images.")] = 2000,
    val: Annotated[int, typer.Option(min=1, max=999_999, help="Number of validation images.")] = 500,
    classes: Annotated[int, typer.Option(min=1, max=MAX_CLASSES, help="Number of classes.")] = 20,
    image_size: Annotated[int, typer.Option(min=32, max=1024, help="Square image side in pixels.")] = 96,
    seed: Annotated[int, typer.Option(min=0, help="Image seed; the same seed gives the same bytes.")] = 0,
    force: Force = False,
) -> None:
    """Write the synthetic multi-label dataset (textured shapes, long-tailed classes) as COCO 2017."""
    from plbench.datasets.synthetic import write_synthetic_coco

    refuse_existing(out, force, what="folder")  # a smaller dataset written over a larger one would leave a mix

    summary = write_synthetic_coco(
        out, train=train, val=val, num_classes=classes, image_size=image_size, seed=seed, progress=True
    )
    freq = sorted(summary["classes"], key=lambda c: -c["frequency"]["train"])
    typer.echo(
        f"wrote {summary['images']['train']} train and {summary['images']['val']} val images "
        f"({summary['annotations']['train'] + summary['annotations']['val']} objects, {len(freq)} classes) to {out}"
    )
    typer.echo(
        f"most frequent class {freq[0]['name']} in {100 * freq[0]['frequency']['train']:.1f}% of train images, "
        f"rarest {freq[-1]['name']} in {100 * freq[-1]['frequency']['train']:.1f}%"
    )
    typer.echo(f"load it with --dataset synthetic --data-root {out}")

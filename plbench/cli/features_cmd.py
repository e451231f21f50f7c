"""``plbench features extract``: run a backbone once over dataset splits and store its features."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from plbench.cli.app import app, command
from plbench.cli.options import DataRoot, DatasetName, dataset_options, option_group

features_app = typer.Typer(help="Extract frozen backbone features for head-only (linear-protocol) training.",
                           no_args_is_help=True)
app.add_typer(features_app, name="features")


@command(features_app, "extract")
@option_group(dataset_options, into="options")
def extract_command(
    dataset: DatasetName,
    out: Annotated[Path, typer.Option(file_okay=False, help="Features folder: each split goes to OUT/<split>/; "
                                                             "pass OUT to `plbench train --features`.")],
    data_root: DataRoot = Path("."),
    split: Annotated[Optional[list[str]], typer.Option(help="Split(s) to extract (repeatable).")] = None,
    backbone: Annotated[str, typer.Option(help="Any timm model name.")] = "resnet10t",
    pretrained: Annotated[bool, typer.Option(help="ImageNet weights (timm cache, else the offline weight package; "
                                                  "never random weights silently).")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                       help="Local backbone weights file.")] = None,
    image_size: Annotated[int, typer.Option(min=16, help="Square input size, pixels.")] = 224,
    tokens: Annotated[bool, typer.Option(help="Also store the spatial tokens (N, L, D) for the ml-decoder head "
                                              "(L times the disk of pooled features).")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    cache_dir: Annotated[Optional[Path], typer.Option(file_okay=False, help="Image-cache root from `plbench data "
                                                      "cache` (holds <dataset>-<split>-<size>/).")] = None,
    amp: Annotated[bool, typer.Option(help="Mixed precision: bf16 autocast (on the CPU too; fp16 on GPUs without bf16).")] = False,
    options: dict | None = None,
) -> None:
    """Features of every image of the split(s): pooled float16 (N, D), and with --tokens the (N, L, D) tokens.

    The size is printed before anything is written; a disk that cannot hold it is refused. The folder records
    the dataset fingerprint, backbone, weights, image size and plbench version; training on it checks them.
    """
    from plbench.engine.features import extract_split

    for name in split or ["train", "val"]:
        store = extract_split(
            dataset, data_root, name, out, dataset_options=options or {}, backbone=backbone, image_size=image_size,
            pretrained=pretrained, checkpoint=checkpoint, tokens=tokens, batch_size=batch_size, device=device,
            workers=workers, cache_dir=cache_dir, amp=amp, progress=True, say=lambda s: typer.echo(s, err=True),
        )
        typer.echo(str(store.root))

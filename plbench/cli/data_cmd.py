"""``plbench data info`` and ``plbench data cache``: inspect a dataset, pre-resize its images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from plbench.cli.app import command, data_app
from plbench.cli.options import DataRoot, DatasetName, dataset_options, option_group
from plbench.errors import InputError

@command(data_app, "info")
@option_group(dataset_options, into="options")
def info_command(
    dataset: DatasetName,
    data_root: DataRoot = Path("."),
    split: Annotated[Optional[list[str]], typer.Option(help="Split(s) to show (repeatable; default: every split "
                                                            "found).")] = None,
    top: Annotated[int, typer.Option(min=0, help="How many most/least frequent classes to list.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records instead of text.")] = False,
    options: dict | None = None,
) -> None:
    """Images, classes, annotations, annotated fraction and the most/least frequent classes per split.

    Without --split, every split found under --data-root is shown (a note on stderr names the absent ones).
    """
    from plbench.datasets import find_splits, load_dataset
    from plbench.datasets.summary import format_summary, summarize_split

    options = options or {}
    if not split:
        sources = find_splits(dataset, data_root, **options)
        split = [s.split for s in sources if s.path is not None]
        for s in sources:
            if s.path is None:
                typer.echo(f"note: {dataset} split {s.split!r} not found in {data_root} (looked for "
                           f"{', '.join(s.accepted)}); showing {', '.join(split)}", err=True)
    summaries = [summarize_split(load_dataset(dataset, data_root, s, **options), top=top) for s in split]
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        typer.echo("\n\n".join(format_summary(s) for s in summaries))


def default_cache_dir(data_root: Path, dataset: str, split: str, size: int) -> Path:
    """Where ``plbench data cache`` writes by default: ``DATA_ROOT/plbench_cache/<dataset>-<split>-<size>``."""
    from plbench.datasets.images import cache_folder

    return cache_folder(Path(data_root) / "plbench_cache", dataset, split, size)


@command(data_app, "cache")
@option_group(dataset_options, into="options")
def cache_command(
    dataset: DatasetName,
    data_root: DataRoot = Path("."),
    split: Annotated[str, typer.Option(help="Split to cache.")] = "train",
    size: Annotated[int, typer.Option(min=16, help="Side of the cached square images, pixels.")] = 224,
    out: Annotated[Optional[Path], typer.Option(file_okay=False,
                                                help="Cache folder; default DATA_ROOT/plbench_cache/DATASET-SPLIT-SIZE.")] = None,
    workers: Annotated[int, typer.Option(min=0, help="Decoding processes (0: all CPUs).")] = 0,
    options: dict | None = None,
) -> None:
    """Decode and resize a split's images once into a memory-mapped uint8 cache."""
    from plbench.datasets import load_dataset
    from plbench.datasets.images import build_image_cache

    options = options or {}
    ds = load_dataset(dataset, data_root, split, **options)
    if len(ds) == 0:
        missing = f" ({ds.missing_images:,} listed images have no file)" if ds.missing_images else ""
        raise InputError(data_root, "--split", f"expected images in split {split!r} of {dataset}, but it has "
                         f"none{missing}", "check --split and --data-root, or download the images first")
    target = out or default_cache_dir(data_root, dataset, split, size)
    cache = build_image_cache(ds.image_paths.tolist(), size, target, workers=workers or None,
                              strict=bool(options.get("strict", False)), progress=True)
    typer.echo(f"cached {len(cache):,} images of {size}x{size} into {target}"
               + (f"; {len(cache.failed):,} could not be decoded (zero rows, listed in index.json)"
                  if cache.failed else ""))

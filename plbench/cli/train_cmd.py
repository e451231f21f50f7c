"""``plbench train`` and ``plbench estimate-prior``: parse options, build a TrainConfig, call the engine."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from plbench.cli.app import app, command
from plbench.cli.options import DataRoot, dataset_options, option_group
from plbench.config import TrainConfig
from plbench.errors import InputError


class TrainMode(str, Enum):
    IGNORE = "ignore"
    NEGATIVE = "negative"
    SELECTIVE = "selective"
    IGNORE_NORMALIZED = "ignore_normalized"


class HeadName(str, Enum):
    GAP = "gap"
    ML_DECODER = "ml-decoder"


Dataset = Annotated[str, typer.Option(help="Dataset loader: coco, lvis, openimages, fiftyone, synthetic.")]
Simulation = Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                    help="Parquet file from `plbench simulate`; default: the dataset's own labels.")]
Backbone = Annotated[str, typer.Option(help="Any timm model name.")]
Head = Annotated[HeadName, typer.Option(help="Classification head.")]
ImageSize = Annotated[int, typer.Option(min=16, help="Square input size, pixels.")]
BatchSize = Annotated[int, typer.Option(min=1)]
Epochs = Annotated[int, typer.Option(min=1)]
Lr = Annotated[float, typer.Option(min=0.0, help="Peak learning rate (one-cycle).")]
Seed = Annotated[int, typer.Option(min=0, help="Seed of initialisation, data order and augmentation.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Pretrained = Annotated[bool, typer.Option(help="Start from timm's pretrained weights (must be cached locally).")]
Checkpoint = Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Local backbone weights file.")]
MaxImages = Annotated[Optional[int], typer.Option(min=1, help="Train on the first N images only.")]
Preload = Annotated[bool, typer.Option(help="Decode all images into memory once (small datasets).")]
Workers = Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")]
Amp = Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")]
Split = Annotated[str, typer.Option(help="Split name.")]
CacheDir = Annotated[Optional[Path], typer.Option(file_okay=False, help="Image-cache root from `plbench data cache` "
                                                  "(holds <dataset>-<split>-<size>/), e.g. DATA_ROOT/plbench_cache.")]


def parse_key_values(items: list[str], option: str) -> dict[str, object]:
    """``["gamma_neg=4", "name=x"]`` -> ``{"gamma_neg": 4, "name": "x"}`` (values parsed as JSON when they can be)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(None, option, f"expected KEY=VALUE, but got {item!r}", f"write e.g. {option} gamma_neg=4")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


@option_group(dataset_options, into="dataset_options")
def training_options(
    dataset: Dataset = "synthetic",
    data_root: DataRoot = Path("data/synthetic"),
    simulation: Simulation = None,
    backbone: Backbone = "resnet10t",
    head: Head = HeadName.GAP,
    image_size: ImageSize = 224,
    batch_size: BatchSize = 64,
    epochs: Epochs = 10,
    lr: Lr = 2e-4,
    seed: Seed = 0,
    device: Device = "auto",
    pretrained: Pretrained = False,
    checkpoint: Checkpoint = None,
    max_train_images: MaxImages = None,
    preload: Preload = False,
    workers: Workers = 0,
    amp: Amp = False,
    train_split: Split = "train",
    val_split: Split = "val",
    cache_dir: CacheDir = None,
    dataset_options: dict | None = None,
) -> dict[str, object]:
    """The options `train` and `estimate-prior` share, as TrainConfig fields (paths as str)."""
    values = dict(locals())
    for key in ("data_root", "simulation", "checkpoint", "cache_dir"):
        if values[key] is not None:
            values[key] = str(values[key])
    values["head"] = head.value
    values["dataset_options"] = dataset_options or {}
    return values


@command(app, "train")
@option_group(training_options, into="common")
def train_command(
    mode: Annotated[TrainMode, typer.Option(help="How unannotated labels are treated.")] = TrainMode.SELECTIVE,
    prior: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                  help="Prior CSV (Classes,avg_pred) for --mode selective.")] = None,
    loss: Annotated[str, typer.Option(help="Loss: pasl (partial ASL, uses --mode), asl, bce, an, an_ls, wan, epr, ll_r.")] = "pasl",
    loss_option: Annotated[Optional[List[str]], typer.Option(
        help="Loss hyper-parameter KEY=VALUE (repeatable), e.g. gamma_neg=4, expected_num_pos=2.9 for epr.")] = None,
    out: Annotated[Path, typer.Option(help="Folder of run folders.")] = Path("runs"),
    run_name: Annotated[Optional[str], typer.Option(help="Run folder name (default derived from the config).")] = None,
    config: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                   help="Train from a saved config.json (other options ignored).")] = None,
    common: dict | None = None,
) -> None:
    """Train a partial-label classifier into a run folder (resumes an unfinished run)."""
    from plbench.engine.train import train

    if config is not None:
        cfg = TrainConfig.load(config)
    else:
        cfg = TrainConfig(
            **(common or {}), mode=mode.value, prior=None if prior is None else str(prior), loss=loss,
            loss_options=parse_key_values(loss_option or [], "--loss-option"), out_dir=str(out), run_name=run_name,
        )
    result = train(cfg)
    s = result.summary
    typer.echo(f"{result.run_dir}: final mAP {s['val_map']:.2f} (best epoch {s['best_val_map']:.2f}) "
               f"on {s['val_images']} validation images")


@command(app, "estimate-prior")
@option_group(training_options, into="common")
def estimate_prior_command(
    out: Annotated[Optional[Path], typer.Option(dir_okay=False, help="Prior CSV to write (default priors/<name>.csv).")] = None,
    common: dict | None = None,
) -> None:
    """Estimate class priors with a temporary Ignore-mode model; writes `Classes,avg_pred` CSV."""
    from plbench.engine.prior import estimate_prior
    from plbench.priors import default_prior_path, write_prior_csv

    cfg = TrainConfig(**(common or {}), mode="ignore")
    names, prior = estimate_prior(cfg)
    if out is None:
        out = default_prior_path(cfg.dataset, cfg.simulation, cfg.backbone, cfg.seed)
    write_prior_csv(out, names, prior)
    typer.echo(f"wrote {out}: {len(names)} classes, mean prior {prior.mean():.4f}")

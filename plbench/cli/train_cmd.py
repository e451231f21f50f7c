"""``plbench train`` and ``plbench estimate-prior``: parse options, build a TrainConfig, call the engine."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from plbench.cli.app import app, command
from plbench.cli.data_cmd import ClassList, FoDataset, FoField, FoNegatives, Strict, dataset_options
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
DataRoot = Annotated[Path, typer.Option(help="Dataset root folder (as its publisher ships it).")]
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


def _config(**kw: object) -> TrainConfig:
    kw["data_root"] = str(kw["data_root"])
    for key in ("simulation", "prior", "checkpoint", "cache_dir"):
        if kw.get(key) is not None:
            kw[key] = str(kw[key])
    kw["dataset_options"] = {k: str(v) if isinstance(v, Path) else v
                             for k, v in dict(kw.get("dataset_options") or {}).items()}  # type: ignore[call-overload]
    for key in ("mode", "head"):
        if isinstance(kw.get(key), Enum):
            kw[key] = kw[key].value  # type: ignore[union-attr]
    return TrainConfig(**kw)  # type: ignore[arg-type]


@command(app, "train")
def train_command(
    dataset: Dataset = "synthetic",
    data_root: DataRoot = Path("data/synthetic"),
    simulation: Simulation = None,
    mode: Annotated[TrainMode, typer.Option(help="How unannotated labels are treated.")] = TrainMode.SELECTIVE,
    prior: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                  help="Prior CSV (Classes,avg_pred) for --mode selective.")] = None,
    loss: Annotated[str, typer.Option(help="Loss: pasl (partial ASL, uses --mode), asl, bce, an, an_ls, wan, epr, ll_r.")] = "pasl",
    loss_option: Annotated[Optional[List[str]], typer.Option(
        help="Loss hyper-parameter KEY=VALUE (repeatable), e.g. gamma_neg=4, expected_num_pos=2.9 for epr.")] = None,
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
    strict: Strict = False,
    fo_dataset: FoDataset = None,
    fo_field: FoField = None,
    fo_negatives: FoNegatives = None,
    class_list: ClassList = None,
    out: Annotated[Path, typer.Option(help="Folder of run folders.")] = Path("runs"),
    run_name: Annotated[Optional[str], typer.Option(help="Run folder name (default derived from the config).")] = None,
    config: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                   help="Train from a saved config.json (other options ignored).")] = None,
) -> None:
    """Train a partial-label classifier into a run folder (resumes an unfinished run)."""
    from plbench.engine.train import train

    if config is not None:
        cfg = TrainConfig.load(config)
    else:
        cfg = _config(
            dataset=dataset, data_root=data_root, simulation=simulation, mode=mode, prior=prior, loss=loss,
            loss_options=parse_key_values(loss_option or [], "--loss-option"), backbone=backbone,
            head=head, image_size=image_size, batch_size=batch_size, epochs=epochs, lr=lr, seed=seed, device=device,
            pretrained=pretrained, checkpoint=checkpoint, max_train_images=max_train_images, preload=preload,
            workers=workers, amp=amp, train_split=train_split, val_split=val_split, out_dir=str(out),
            run_name=run_name, cache_dir=cache_dir,
            dataset_options=dataset_options(fo_dataset, fo_field, fo_negatives, class_list, strict),
        )
    result = train(cfg)
    s = result.summary
    typer.echo(f"{result.run_dir}: final mAP {s['val_map']:.2f} (best epoch {s['best_val_map']:.2f}) "
               f"on {s['val_images']} validation images")


@command(app, "estimate-prior")
def estimate_prior_command(
    dataset: Dataset = "synthetic",
    data_root: DataRoot = Path("data/synthetic"),
    simulation: Simulation = None,
    backbone: Backbone = "resnet10t",
    head: Head = HeadName.GAP,
    image_size: ImageSize = 224,
    batch_size: BatchSize = 64,
    epochs: Epochs = 5,
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
    strict: Strict = False,
    fo_dataset: FoDataset = None,
    fo_field: FoField = None,
    fo_negatives: FoNegatives = None,
    class_list: ClassList = None,
    out: Annotated[Optional[Path], typer.Option(dir_okay=False, help="Prior CSV to write (default priors/<name>.csv).")] = None,
) -> None:
    """Estimate class priors with a temporary Ignore-mode model; writes `Classes,avg_pred` CSV."""
    from plbench.engine.prior import estimate_prior
    from plbench.priors import default_prior_path, write_prior_csv

    cfg = _config(
        dataset=dataset, data_root=data_root, simulation=simulation, mode="ignore", backbone=backbone, head=head,
        image_size=image_size, batch_size=batch_size, epochs=epochs, lr=lr, seed=seed, device=device,
        pretrained=pretrained, checkpoint=checkpoint, max_train_images=max_train_images, preload=preload,
        workers=workers, amp=amp, train_split=train_split, val_split=val_split, cache_dir=cache_dir,
        dataset_options=dataset_options(fo_dataset, fo_field, fo_negatives, class_list, strict),
    )
    names, prior = estimate_prior(cfg)
    if out is None:
        out = default_prior_path(dataset, simulation, backbone, seed)
    write_prior_csv(out, names, prior)
    typer.echo(f"wrote {out}: {len(names)} classes, mean prior {prior.mean():.4f}")

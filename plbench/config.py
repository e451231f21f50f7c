"""Run configuration: a frozen dataclass built by the CLI, saved as ``config.json``, the only engine input."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plbench.errors import InputError


#: numeric fields and their allowed range (inclusive; None: open), checked on configs read from files (the
#: CLI's options carry the same bounds); ema_decay < 1 is checked by the engine
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "image_size": (16, None), "batch_size": (1, None), "epochs": (1, None), "lr": (0, None),
    "weight_decay": (0, None), "warmup_fraction": (0, 1), "seed": (0, None), "workers": (0, None),
    "max_train_images": (1, None), "ema_decay": (0, 1),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (and hence its results)."""

    dataset: str = "synthetic"  # registry name, see plbench.datasets.list_datasets()
    data_root: str = "data/synthetic"
    train_split: str = "train"
    val_split: str = "val"  # evaluated with its own (complete or natural) labels, never simulated
    dataset_options: dict[str, Any] = field(default_factory=dict)  # loader options (strict, fo_field, ...)
    simulation: str | None = None  # parquet from `plbench simulate`; None = the dataset's own train labels
    mode: str | None = "selective"  # plbench.choices.Mode; None for losses without modes (an, epr, ...)
    loss: str = "pasl"  # loss registry name, see plbench.losses.create_loss
    loss_options: dict[str, Any] = field(default_factory=dict)  # overrides of the loss defaults
    prior: str | None = None  # prior CSV (Classes,avg_pred) for mode=selective
    backbone: str = "resnet10t"  # any timm model name
    pretrained: bool = False  # ImageNet weights: timm (cache or download), else an installed weight package
    checkpoint: str | None = None  # local backbone weights file (.pt/.pth/.safetensors)
    head: str = "gap"  # plbench.choices.Head: gap | ml-decoder
    head_options: dict[str, Any] = field(default_factory=dict)
    features: str | None = None  # folder from `plbench features extract`: train the head only ("linear")
    recipe: str = "light"  # plbench.choices.Recipe the settings came from (see plbench.engine.recipes)
    augment: str = "flip"  # plbench.choices.Augment: flip | cutout-randaugment (csl)
    ema_decay: float = 0.0  # model EMA decay per optimizer step; 0 = no EMA (csl: 0.9997)
    image_size: int = 224  # square input side, pixels
    batch_size: int = 64
    epochs: int = 10
    lr: float = 2e-4  # peak learning rate of the one-cycle schedule (CSL uses 2e-4 with Adam)
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.2  # fraction of steps spent rising to the peak LR
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # autocast on CUDA: bf16, or fp16 with a gradient scaler on GPUs without bf16
    compile: bool = False  # torch.compile the model (CUDA: worth it for long runs; minutes of compilation)
    workers: int = 0  # DataLoader worker processes
    preload: bool = False  # decode and resize every image once into memory (small datasets, CPU)
    cache_dir: str | None = None  # pre-resized image cache from `plbench data cache`
    max_train_images: int | None = None  # use only the first N training images (quick runs)
    out_dir: str = "runs"
    run_name: str | None = None  # default: <dataset>-<labels tag>-<mode>-<backbone>-s<seed>
    tag: str | None = None  # label-setting tag shown in reports (default: from the simulation file)

    @property
    def protocol(self) -> str:
        """``linear`` (head on cached features) or ``fine-tuned`` (see plbench.choices.Protocol)."""
        return "linear" if self.features is not None else "fine-tuned"

    @property
    def headline_model(self) -> str:
        """The model whose final-epoch mAP is the headline number, fixed before training: ``ema`` or ``plain``."""
        return "ema" if self.ema_decay > 0 else "plain"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path | None = None) -> "TrainConfig":
        """Build from a dict, rejecting unknown keys (so a typo is never ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(
                source, unknown[0], f"unknown config key(s) {unknown}", f"use only: {', '.join(sorted(names))}"
            )
        defaults = cls()
        for key, value in data.items():
            expected = type(getattr(defaults, key))
            if getattr(defaults, key) is None or key == "mode":  # optional fields: None or a plain value
                ok = value is None or isinstance(value, (str, int, float))
            elif expected is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif expected is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, expected)
            if not ok:
                raise InputError(source, key, f"expected {expected.__name__}, but got {value!r}",
                                 "correct the value in the config file")
            low, high = _RANGES.get(key, (None, None))
            if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
                bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
                raise InputError(source, key, f"expected a value {bounds}, but got {value!r}",
                                 "correct the value in the config file")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        from plbench.artifacts.files import read_json

        data = read_json(path, "pass a config.json written by plbench")
        if not isinstance(data, dict):
            raise InputError(path, "config", f"expected a JSON object, but got {type(data).__name__}",
                             "pass a config.json written by plbench")
        return cls.from_dict(data, path)

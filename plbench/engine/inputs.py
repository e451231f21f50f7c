"""Everything a run reads, loaded and checked before its run folder is written.

:func:`load_inputs` returns a :class:`TrainingData`: the training split and the labels trained on (the
split's own or a simulation file, checked against the split, possibly truncated to the first N images), the
validation split, the class prior, the feature stores of a linear-protocol run (opened once, checked against
the splits) and the label tag shown in reports. Under ``--strict`` every image is verified here too, so a
corrupt file stops the run before any file exists. :func:`make_dataset` and :func:`make_loader` turn the
checked inputs into torch datasets and loaders; :func:`make_criterion` builds the loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from plbench.choices import Mode
from plbench.config import TrainConfig
from plbench.datasets import DatasetSplit, load_dataset
from plbench.datasets.images import collate_skip_none
from plbench.engine.data import ImageLabelDataset
from plbench.errors import InputError
from plbench.labels import NEG, POS, UNK, PartialLabels
from plbench.losses import LOSSES, create_loss, resolve_mode, takes_mode

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Every input of a run, loaded and checked before anything is written."""

    train_split: DatasetSplit
    train_labels: PartialLabels  # the labels trained on (simulated or the split's own), possibly truncated
    train_paths: np.ndarray  # (N,) image paths aligned with train_labels
    simulation: dict[str, Any] | None  # the simulation file's metadata
    val_split: DatasetSplit
    prior: torch.Tensor | None  # float32 (C,) in [0, 1]
    tag: str  # label setting shown in reports
    feature_stores: dict[str, Any] = field(default_factory=dict)  # split -> opened FeatureStore (linear runs)
    zero_shot: Any = None  # plbench.engine.zero_shot.ZeroShotInputs of a run with a zsl_split
    select_split: DatasetSplit | None = None  # the epoch-selection split (``config.select_split``), own labels

    @property
    def class_names(self) -> list[str]:
        return self.train_split.class_names

    @property
    def fingerprints(self) -> dict[str, str]:
        """A run folder is resumed only for the very same training labels, validation and selection data."""
        out = {"train_labels": self.train_labels.fingerprint(), "val_annotations": self.val_split.fingerprint}
        if self.select_split is not None:  # runs without a selection split keep the fingerprints they had
            out["select_annotations"] = self.select_split.fingerprint
        return out


def check_loss(config: TrainConfig) -> None:
    """The loss exists and takes the config's mode (a method's mode and needs:
    :func:`plbench.engine.method_run.make_method`). The closed choices, the head and the numeric ranges are
    the schema's (:class:`plbench.config.TrainConfig` checks them on construction)."""
    if config.method is not None:
        return
    if config.loss not in LOSSES:
        raise InputError(None, "--loss", f"unknown loss {config.loss!r}; available: {', '.join(sorted(LOSSES))}",
                         "pick a loss from `plbench train --help`")
    try:  # the run records its mode: no default here (the CLI fills it in)
        resolve_mode(config.loss, config.mode, default=False)
    except ValueError as e:
        raise InputError(None, "--mode", str(e), "pass --mode for pasl, asl, bce; leave it out otherwise") from None


def labels_tag(config: TrainConfig, meta: dict[str, Any] | None, split: DatasetSplit) -> str:
    """Short name of the label setting: ``full``, ``natural`` or e.g. ``fpc1000``/``rps0.5``."""
    if config.tag:
        return config.tag
    if meta is None:
        if config.simulation is not None:
            return Path(config.simulation).stem
        return "full" if split.labels.annotated_fraction() == 1.0 else "natural"
    from plbench.artifacts.simulations import format_param

    return f"{meta['scheme']}{format_param(meta['param'])}"


def default_run_name(config: TrainConfig, tag: str) -> str:
    backbone = config.backbone.replace("/", "_")
    loss = "" if config.loss == "pasl" else f"-{config.loss}"
    if config.method is not None:
        loss = "-" + config.method.replace(":", ".")
    mode = f"-{config.mode}" if config.mode is not None else ""
    linear = "-linear" if config.features is not None else ""
    head = config.head.replace(":", ".")  # package.module:Name: no colon in folder names
    return f"{config.dataset}-{tag}{mode}{loss}-{backbone}-{head}{linear}-s{config.seed}"


def check_targets(labels: PartialLabels, source: str | Path | None) -> None:
    """Every training target is 1, 0 or -1: checked once here, so the loss need not check each batch
    (a device sync per step on GPUs).

    Raises:
        InputError: naming ``source`` and the first bad values.
    """
    values = labels.matrix if not labels.is_sparse else labels.sparse[2]
    bad = (values != POS) & (values != NEG) & (values != UNK)
    if bad.any():
        raise InputError(source, "labels", f"expected label values in {{1, 0, -1}}, but got "
                         f"{np.unique(values[bad])[:5].tolist()}", "regenerate the labels or the simulation file")


def load_train_labels(config: TrainConfig, split: DatasetSplit) -> tuple[PartialLabels, dict[str, Any] | None]:
    """The training labels: the split's own, or a simulation file checked against the split."""
    if config.simulation is None:
        return split.labels, None
    from plbench.artifacts.simulations import load_simulation

    labels, meta = load_simulation(
        config.simulation, expected_fingerprint=split.fingerprint, expected_class_names=split.class_names
    )
    if not np.array_equal(labels.image_ids.astype(str), split.labels.image_ids.astype(str)):
        raise InputError(
            config.simulation, "image_ids", "the simulation's images differ from the loaded split's "
            f"({labels.num_images} vs {split.labels.num_images} images)",
            "re-run `plbench simulate` on this dataset split (were image files added or removed?)",
        )
    return labels, meta


def load_training_data(config: TrainConfig) -> tuple[DatasetSplit, PartialLabels, np.ndarray, dict[str, Any] | None]:
    """The training split, its (possibly simulated and truncated) labels, image paths, simulation metadata."""
    split = load_dataset(config.dataset, config.data_root, config.train_split, **config.dataset_options)
    labels, meta = load_train_labels(config, split)
    paths = split.image_paths
    if config.max_train_images is not None:
        keep = np.arange(min(config.max_train_images, labels.num_images))
        labels, paths = labels.subset(keep), paths[keep]
    return split, labels, paths, meta


def load_prior(config: TrainConfig, class_names: list[str]) -> torch.Tensor | None:
    """The ``--prior`` CSV as float32 (C,), rows matched to ``class_names`` by name; None without one."""
    if config.prior is None:
        return None
    from plbench.priors import read_prior_csv

    return torch.as_tensor(read_prior_csv(config.prior, class_names), dtype=torch.float32)


def verify_images(config: TrainConfig, split_name: str, paths: np.ndarray) -> None:
    """Under ``--strict``, every image of a split decodes (or the image cache recorded it as decodable).

    Raises:
        InputError: naming the first file that does not.
    """
    from plbench.datasets.images import ImageCache, cache_folder, load_image

    if config.cache_dir is not None:
        folder = cache_folder(config.cache_dir, config.dataset, split_name, config.image_size)
        if folder.is_dir():
            ok = np.asarray(ImageCache.open(folder).ok, dtype=bool)[: len(paths)]
            if not ok.all():
                raise InputError(paths[int(np.flatnonzero(~ok)[0])], "image", "the image cache recorded this file "
                                 "as undecodable", "re-download the file and rebuild the cache, or run without --strict")
            return
    for path in paths:
        load_image(path, strict=True, draft_size=config.image_size)


def load_inputs(config: TrainConfig,
                prepare: Callable[[TrainConfig, TrainingData], None] | None = None) -> TrainingData:
    """Load and check the datasets, simulation, prior, feature stores and (``--strict``) images of ``config``;
    nothing is written. ``prepare(config, data)`` may transform the loaded data in place before the feature
    stores are opened and checked (:func:`plbench.engine.zero_shot.prepare`; passed in by the caller, so this
    module imports nothing that imports it back)."""
    train_split, train_labels, train_paths, sim_meta = load_training_data(config)
    check_targets(train_labels, config.simulation or config.data_root)
    val_split = load_dataset(config.dataset, config.data_root, config.val_split, **config.dataset_options)
    if val_split.class_names != train_split.class_names:
        raise InputError(config.data_root, "categories", "train and val splits have different class lists",
                         "use splits of the same dataset release")
    select_split = load_select_split(config, train_split)
    prior = load_prior(config, train_split.class_names)
    if config.mode == Mode.SELECTIVE and prior is None:
        log.warning("selective mode without --prior: only the likelihood (top-k) rule selects negatives")
    data = TrainingData(train_split, train_labels, train_paths, sim_meta, val_split, prior,
                        labels_tag(config, sim_meta, train_split), select_split=select_split)
    if prepare is not None:
        prepare(config, data)  # e.g. zero-shot: seen classes only (labels, prior), before the stores are opened
    if config.features is not None:
        from plbench.engine.features import open_store

        # every store opened once; the head and the datasets reuse them
        for name, split in _evaluated_splits(config, train_split, val_split, select_split):
            data.feature_stores[name] = store = open_store(config, name)  # none: exit 2, naming the extraction
            store.check(split=name, fingerprint=split.fingerprint, image_ids=split.labels.image_ids)
    elif config.dataset_options.get("strict", False):
        verify_images(config, config.train_split, train_paths)
        for name, split in _evaluated_splits(config, None, val_split, select_split):
            verify_images(config, name, split.image_paths)
    return data


def _evaluated_splits(config: TrainConfig, train: DatasetSplit | None, val: DatasetSplit,
                      select: DatasetSplit | None) -> list[tuple[str, DatasetSplit]]:
    """``(name, split)`` of the training split (when given), the validation split and the selection split
    (when the run has one)."""
    pairs = [(config.train_split, train), (config.val_split, val), (config.select_split, select)]
    return [(name, split) for name, split in pairs if name is not None and split is not None]


def load_select_split(config: TrainConfig, train_split: DatasetSplit) -> DatasetSplit | None:
    """The split whose mAP chooses the epoch (``config.select_split``), with its own labels; None without one.

    Raises:
        InputError: it is the validation split itself, its class list differs from the training split's, or
            the run is zero-shot (whose evaluation restricts the classes; selection is not supported there).
    """
    if config.select_split is None:
        return None
    if config.select_split == config.val_split:
        raise InputError(None, "select_split", f"the selection split {config.select_split!r} is the evaluation "
                         "split: an epoch chosen there is selected on the test data",
                         "pass a held-out split (e.g. <train split>-spml-val, 20 % of the training split), or "
                         "leave --select-split out")
    if config.zsl_split is not None:
        raise InputError(None, "select_split", "epoch selection on a held-out split is not supported for "
                         "zero-shot runs (zsl_split)", "leave --select-split out")
    split = load_dataset(config.dataset, config.data_root, config.select_split, **config.dataset_options)
    if split.class_names != train_split.class_names:
        raise InputError(config.data_root, "categories", f"the selection split {config.select_split!r} has another "
                         "class list than the training split", "use splits of the same dataset release")
    shared = np.intersect1d(split.labels.image_ids.astype(str), train_split.labels.image_ids.astype(str))
    if shared.size:
        log.warning("%d of the %d images of the selection split %s are also in the training split %s: the "
                    "selected epoch is not chosen on held-out data", shared.size, len(split), config.select_split,
                    config.train_split)
    return split


def make_criterion(config: TrainConfig, prior: torch.Tensor | None) -> nn.Module:
    """The loss of ``config``, built without per-batch target checks (:func:`check_targets` ran at load)."""
    kw: dict[str, Any] = dict(config.loss_options)
    if takes_mode(config.loss):
        kw.update(mode=config.mode, prior=prior)
    elif prior is not None:
        raise InputError(config.prior, "--prior", f"loss {config.loss!r} does not use a class prior",
                         "leave out --prior, or use --loss pasl --mode selective")
    try:
        criterion = create_loss(config.loss, **kw)
    except ValueError as e:
        raise InputError(None, "--loss-option", str(e), "pick options from the loss's documentation") from None
    if hasattr(criterion, "validate"):
        criterion.validate = False
    return criterion


def normalization(config: TrainConfig) -> tuple[list[float], list[float]]:
    """The backbone's input mean and std (timm's pretrained config of the model; 0.5/0.5 for ``tf_`` models)."""
    from plbench.engine.pretrained import resolve_normalization

    mean, std = resolve_normalization(config.backbone)
    return [float(m) for m in mean], [float(s) for s in std]


def make_dataset(config: TrainConfig, split_name: str, paths: np.ndarray, labels: PartialLabels,
                 *, train: bool, fingerprint: str | None = None, store: Any = None) -> Dataset:
    """The torch dataset of one split: images (from the pre-resized cache when ``config.cache_dir`` is set),
    or cached backbone features when ``config.features`` is set. Both have ``empty_batch()``."""
    if config.features is not None:
        from plbench.engine.features import feature_inputs

        return feature_inputs(config, split_name, labels, train=train, fingerprint=fingerprint, store=store)
    from plbench.datasets.images import ImageCache, cache_folder

    cache = None
    if config.cache_dir is not None:
        folder = cache_folder(config.cache_dir, config.dataset, split_name, config.image_size)
        if not folder.is_dir():
            raise InputError(folder, "--cache-dir", "no image cache for this split and size",
                             f"run `plbench data cache --dataset {config.dataset} --split {split_name} "
                             f"--size {config.image_size}` first")
        cache = ImageCache.open(folder)  # ImageLabelDataset checks that its paths are a prefix of the cache's
    strict = bool(config.dataset_options.get("strict", False))
    return ImageLabelDataset(paths, labels, config.image_size, train=train, augment=config.augment,
                             seed=config.seed, preload=config.preload, cache=cache, strict=strict)


def make_loader(dataset: Dataset, config: TrainConfig, batches: Sampler | list[list[int]] | None = None,
                device: torch.device | None = None) -> DataLoader:
    """A loader over ``batches`` (a batch sampler), or over the whole dataset in order (evaluation).

    Batches stay uint8 until they reach the device; on CUDA they come from pinned memory, and worker
    processes persist across epochs.
    """
    pin = device is not None and device.type == "cuda"
    common = dict(num_workers=config.workers, collate_fn=collate_skip_none, pin_memory=pin,
                  persistent_workers=config.workers > 0)
    if batches is not None:
        return DataLoader(dataset, batch_sampler=batches, **common)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=False, **common)

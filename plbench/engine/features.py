"""The frozen-feature ("linear") protocol: extract a backbone's features once, then train heads on them.

Extraction (:func:`extract_features`) runs the backbone over one split in eval mode, without augmentation,
on images resized square to S and normalised as the backbone's pretrained weights expect
(:func:`plbench.engine.pretrained.resolve_normalization`), and writes a
:class:`~plbench.artifacts.features.FeatureStore`.

Training on a store goes through the regular engine (:func:`plbench.engine.train.train` with
``TrainConfig.features`` set), which calls the two functions below instead of building image datasets and
a backbone:

* :func:`feature_inputs` -> :class:`FeatureDataset`, whose items are ``(features float32 (L, D),
  labels int8 (C,), index int)``, as the image dataset's ``(image, labels, index)``; pooled features come
  as (1, D). Rows are read per batch with positioned reads, never the whole file.
* :func:`build_head_model` -> :class:`HeadOnlyClassifier`, ``forward(features (B, L, D)) = head(features)``.

A GAP head on pooled features computes exactly what it computes on the backbone's feature map (the mean
over positions, then one linear layer), so a head-only run equals a fine-tuned run whose backbone is
frozen in eval mode and whose images are not augmented, up to float16 rounding of the stored features.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from plbench import __version__
from plbench.artifacts.features import FeatureStore, feature_bytes, format_bytes, store_folder, write_feature_store
from plbench.artifacts.files import sha256_file
from plbench.choices import Head
from plbench.config import TrainConfig
from plbench.datasets import DatasetSplit, load_dataset
from plbench.engine import runtime
from plbench.engine.data import ImageLabelDataset
from plbench.engine.model import build_model, weights_sha256
from plbench.errors import InputError
from plbench.heads import needs_spatial_features
from plbench.progress import progress as progress_bar
from plbench.labels import PartialLabels

log = logging.getLogger(__name__)

#: the item of :class:`FeatureDataset`: features float32 (L, D), labels int8 (C,), dataset index
FeatureItem = tuple[torch.Tensor, torch.Tensor, int]


# -- extraction -------------------------------------------------------------------------------------


def extract_features(
    split: DatasetSplit,
    out: str | Path,
    *,
    backbone: str,
    image_size: int,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
    tokens: bool = False,
    batch_size: int = 64,
    device: str = "auto",
    workers: int = 0,
    cache_dir: str | Path | None = None,
    amp: bool = False,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
    strict: bool = False,
) -> FeatureStore:
    """Run ``backbone`` once over every image of ``split`` and write a feature store to ``out``.

    Args:
        split: the loaded split; its images are read in dataset order (``split.image_paths``).
        out: the store folder (``FEATURES_DIR/<split>``, see :func:`~plbench.artifacts.features.store_folder`).
        backbone: timm model name; ``pretrained`` / ``checkpoint`` as for training
            (:func:`plbench.engine.model.build_model`: offline weight packages included, never a silent
            fall-back to random weights).
        image_size: square input side S, pixels.
        tokens: also store the spatial tokens (N, L, D), L = H * W of the feature map (ML-Decoder head).
        cache_dir: image-cache root from ``plbench data cache`` (holds ``<dataset>-<split>-<S>/``).
        say: receives the size line before anything is written (default: logging).
        strict: an undecodable image raises (naming it) instead of being stored as a row without features.
    Returns:
        The opened store: pooled float16 (N, D) = the feature map averaged over positions, and tokens.
    Raises:
        InputError: unknown backbone, unavailable weights, missing cache, or not enough disk space.
    """
    say = say or log.info
    out = Path(out)
    dev = runtime.resolve_device(device)
    model = build_model(backbone, Head.GAP.value, 1, pretrained=pretrained, checkpoint=checkpoint)
    # channels-last: measured 2.4x faster for tf_efficientnet_lite0 on a busy 2-core CPU (depthwise convolutions)
    layout = torch.channels_last if runtime.channels_last(dev, prefer=True) else torch.contiguous_format
    net = model.backbone.to(dev, memory_format=layout).eval()
    dtype = runtime.amp_dtype(amp, dev)
    from plbench.engine.pretrained import resolve_normalization

    mean, std = resolve_normalization(net)
    with torch.inference_mode():
        probe = net.forward_features(torch.zeros(1, 3, image_size, image_size, device=dev))
    tok = _as_tokens(probe)  # (1, L, D)
    num_tokens, num_features = int(tok.shape[1]), int(tok.shape[2])
    n = len(split.image_paths)
    needed = feature_bytes(n, num_features, num_tokens if tokens else None)
    say(f"features of {split.dataset}/{split.split}: {n} images x {num_features}"
        f"{f' x {num_tokens} tokens' if tokens else ''} float16 = {format_bytes(needed)} -> {out}")

    cache = None
    if cache_dir is not None:
        from plbench.datasets.images import ImageCache, cache_folder

        folder = cache_folder(cache_dir, split.dataset, split.split, image_size)
        if not folder.is_dir():
            raise InputError(folder, "--cache-dir", "no image cache for this split and size",
                             f"run `plbench data cache --dataset {split.dataset} --split {split.split} "
                             f"--size {image_size}` first, or leave out --cache-dir")
        cache = ImageCache.open(folder)
    images = ImageLabelDataset(split.image_paths, split.labels, image_size, train=False, cache=cache,
                               strict=strict)
    from plbench.datasets.images import collate_skip_none

    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_skip_none)
    t0 = time.perf_counter()
    weights_source = getattr(model, "weights_source", None)
    meta: dict[str, Any] = {
        "dataset": split.dataset, "split": split.split, "fingerprint": split.fingerprint,
        "backbone": backbone, "image_size": int(image_size),
        "weights": {"pretrained": bool(pretrained), "source": weights_source or "random initialisation",
                    "checkpoint": None if checkpoint is None else str(checkpoint),
                    "checkpoint_sha256": _checkpoint_sha256(checkpoint),
                    "backbone_sha256": weights_sha256(net)},  # predict/export rebuild these weights only
        "preprocessing": {"image_size": int(image_size), "mean": list(mean), "std": list(std)},
        "missing_images": int(split.missing_images), "plbench_version": __version__,
        "torch_version": torch.__version__, "device": str(dev),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }

    def batches():
        with torch.inference_mode():
            for batch in progress_bar(loader, desc=f"features {split.split}", unit="batch", enabled=progress):
                if batch is None:  # every image of the batch was undecodable
                    continue
                x, _, index = batch
                x = runtime.to_model_input(x, dev, mean, std).contiguous(memory_format=layout)
                with runtime.autocast(dev, dtype):
                    fmap = net.forward_features(x)
                t = _as_tokens(fmap.float())  # (B, L, D)
                pooled = t.mean(dim=1)  # (B, D): what the GAP head computes
                yield (index.numpy(), pooled.cpu().numpy(), t.cpu().numpy() if tokens else None)

    store = write_feature_store(out, batches(), num_images=n, num_features=num_features,
                                num_tokens=num_tokens if tokens else None, image_ids=split.labels.image_ids,
                                meta=meta)
    elapsed = time.perf_counter() - t0
    say(f"extracted {n} images in {elapsed:.1f} s ({n / max(elapsed, 1e-9):.0f} images/s, {dev})")
    return store


def _as_tokens(features: torch.Tensor) -> torch.Tensor:
    from plbench.heads import tokens_from_features

    return tokens_from_features(features)


def extract_split(
    dataset: str,
    data_root: str | Path,
    split: str,
    features_dir: str | Path,
    *,
    dataset_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> FeatureStore:
    """Load ``split`` of ``dataset`` and extract it into ``FEATURES_DIR/<split>`` (kwargs: :func:`extract_features`)."""
    data = load_dataset(dataset, data_root, split, **(dataset_options or {}))
    strict = bool((dataset_options or {}).get("strict", False))
    return extract_features(data, store_folder(features_dir, split), strict=strict, **kwargs)


# -- training on a store ----------------------------------------------------------------------------


#: float32 bytes up to which a split's feature rows are held in memory by :class:`FeatureDataset`
IN_MEMORY_BYTES = 512 * 2**20


class FeatureDataset(Dataset):
    """Items are ``(features float32 (L, D), labels int8 (C,), index int)``, or None for an image without
    features (undecodable at extraction; use :func:`plbench.datasets.images.collate_skip_none`).

    Pooled features come as (1, D), tokens as (L, D). A store whose labelled rows take at most
    :data:`IN_MEMORY_BYTES` as float32 is read whole on the first batch and served from memory (the demo's
    2,000 x 1,280 store: 10 MB; each epoch's file reads and float16 conversions were a quarter of a linear
    run's time). A larger one is read when an item or a batch is asked for (``__getitems__`` reads a batch's
    rows in one sorted pass of positioned reads, :meth:`FeatureStore.read_rows`), so memory stays bounded
    by the batch, whatever the store's size. Both give the same float32 values.

    Args:
        store: the split's feature store.
        labels: (N', C) labels aligned with the store's first N' rows (N' <= N).
        tokens: serve the (L, D) tokens instead of the pooled (1, D) features.
        strict: an image without features raises instead of being skipped.
    """

    def __init__(self, store: FeatureStore, labels: PartialLabels, *, tokens: bool = False,
                 strict: bool = False) -> None:
        if labels.num_images > store.num_images:
            raise ValueError(f"{labels.num_images} label rows but only {store.num_images} feature rows")
        if tokens:
            store.require_tokens()
        self.store = store
        self.labels = labels
        self.tokens = tokens
        self.strict = strict
        self.epoch = 0
        rows = (store.num_tokens or 1) if tokens else 1
        self._in_memory = labels.num_images * rows * store.num_features * 4 <= IN_MEMORY_BYTES
        self._all: torch.Tensor | None = None  # float32 (N', L, D) once read, when held in memory

    def set_epoch(self, epoch: int) -> None:
        """Kept for the engine's interface: cached features are never augmented."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.labels.num_images

    def _rows(self, index: np.ndarray) -> np.ndarray:
        """float16 (B, L, D) rows of the store, in the order of ``index``."""
        rows = self.store.read_rows(index, tokens=self.tokens)
        return rows if self.tokens else rows[:, None, :]

    def _missing(self, index: int) -> None:
        if self.strict:
            raise InputError(self.store.root, "failed", f"image row {index} has no features (it did not decode "
                             "at extraction)", "re-download the image and re-extract, or run without --strict")

    def empty_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of no rows: features float32 (0, L, D), labels int8 (0, C) (a process's empty share of a
        global batch under torchrun)."""
        rows = (self.store.num_tokens if self.tokens else 1) or 1
        return (torch.zeros(0, rows, self.store.num_features), torch.zeros(0, self.labels.num_classes, dtype=torch.int8))

    def __getitem__(self, index: int) -> FeatureItem | None:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[FeatureItem | None]:
        index = np.asarray(indices, dtype=np.int64)
        if self._in_memory:
            if self._all is None:
                self._all = torch.from_numpy(self._rows(np.arange(len(self), dtype=np.int64)).astype(np.float32))
            feats = self._all[torch.from_numpy(index)]
        else:
            feats = torch.from_numpy(self._rows(index).astype(np.float32))
        labels = torch.from_numpy(self.labels.batch(index))
        ok = self.store.ok
        out: list[FeatureItem | None] = []
        for k, i in enumerate(index.tolist()):
            if ok[i]:
                out.append((feats[k], labels[k], i))
            else:
                self._missing(i)
                out.append(None)
        return out


class HeadOnlyClassifier(nn.Module):
    """The model of a linear-protocol run: ``forward(features (B, L, D)) = head(features)`` -> logits (B, C).

    Its ``state_dict`` holds the head only (keys ``head.*``); the backbone is the one recorded in the
    feature store (``backbone``, ``weights_source``).
    """

    def __init__(self, head: nn.Module, *, backbone: str | None = None, weights_source: str | None = None) -> None:
        super().__init__()
        self.head = head
        self.backbone_name = backbone
        self.weights_source = weights_source

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


def open_store(config: TrainConfig, split_name: str) -> FeatureStore:
    """The store of ``split_name`` in ``config.features``.

    Raises:
        InputError: ``config.features`` unset, or no store of that split in it.
    """
    if config.features is None:
        raise InputError(None, "features", "this run has no features folder", "pass --features DIR")
    folder = store_folder(config.features, split_name)
    if not folder.is_dir():
        raise InputError(folder, "--features", f"no features of split {split_name!r} in {config.features}",
                         f"run `plbench features extract --dataset {config.dataset} --data-root {config.data_root} "
                         f"--split {split_name} --backbone {config.backbone} --image-size {config.image_size}"
                         f"{' --pretrained' if config.pretrained else ''} --out {config.features}` first")
    return FeatureStore.open(folder)


def store_settings(features_dir: str | Path, split: str = "train") -> dict[str, Any]:
    """The TrainConfig fields a features folder fixes: ``backbone``, ``image_size``, ``pretrained``
    (for a CLI that fills them when the user did not pass them)."""
    meta = FeatureStore.open(store_folder(features_dir, split)).meta
    return {"backbone": meta["backbone"], "image_size": int(meta["image_size"]),
            "pretrained": bool((meta.get("weights") or {}).get("pretrained"))}


def _checkpoint_sha256(checkpoint: str | Path | None) -> str | None:
    """sha256 of a backbone weights file (what a store records and a run is checked against); None without one."""
    return None if checkpoint is None else sha256_file(checkpoint)


def _check_config(config: TrainConfig, store: FeatureStore) -> None:
    store.check(dataset=config.dataset, backbone=config.backbone or None, image_size=config.image_size or None,
                pretrained=config.pretrained, checkpoint_sha256=_checkpoint_sha256(config.checkpoint))


def feature_inputs(config: TrainConfig, split_name: str, labels: PartialLabels, *, train: bool,
                   fingerprint: str | None = None, store: FeatureStore | None = None) -> FeatureDataset:
    """The torch dataset of one split for a linear-protocol run (``config.features`` set).

    Contract (what :func:`plbench.engine.train.train` relies on):

    * reads the store ``config.features/<split_name>`` written by ``plbench features extract``;
    * checks it against the run: ``config.dataset``, ``split_name``, ``fingerprint`` (the loaded split's
      annotation fingerprint; pass it), the image ids of ``labels`` (must be the store's first N' rows),
      ``config.backbone``, ``config.image_size``, ``config.pretrained`` and ``config.checkpoint``;
      a mismatch is an :class:`InputError` naming the field;
    * items are ``(features float32 (L, D), labels int8 (C,), index int)`` (pooled: (1, D); a head that
      needs spatial features, :func:`plbench.heads.needs_spatial_features`, gets the (L, D) tokens) or None for a row without features; ``set_epoch`` exists;
      ``.labels`` is ``labels``; ``train`` changes nothing (cached features are never augmented);
    * ``store``: that store already opened (opening a copied store hashes its data file), else it is opened.

    Raises:
        InputError: missing store, or a mismatch as above.
    """
    del train  # features are fixed: no augmentation, same items in training and evaluation
    store = store if store is not None else open_store(config, split_name)
    _check_config(config, store)
    store.check(split=split_name, fingerprint=fingerprint, image_ids=labels.image_ids)
    strict = bool(config.dataset_options.get("strict", False))
    return FeatureDataset(store, labels, tokens=needs_spatial_features(config.head), strict=strict)


def build_head_model(config: TrainConfig, num_classes: int, store: FeatureStore | None = None,
                     extra: dict[str, Any] | None = None) -> HeadOnlyClassifier:
    """The model of a linear-protocol run: ``config.head`` on the store's D features, wrapped in
    :class:`HeadOnlyClassifier`.

    Args:
        config: the run; ``config.features`` names the features folder.
        num_classes: C.
        store: the store the head will read; default: the training split's, ``config.features/<train_split>``.
        extra: head arguments beyond ``config.head_options`` (a zero-shot run's ``query_embeddings``).
    Checks ``store`` against ``config`` (dataset, backbone, image size, pretrained, checkpoint) and that a
    head that needs spatial features (``ml-decoder``, ``boostlu``: :func:`plbench.heads.needs_spatial_features`)
    has tokens to read.

    Raises:
        InputError: a missing store, a mismatch (naming the field), a token head on a pooled-only store, bad
            head options.
    """
    from plbench.heads import create_head

    store = store if store is not None else open_store(config, config.train_split)
    _check_config(config, store)
    if needs_spatial_features(config.head) and not store.has_tokens:
        raise InputError(store.root, "tokens", f"the {config.head} head reads spatial tokens, but these features "
                         "are pooled only", "re-extract with `plbench features extract --tokens`, or use --head gap")
    try:
        head = create_head(config.head, in_features=store.num_features, num_classes=num_classes,
                           **config.head_options, **(extra or {}))
    except (ValueError, TypeError) as e:
        raise InputError(None, "--head / head_options", str(e), "pick a head and options from `plbench train --help`") from None
    weights = store.meta.get("weights") or {}
    return HeadOnlyClassifier(head, backbone=store.backbone, weights_source=weights.get("source"))


__all__ = ["FeatureDataset", "HeadOnlyClassifier", "build_head_model", "extract_features", "extract_split",
           "feature_inputs", "open_store", "store_settings"]

"""What every dataset loader returns, and the registry that names the loaders."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from plbench.artifacts.files import sha256_file
from plbench.errors import InputError
from plbench.labels import PartialLabels

log = logging.getLogger(__name__)


@dataclass
class DatasetSplit:
    """One split of a dataset, parsed to plain records.

    Attributes:
        dataset: registry name of the dataset (``coco``, ``lvis``, ...).
        split: split name (``train``, ``val``, ...).
        image_paths: (N,) absolute image paths as ``str``, aligned with ``labels`` rows.
        labels: the annotations; ``labels.class_names`` fixes the class-index order and
            ``labels.complete`` tells complete labels (COCO) from natural partial ones.
        fingerprint: sha256 hex digest of the source annotation file(s): simulation files record it
            so they are never applied to another dataset.
        class_groups: optional named groups of class indices (LVIS ``rare``/``common``/``frequent``).
        missing_images: number of listed images whose file is absent (kept out of ``image_paths``).
        notes: counts of input rows or labels the loader skipped or merged, by reason (int, e.g.
            ``rows_outside_class_list``), so nothing is dropped without being reported; and what was
            read when a dataset has variants (str, e.g. ``lvis_version: "v1"``, ``annotation_file``).
    """

    dataset: str
    split: str
    image_paths: np.ndarray
    labels: PartialLabels
    fingerprint: str
    class_groups: dict[str, np.ndarray] = field(default_factory=dict)
    missing_images: int = 0
    notes: dict[str, int | str] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return self.labels.class_names

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    def __len__(self) -> int:
        return len(self.image_paths)


@dataclass(frozen=True)
class SplitSource:
    """Where the annotations of one split are, or were looked for.

    Attributes:
        split: the name to pass as ``--split``.
        path: the annotation file found; ``None`` when the split is absent.
        accepted: every file accepted for this split, relative to the root, in the order they are
            tried (for messages), e.g. ``lvis_v1_val.json``, ``annotations/lvis_v1_val.json``.
    """

    split: str
    path: Path | None
    accepted: tuple[str, ...]


Loader = Callable[..., DatasetSplit]
SplitFinder = Callable[..., list[SplitSource]]
DATASETS: dict[str, Loader] = {}
# name -> fn(root, **options) -> list[SplitSource]: the splits a dataset root holds, without parsing them.
SPLIT_FINDERS: dict[str, SplitFinder] = {}


def register_dataset(name: str, splits: SplitFinder | None = None) -> Callable[[Loader], Loader]:
    """Decorator adding a loader ``fn(root, split, **options) -> DatasetSplit`` under ``name``.

    Args:
        splits: optional ``fn(root, **options) -> list[SplitSource]`` telling which splits a root
            holds (options: a subset of the loader's). Without it, ``train`` and ``val`` are assumed.
    """

    def deco(fn: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = fn
        if splits is not None:
            SPLIT_FINDERS[name] = splits
        return fn

    return deco


#: sha256 hex digest over the bytes of the given files, in order (the dataset fingerprint)
file_fingerprint = sha256_file


def drop_missing_images(
    paths: np.ndarray,
    labels: PartialLabels,
    *,
    strict: bool,
    source: str,
    field: str,
    what: str = "images",
    where: str | Path | None = None,
    fix: str = "download the missing images or run without --strict",
    exists: np.ndarray | None = None,
) -> tuple[np.ndarray, PartialLabels, int]:
    """Leave out the images whose file is absent, keeping ``paths`` and the label rows aligned.

    Args:
        paths: (N,) image paths (object/str array), aligned with ``labels`` rows.
        labels: (N, C) labels, dense or sparse.
        strict: a missing file raises instead of being counted, logged and dropped.
        source: what lists the images, for messages (a file name, ``FiftyOne dataset 'x'``).
        field: the field at fault in the strict-mode error (``file_name``, ``ImageID``, ...).
        what: noun for the listed items in messages.
        where: the path the strict-mode error names (default: the first missing file).
        fix: the fix the strict-mode error suggests.
        exists: optional bool (N,) mask of present files (a loader with a faster check passes it);
            computed with one ``os.path.isfile`` per path when ``None``.

    Returns:
        ``(paths, labels, missing)``: the present images, their label rows (same layout and
        ``complete``), and how many were left out. Unchanged inputs when none is missing.

    Raises:
        InputError: ``strict`` and at least one file is missing.
        ValueError: ``paths``, ``labels`` or ``exists`` lengths differ.
    """
    paths = np.asarray(paths, dtype=object)
    if exists is None:
        exists = np.fromiter((os.path.isfile(p) for p in paths), dtype=bool, count=len(paths))
    exists = np.asarray(exists, dtype=bool)
    if not len(paths) == len(exists) == labels.num_images:
        raise ValueError(f"expected paths, exists and labels of one length, but got {len(paths)}, "
                         f"{len(exists)} and {labels.num_images}")
    missing = int(len(exists) - np.count_nonzero(exists))
    if not missing:
        return paths, labels, 0
    first = paths[np.argmin(exists)]
    if strict:
        raise InputError(first if where is None else where, field,
                         f"{missing} of {len(paths)} {what} listed in {source} are missing (first: {first})", fix)
    log.warning("%s: %d of %d %s are missing (first: %s); they are left out",
                source, missing, len(paths), what, first)
    keep = np.flatnonzero(exists)
    return paths[keep], labels.subset(keep), missing

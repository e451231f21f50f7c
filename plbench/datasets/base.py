"""What every dataset loader returns, and the registry that names the loaders."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from plbench.labels import PartialLabels


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
        notes: counts of input rows or labels the loader skipped or merged, by reason (e.g.
            ``rows_outside_class_list``), so nothing is dropped without being reported.
    """

    dataset: str
    split: str
    image_paths: np.ndarray
    labels: PartialLabels
    fingerprint: str
    class_groups: dict[str, np.ndarray] = field(default_factory=dict)
    missing_images: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return self.labels.class_names

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    def __len__(self) -> int:
        return len(self.image_paths)


Loader = Callable[..., DatasetSplit]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator adding a loader ``fn(root, split, **options) -> DatasetSplit`` under ``name``."""

    def deco(fn: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = fn
        return fn

    return deco


def file_fingerprint(*paths: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest over the bytes of the given files, in order."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()

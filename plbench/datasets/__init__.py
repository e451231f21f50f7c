"""Dataset loaders behind one registry: ``load_dataset(name, root, split, **options)``.

Each loader module registers itself on import; heavy optional packages (fiftyone) are imported
inside the loader function that needs them.
"""

from __future__ import annotations

from pathlib import Path

from plbench.datasets.base import DATASETS, DatasetSplit, file_fingerprint, register_dataset
from plbench.datasets import coco as _coco  # noqa: F401  (registers "coco" and "synthetic")
from plbench.datasets import lvis as _lvis  # noqa: F401  (registers "lvis")
from plbench.datasets import openimages as _openimages  # noqa: F401  (registers "openimages")
from plbench.datasets import fiftyone_ as _fiftyone  # noqa: F401  (registers "fiftyone"; imports fiftyone lazily)


def list_datasets() -> list[str]:
    """Names accepted by ``--dataset``."""
    return sorted(DATASETS)


def load_dataset(name: str, root: str | Path, split: str, **options) -> DatasetSplit:
    """Load one split of a registered dataset.

    Raises:
        ValueError: unknown dataset name (the message lists the available ones).
        plbench.errors.InputError: missing or malformed files.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    return DATASETS[name](Path(root), split, **options)


__all__ = ["DATASETS", "DatasetSplit", "file_fingerprint", "list_datasets", "load_dataset", "register_dataset"]

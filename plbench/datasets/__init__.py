"""Dataset loaders behind one registry: ``load_dataset(name, root, split, **options)``.

Each loader module registers itself on import; heavy optional packages (fiftyone) are imported
inside the loader function that needs them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from plbench.datasets.base import DATASETS, DatasetSplit, Loader, file_fingerprint, register_dataset
from plbench.datasets import coco as _coco  # noqa: F401  (registers "coco" and "synthetic")
from plbench.datasets import lvis as _lvis  # noqa: F401  (registers "lvis")
from plbench.datasets import openimages as _openimages  # noqa: F401  (registers "openimages")
from plbench.datasets import fiftyone_ as _fiftyone  # noqa: F401  (registers "fiftyone"; imports fiftyone lazily)
from plbench.errors import InputError


def list_datasets() -> list[str]:
    """Names accepted by ``--dataset``."""
    return sorted(DATASETS)


def loader_options(name: str) -> list[str]:
    """Keyword options the loader ``name`` accepts (its explicit parameters after ``root, split``).

    Raises:
        InputError: unknown dataset name.
    """
    return list(_loader_parameters(_loader(name)))


def _loader(name: str) -> Loader:
    if name not in DATASETS:
        raise InputError(None, "--dataset", f"expected one of {', '.join(list_datasets())}, but got {name!r}",
                         "pick a registered dataset loader")
    return DATASETS[name]


def _loader_parameters(fn: Loader) -> dict[str, inspect.Parameter]:
    params = list(inspect.signature(fn).parameters.values())[2:]  # after root, split
    return {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def load_dataset(name: str, root: str | Path, split: str, **options: Any) -> DatasetSplit:
    """Load one split of a registered dataset.

    Args:
        name: registry name (see :func:`list_datasets`).
        root: dataset root folder.
        split: split name, as the loader understands it.
        options: loader keyword options; each must be a parameter the loader names explicitly
            (a ``**kwargs`` catch-all does not count), so a misspelt or foreign option is an error,
            never silently dropped.

    Raises:
        plbench.errors.InputError: unknown dataset name or option (the message lists the accepted
            ones), missing or malformed files.
    """
    fn = _loader(name)
    accepted = _loader_parameters(fn)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise InputError(None, "dataset options", f"expected options the {name} loader accepts "
                         f"({', '.join(accepted) or 'none'}), but got {', '.join(unknown)}",
                         f"remove {flags} (config: dataset_options) or pick the dataset they belong to")
    return fn(Path(root), split, **options)


__all__ = ["DATASETS", "DatasetSplit", "file_fingerprint", "list_datasets", "load_dataset", "loader_options",
           "register_dataset"]

"""Dataset loaders behind one registry: ``load_dataset(name, root, split, **options)``.

Each loader module registers itself on import; heavy optional packages (fiftyone) are imported
inside the loader function that needs them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from plbench.datasets.base import (DATASETS, SPLIT_FINDERS, DatasetSplit, Loader, SplitSource, file_fingerprint,
                                   register_dataset)
from plbench.datasets import coco as _coco  # noqa: F401  (registers "coco" and "synthetic")
from plbench.datasets import lvis as _lvis  # noqa: F401  (registers "lvis")
from plbench.datasets import openimages as _openimages  # noqa: F401  (registers "openimages")
from plbench.datasets import fiftyone_ as _fiftyone  # noqa: F401  (registers "fiftyone"; imports fiftyone lazily)
from plbench.datasets import nuswide as _nuswide  # noqa: F401  (registers "nuswide")
from plbench.datasets.holdout import holdout_part, parse_holdout_split
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
        split: split name, as the loader understands it; ``<split>-spml-train`` / ``<split>-spml-val``: the
            training / held-out part of ``<split>`` (Cole et al.'s 80/20 split, :mod:`plbench.datasets.holdout`).
        options: loader keyword options; each must be a parameter the loader names explicitly
            (a ``**kwargs`` catch-all does not count), so a misspelt or foreign option is an error,
            never silently dropped.

    Raises:
        plbench.errors.InputError: unknown dataset name or option (the message lists the accepted
            ones), missing or malformed files.
    """
    fn = _loader(name)
    _check_options(name, fn, options)
    base, part = parse_holdout_split(split)  # "<split>-spml-train|val": a part of <split> (datasets.holdout)
    if part is None:
        return fn(Path(root), split, **options)
    try:
        return holdout_part(fn(Path(root), base, **options), part, split)
    except ValueError as e:
        raise InputError(root, "split", f"{split}: {e}", f"use a larger split than {base!r}") from None


def _check_options(name: str, fn: Loader, options: dict[str, Any]) -> None:
    accepted = _loader_parameters(fn)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise InputError(None, "dataset options", f"expected options the {name} loader accepts "
                         f"({', '.join(accepted) or 'none'}), but got {', '.join(unknown)}",
                         f"remove {flags} (config: dataset_options) or pick the dataset they belong to")


DEFAULT_SPLITS = ("train", "val")


def find_splits(name: str, root: str | Path, **options: Any) -> list[SplitSource]:
    """Which splits of dataset ``name`` the folder ``root`` holds, without parsing them.

    Args:
        name: registry name (see :func:`list_datasets`).
        root: dataset root folder.
        options: loader keyword options (checked as by :func:`load_dataset`); the split finder
            receives those it names (e.g. ``openimages_labels``).

    Returns:
        One :class:`SplitSource` per split the dataset knows, in its usual order (train first);
        absent splits have ``path=None``. A dataset without a split finder (FiftyOne: splits are
        sample tags) gets ``train`` and ``val``, assumed present (``path`` is ``root``).

    Raises:
        plbench.errors.InputError: unknown dataset or option, no split present (the message lists
            every file name looked for), or files that contradict each other (e.g. two LVIS versions).
    """
    fn = _loader(name)
    _check_options(name, fn, options)
    root = Path(root)
    finder = SPLIT_FINDERS.get(name)
    if finder is None:
        return [SplitSource(s, root, ()) for s in DEFAULT_SPLITS]
    wanted = inspect.signature(finder).parameters
    sources = finder(root, **{k: v for k, v in options.items() if k in wanted})
    if not any(s.path is not None for s in sources):
        looked = "; ".join(f"{s.split}: {' or '.join(s.accepted)}" for s in sources)
        raise InputError(root, "annotations", f"expected the annotations of at least one {name} split, but found "
                         f"none (looked for {looked})",
                         "point --data-root at the folder holding these files, named as their publisher ships them")
    return sources


__all__ = ["DATASETS", "DatasetSplit", "SplitSource", "file_fingerprint", "find_splits", "list_datasets",
           "load_dataset", "loader_options", "register_dataset"]

"""The single-positive protocol's validation split: 20 % of a training split held out, as Cole et al. do.

Cole et al. ("Multi-Label Learning from Single Positive Labels", CVPR 2021; code
github.com/elijahcole/single-positive-multi-label) and the papers built on their code (Zhou et al. 2022,
Kim et al. 2022 and 2023, Chen et al. 2024) train on COCO train2014 less 20 % of it, select the epoch on
that 20 % with its complete labels, and report val2014. Their split, reproduced here exactly:

* the image list (``preproc/format_coco.py``): the images with at least one instance, ordered by image id
  *as a string* (``"100" < "25"``), as their ``sorted(np.unique([str(image_id) ...]))``;
* the split (``datasets.py::generate_split`` with ``val_frac = 0.2``, ``split_seed = 1200``):
  ``n_val = round(0.2 * n)``, ``perm = np.random.RandomState(1200).permutation(n)``; the training part is
  ``perm[:n - n_val]``, the held-out part ``perm[-n_val:]`` (positions in that list).

Given the same image list, the same image ids are held out (COCO train2014: 82,081 listed images, 16,416
held out). Images without any positive are not in their list and belong to neither part here. The rows
of a part keep the loader's order (the set, not the order, is the protocol).

A split name ``<split>-spml-train`` or ``<split>-spml-val`` (e.g. ``train2014-spml-val``) selects a part
of ``<split>`` in :func:`plbench.datasets.load_dataset`; its fingerprint is the source's combined with the
part, so a simulation of one part is never applied to another.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from plbench.datasets.base import DatasetSplit
from plbench.labels import POS, PartialLabels

__all__ = ["SPML_VAL_FRACTION", "SPML_SPLIT_SEED", "SPML_PARTS", "spml_holdout", "parse_holdout_split",
           "holdout_part"]

#: fraction of the listed images held out (``P['val_frac']`` in the authors' train.py)
SPML_VAL_FRACTION = 0.2
#: seed of the split (``P['split_seed']``)
SPML_SPLIT_SEED = 1200
#: split-name suffixes -> part
SPML_PARTS = {"-spml-train": "train", "-spml-val": "val"}


def spml_holdout(image_ids: np.ndarray, has_positive: np.ndarray, val_fraction: float = SPML_VAL_FRACTION,
                 seed: int = SPML_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the training and held-out parts (pure; the rule of the module docstring).

    Args:
        image_ids: (N,) image ids (int or str; compared as their decimal strings).
        has_positive: bool (N,), the images of the authors' list (at least one instance).
        val_fraction: fraction in (0, 1) held out.
        seed: seed of ``numpy.random.RandomState``.
    Returns:
        int64 row indices into ``image_ids``, each sorted: (train (n - n_val,), held out (n_val,)), where
        n = ``has_positive.sum()`` and n_val = ``round(val_fraction * n)``.
    Raises:
        ValueError: shapes differ, repeated ids among the listed images, or a part would be empty.
    """
    image_ids, has_positive = np.asarray(image_ids), np.asarray(has_positive, dtype=bool)
    if image_ids.shape != has_positive.shape or image_ids.ndim != 1:
        raise ValueError(f"expected image_ids and has_positive of one (N,) shape, but got {image_ids.shape} "
                         f"and {has_positive.shape}")
    rows = np.flatnonzero(has_positive)
    keys = np.array([str(i) for i in image_ids[rows]], dtype=str)
    if np.unique(keys).size != keys.size:
        raise ValueError("expected unique image ids, but some appear more than once")
    listed = rows[np.argsort(keys, kind="stable")]  # the authors' list order: ids sorted as strings
    n = listed.size
    n_val = int(np.round(val_fraction * n))
    if not 0 < n_val < n:
        raise ValueError(f"expected both parts non-empty, but {n} listed images give {n_val} held out")
    perm = np.random.RandomState(seed).permutation(n)
    return np.sort(listed[perm[:n - n_val]]), np.sort(listed[perm[-n_val:]])


def parse_holdout_split(split: str) -> tuple[str, str | None]:
    """``("train2014", "val")`` for ``"train2014-spml-val"``; ``(split, None)`` for any other name."""
    for suffix, part in SPML_PARTS.items():
        if split.endswith(suffix) and len(split) > len(suffix):
            return split[: -len(suffix)], part
    return split, None


def holdout_part(source: DatasetSplit, part: str, name: str) -> DatasetSplit:
    """The ``part`` (``train`` or ``val``) of ``source`` as a split named ``name``, with its own fingerprint.

    Raises:
        ValueError: an unknown part, or a source too small to split (see :func:`spml_holdout`).
    """
    if part not in SPML_PARTS.values():
        raise ValueError(f"expected part in {{train, val}}, but got {part!r}")
    labels = source.labels
    train_rows, val_rows = spml_holdout(labels.image_ids, _rows_with_positive(labels))
    rows = train_rows if part == "train" else val_rows
    tag = f"spml-holdout:{SPML_VAL_FRACTION}:{SPML_SPLIT_SEED}:{part}"
    fingerprint = hashlib.sha256(f"{source.fingerprint}\n{tag}".encode()).hexdigest()
    notes = {**source.notes, "holdout": tag, "holdout_source_images": len(source)}
    return replace(source, split=name, image_paths=source.image_paths[rows], labels=labels.subset(rows),
                   fingerprint=fingerprint, notes=notes)


def _rows_with_positive(labels: PartialLabels) -> np.ndarray:
    if labels.is_sparse:
        rows, _, values = labels.sparse
        return np.bincount(rows[values == POS], minlength=labels.num_images) > 0
    return (labels.matrix == POS).any(axis=1)

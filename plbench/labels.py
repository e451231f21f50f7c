"""The partial-label store: one class for dense (small) and sparse (OpenImages-scale) annotations.

Label codes live here once: ``POS = 1`` (annotated positive), ``NEG = 0`` (annotated negative),
``UNK = -1`` (unannotated). This module imports numpy only (no torch, no plbench I/O).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

POS, NEG, UNK = 1, 0, -1
LABEL_DTYPE = np.int8


@dataclass(frozen=True)
class ClassCounts:
    """Per-class annotation counts, each int64 (C,)."""

    positives: np.ndarray
    negatives: np.ndarray
    unannotated: np.ndarray


class PartialLabels:
    """Partial multi-label annotations for N images and C classes.

    Two layouts hold the same information:

    * dense: ``matrix`` int8 (N, C) with values in {1, 0, -1};
    * sparse: ``rows`` int64 (M,), ``cols`` int32 (M,), ``values`` int8 (M,) in {1, 0} listing the
      explicit annotations, sorted by (row, col) without duplicates.

    ``complete=True`` means every entry is annotated: in the sparse layout an absent entry is a
    negative and only positives are stored (explicit negatives are dropped as redundant); a complete
    dense matrix holds no -1. ``complete=False`` means an absent sparse entry is unannotated.

    Construct with :meth:`from_dense` or :meth:`from_sparse`; treat the arrays as read-only.

    Example:
        >>> lab = PartialLabels.from_dense([[1, 0, -1], [-1, -1, 1]], ["a", "b"], ["x", "y", "z"])
        >>> lab.counts().positives.tolist(), lab.annotated_fraction()
        ([1, 0, 1], 0.5)
        >>> lab.to_sparse().batch([1]).tolist()
        [[-1, -1, 1]]
    """

    def __init__(
        self,
        image_ids: Sequence | np.ndarray,
        class_names: Sequence[str],
        *,
        matrix: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        cols: np.ndarray | None = None,
        values: np.ndarray | None = None,
        complete: bool = False,
    ) -> None:
        self.image_ids = np.asarray(image_ids)
        self.class_names = [str(c) for c in class_names]
        self.complete = bool(complete)
        self._matrix = matrix
        self._rows, self._cols, self._values = rows, cols, values
        if (matrix is None) == (rows is None):
            raise ValueError("give exactly one layout: matrix=, or rows=/cols=/values=")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dense(
        cls,
        matrix: np.ndarray,
        image_ids: Sequence | np.ndarray,
        class_names: Sequence[str],
        *,
        complete: bool = False,
        validate: bool = True,
    ) -> "PartialLabels":
        """Wrap an int8-compatible (N, C) matrix with values in {1, 0, -1}.

        Raises:
            ValueError: wrong shape, a value outside {1, 0, -1}, or a -1 in a ``complete`` matrix.
        """
        matrix = np.ascontiguousarray(matrix, dtype=LABEL_DTYPE)
        if validate:
            if matrix.ndim != 2:
                raise ValueError(f"expected a 2-D (N, C) label matrix, but got shape {matrix.shape}")
            if matrix.shape != (len(image_ids), len(class_names)):
                raise ValueError(
                    f"matrix shape {matrix.shape} does not match {len(image_ids)} image ids "
                    f"and {len(class_names)} class names"
                )
            bad = (matrix != POS) & (matrix != NEG) & (matrix != UNK)
            if bad.any():
                raise ValueError(
                    f"expected label values in {{1, 0, -1}}, but got {np.unique(matrix[bad])[:5].tolist()}"
                )
            if complete and (matrix == UNK).any():
                raise ValueError("expected no -1 (unannotated) entries in complete labels, but got some")
        return cls(image_ids, class_names, matrix=matrix, complete=complete)

    @classmethod
    def from_sparse(
        cls,
        rows: np.ndarray,
        cols: np.ndarray,
        values: np.ndarray,
        image_ids: Sequence | np.ndarray,
        class_names: Sequence[str],
        *,
        complete: bool,
        validate: bool = True,
    ) -> "PartialLabels":
        """Build from explicit (row, col, value) annotations; values in {1, 0}.

        Entries are sorted by (row, col) if needed. With ``complete=True`` explicit negatives are
        dropped (absent already means negative).

        Raises:
            ValueError: unequal or non-1-D arrays, an index out of range, a value outside {1, 0},
                or a duplicate (row, col) pair.
        """
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int32)
        values = np.asarray(values, dtype=LABEL_DTYPE)
        n, c = len(image_ids), len(class_names)
        if validate:
            if not (rows.shape == cols.shape == values.shape and rows.ndim == 1):
                raise ValueError(
                    f"rows {rows.shape}, cols {cols.shape} and values {values.shape} must be equal 1-D shapes"
                )
            if rows.size and (rows.min() < 0 or rows.max() >= n):
                raise ValueError(f"row indices must lie in [0, {n}), but got [{rows.min()}, {rows.max()}]")
            if cols.size and (cols.min() < 0 or cols.max() >= c):
                raise ValueError(f"class indices must lie in [0, {c}), but got [{cols.min()}, {cols.max()}]")
            bad = (values != POS) & (values != NEG)
            if bad.any():
                raise ValueError(f"expected sparse values in {{1, 0}}, but got {np.unique(values[bad])[:5].tolist()}")
        if complete and values.size and not (values == POS).all():
            keep = values == POS
            rows, cols, values = rows[keep], cols[keep], values[keep]
        if rows.size > 1:
            key = rows * c + cols
            step = np.diff(key)
            if not (step > 0).all():
                order = np.argsort(key, kind="stable")
                rows, cols, values, key = rows[order], cols[order], values[order], key[order]
                step = np.diff(key)
                if not (step > 0).all():
                    raise ValueError("duplicate (image, class) annotations in sparse labels")
        return cls(image_ids, class_names, rows=rows, cols=cols, values=values, complete=complete)

    # -- shape and layout ---------------------------------------------------------------------
    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_images, self.num_classes)

    @property
    def is_sparse(self) -> bool:
        return self._matrix is None

    @property
    def num_explicit(self) -> int:
        """Entries stored explicitly: N*C for dense, M for sparse."""
        return int(self._matrix.size if self._matrix is not None else self._rows.size)

    @property
    def matrix(self) -> np.ndarray:
        """The dense int8 (N, C) matrix; raises for a sparse store (use :meth:`to_dense`)."""
        if self._matrix is None:
            raise ValueError("this PartialLabels is sparse; call to_dense() first")
        return self._matrix

    @property
    def sparse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows int64, cols int32, values int8) of a sparse store."""
        if self._rows is None:
            raise ValueError("this PartialLabels is dense; call to_sparse() first")
        return self._rows, self._cols, self._values

    def _absent_code(self) -> int:
        return NEG if self.complete else UNK

    def to_dense(self) -> np.ndarray:
        """int8 (N, C) matrix with -1 for unannotated. Never call on OpenImages-scale data."""
        if self._matrix is not None:
            return self._matrix
        out = np.full(self.shape, self._absent_code(), dtype=LABEL_DTYPE)
        out[self._rows, self._cols] = self._values
        return out

    def to_dense_labels(self) -> "PartialLabels":
        """The same labels in the dense layout."""
        if self._matrix is not None:
            return self
        return PartialLabels(self.image_ids, self.class_names, matrix=self.to_dense(), complete=self.complete)

    def to_sparse(self) -> "PartialLabels":
        """The same labels in the sparse layout.

        A complete dense store keeps only its positives (``complete=True``); any other dense store
        lists every annotated entry (``complete=False``).
        """
        if self._matrix is None:
            return self
        if self.complete:
            r, c = np.nonzero(self._matrix == POS)
        else:
            r, c = np.nonzero(self._matrix != UNK)
        return PartialLabels(
            self.image_ids, self.class_names,
            rows=r.astype(np.int64), cols=c.astype(np.int32), values=self._matrix[r, c],
            complete=self.complete,
        )

    # -- access -------------------------------------------------------------------------------
    def _row_spans(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For sparse stores: (output row, position in the sparse arrays) of every entry of rows ``idx``."""
        starts = np.searchsorted(self._rows, idx, side="left")
        lengths = np.searchsorted(self._rows, idx, side="right") - starts
        total = int(lengths.sum())
        out_rows = np.repeat(np.arange(idx.size, dtype=np.int64), lengths)
        # position = start of its row + offset inside the row
        offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return out_rows, np.repeat(starts, lengths) + offsets

    def _check_indices(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.num_images
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"image indices must lie in [0, {n}), but got [{idx.min()}, {idx.max()}]")
        return np.where(idx < 0, idx + n, idx)

    def batch(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Dense int8 (len(indices), C) labels of the given image rows (what the training loop asks for).

        Raises:
            IndexError: an index outside [-N, N).
        """
        idx = self._check_indices(indices)
        if self._matrix is not None:
            return self._matrix[idx]
        out = np.full((idx.size, self.num_classes), self._absent_code(), dtype=LABEL_DTYPE)
        out_rows, src = self._row_spans(idx)
        out[out_rows, self._cols[src]] = self._values[src]
        return out

    def subset(self, indices: np.ndarray | Sequence[int]) -> "PartialLabels":
        """A new store with the given image rows, in that order (same layout and ``complete``).

        Raises:
            IndexError: an index outside [-N, N).
        """
        idx = self._check_indices(indices)
        ids = self.image_ids[idx]
        if self._matrix is not None:
            return PartialLabels(ids, self.class_names, matrix=self._matrix[idx], complete=self.complete)
        # entries come out row by row in increasing column order, hence already sorted by (row, col)
        out_rows, src = self._row_spans(idx)
        return PartialLabels(
            ids, self.class_names, rows=out_rows, cols=self._cols[src], values=self._values[src],
            complete=self.complete,
        )

    def counts(self) -> ClassCounts:
        """Per-class counts of positives, negatives and unannotated entries (each int64 (C,))."""
        n, c = self.shape
        if self._matrix is not None:
            pos = (self._matrix == POS).sum(axis=0, dtype=np.int64)
            neg = (self._matrix == NEG).sum(axis=0, dtype=np.int64)
        else:
            # weights are 0/1 so the float64 sums are exact integers
            pos = np.bincount(self._cols, weights=self._values, minlength=c).astype(np.int64)
            if self.complete:
                neg = n - pos
            else:
                neg = np.bincount(self._cols, minlength=c).astype(np.int64) - pos
        return ClassCounts(pos, neg, n - pos - neg)

    def annotated_fraction(self) -> float:
        """Fraction of the N x C entries that are annotated (positive or negative), in [0, 1]."""
        total = self.num_images * self.num_classes
        if total == 0:
            return 0.0
        c = self.counts()
        return float((c.positives.sum() + c.negatives.sum()) / total)

    def fingerprint(self) -> str:
        """sha256 hex digest of class names, image ids and annotations; the same for both layouts."""
        h = hashlib.sha256()
        h.update(b"plbench-labels-v1\x00")
        h.update("\x1f".join(self.class_names).encode())
        h.update(b"\x00")
        h.update("\x1f".join(map(str, self.image_ids.tolist())).encode())
        h.update(b"\x00complete" if self.complete else b"\x00partial")
        r, c, v = self.to_sparse().sparse
        for arr in (r.astype("<i8"), c.astype("<i4"), v):
            h.update(np.ascontiguousarray(arr).data)
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PartialLabels):
            return NotImplemented
        if self.shape != other.shape or self.class_names != other.class_names:
            return False
        if not np.array_equal(self.image_ids, other.image_ids):
            return False
        a, b = self.to_sparse(), other.to_sparse()
        if a.complete != b.complete:
            # only equal if the partial one annotates every entry; small enough to compare densely then
            partial = b if a.complete else a
            if partial.num_explicit != self.num_images * self.num_classes:
                return False
            return bool(np.array_equal(self.to_dense(), other.to_dense()))
        return all(np.array_equal(x, y) for x, y in zip(a.sparse, b.sparse))

    __hash__ = None  # mutable arrays inside: not hashable

    def __repr__(self) -> str:
        layout = "sparse" if self.is_sparse else "dense"
        return (
            f"PartialLabels({self.num_images} images x {self.num_classes} classes, {layout}, "
            f"complete={self.complete})"
        )

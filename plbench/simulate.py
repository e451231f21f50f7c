"""Partial-label simulators: turn (complete or natural partial) labels into fewer annotations.

Three schemes, each a pure function of (labels, parameter, seed):

* FPC, "fixed per class" (Ben-Baruch et al., "Multi-label Classification with Partial Annotations
  using Class-aware Selective Loss", CVPR 2022): for each class keep min(n, #positives) random
  positives and min(n, #negatives) random negatives; everything else becomes unannotated.
* RPS, "random per sample" (same paper): every annotation is hidden independently with probability p.
* SPL, single positive label (Cole et al., "Multi-Label Learning from Single Positive Labels",
  CVPR 2021): one random positive per image is kept, everything else is unannotated.

Randomness comes from ``numpy.random.Generator(PCG64(seed))`` only, consumed in an order that does not
depend on the layout: the same labels give the same bits whether stored dense or sparse, on any
machine. Outputs have ``complete=False`` and keep the input layout (dense in, dense out).
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Callable

import numpy as np

from plbench.labels import LABEL_DTYPE, NEG, POS, UNK, PartialLabels

__all__ = [
    "Scheme", "SIMULATORS", "simulate", "simulate_fpc", "simulate_rps", "simulate_single_positive",
    "sample_without_replacement", "make_rng",
]

# complete sparse inputs to RPS must materialise every kept implicit negative
MAX_MATERIALISED_ENTRIES = 1_000_000_000
_RPS_CHUNK_ENTRIES = 1 << 24


def make_rng(seed: int) -> np.random.Generator:
    """The one generator every simulator uses: ``Generator(PCG64(seed))``.

    Raises:
        ValueError: ``seed`` is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"expected seed to be a non-negative integer, but got {seed!r}")
    return np.random.Generator(np.random.PCG64(int(seed)))


def sample_without_replacement(rng: np.random.Generator, population: int, k: int) -> np.ndarray:
    """A uniformly random k-subset of ``range(population)``, sorted, as int64 (min(k, population),).

    Uses O(k) memory when ``population`` is large: i.i.d. uniform draws are taken until k distinct
    values have appeared, and the first k distinct values are kept (by exchangeability they form a
    uniform k-subset). When k is more than half the population a permutation is cheaper.
    """
    if k >= population:
        return np.arange(population, dtype=np.int64)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if 2 * k > population:
        return np.sort(rng.permutation(population)[:k])
    draws = np.empty(0, dtype=np.int64)
    distinct = 0
    while True:
        # enough draws to expect k distinct values: each draw is new with probability >= (pop - k) / pop
        extra = int(np.ceil((k - distinct) * population / (population - k))) + 8
        draws = np.concatenate([draws, rng.integers(0, population, size=extra, dtype=np.int64)])
        order = np.argsort(draws, kind="stable")
        ordered = draws[order]
        is_first = np.empty(draws.size, dtype=bool)  # first occurrence of its value, by draw position
        is_first[order] = np.concatenate(([True], ordered[1:] != ordered[:-1]))
        first_positions = np.flatnonzero(is_first)
        distinct = first_positions.size
        if distinct >= k:
            return np.sort(draws[first_positions[:k]])


def _complement_select(positives: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Map ranks in the complement of sorted ``positives`` within [0, N) to the indices themselves.

    The r-th (0-based) index not in ``positives`` is r + #{i : positives[i] - i <= r}.
    """
    shifted = positives - np.arange(positives.size, dtype=np.int64)
    return ranks + np.searchsorted(shifted, ranks, side="right")


def _group_order(keys: np.ndarray, num_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable argsort of small non-negative integer ``keys`` plus group start offsets (num_groups + 1,)."""
    if num_groups <= np.iinfo(np.uint16).max:
        order = np.argsort(keys.astype(np.uint16), kind="stable")  # radix sort
    else:
        order = np.argsort(keys, kind="stable")
    starts = np.zeros(num_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=num_groups), out=starts[1:])
    return order, starts


def _check_labels(labels: PartialLabels) -> None:
    if not isinstance(labels, PartialLabels):
        raise TypeError(f"expected a PartialLabels, but got {type(labels).__name__}")


# -- FPC -------------------------------------------------------------------------------------------
def simulate_fpc(labels: PartialLabels, n_per_class: int, seed: int) -> PartialLabels:
    """Fixed per class: keep min(n, #pos) random positives and min(n, #neg) random negatives per class.

    The kept entries of each (class, label) group are a uniformly random subset of that group; all
    other entries become unannotated. For complete sparse labels the negatives of a class are drawn
    from the implicit complement of its positives without materialising it.

    Args:
        labels: (N, C) labels, dense or sparse, complete or partial.
        n_per_class: non-negative int, the number of positives and of negatives kept per class.
        seed: non-negative int.
    Returns:
        (N, C) labels with ``complete=False``, in the input layout. Same seed, same bits.
    Raises:
        ValueError: ``n_per_class`` or ``seed`` is not a non-negative integer.
    """
    _check_labels(labels)
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 0:
        raise ValueError(f"expected n_per_class to be a non-negative integer, but got {n_per_class!r}")
    rng = make_rng(seed)
    n = int(n_per_class)
    counts = labels.counts()
    num_classes = labels.num_classes
    # one draw per (class, label) group, in the fixed order class 0 pos, class 0 neg, class 1 pos, ...
    ranks = []
    for c in range(num_classes):
        ranks.append(sample_without_replacement(rng, int(counts.positives[c]), n))
        ranks.append(sample_without_replacement(rng, int(counts.negatives[c]), n))
    if labels.is_sparse:
        return _fpc_sparse(labels, ranks)
    return _fpc_dense(labels, ranks)


def _fpc_dense(labels: PartialLabels, ranks: list[np.ndarray]) -> PartialLabels:
    columns = np.ascontiguousarray(labels.matrix.T)  # (C, N): one contiguous scan per class
    out = np.full(labels.shape, UNK, dtype=LABEL_DTYPE)
    for c in range(labels.num_classes):
        for code, r in ((POS, ranks[2 * c]), (NEG, ranks[2 * c + 1])):
            if r.size:
                out[np.flatnonzero(columns[c] == code)[r], c] = code
    return PartialLabels(labels.image_ids, labels.class_names, matrix=out, complete=False)


def _fpc_sparse(labels: PartialLabels, ranks: list[np.ndarray]) -> PartialLabels:
    rows, cols, values = labels.sparse
    num_classes = labels.num_classes
    # group g = 2 * class + (1 if negative): explicit members in (row) order after a stable sort
    groups = cols.astype(np.int64) * 2 + (values == NEG)
    order, starts = _group_order(groups, 2 * num_classes)
    del groups
    keep = np.zeros(rows.size, dtype=bool)
    new_rows, new_cols = [], []
    for c in range(num_classes):
        r = ranks[2 * c]
        keep[order[starts[2 * c] + r]] = True
        r = ranks[2 * c + 1]
        if not r.size:
            continue
        if labels.complete:
            positives = rows[order[starts[2 * c]:starts[2 * c + 1]]]  # sorted by row
            new_rows.append(_complement_select(positives, r))
            new_cols.append(np.full(r.size, c, dtype=np.int32))
        else:
            keep[order[starts[2 * c + 1] + r]] = True
    del order
    out_rows, out_cols, out_values = rows[keep], cols[keep], values[keep]
    if new_rows:
        out_rows = np.concatenate([out_rows] + new_rows)
        out_cols = np.concatenate([out_cols] + new_cols)
        out_values = np.concatenate([out_values, np.full(out_rows.size - out_values.size, NEG, LABEL_DTYPE)])
        sort = np.argsort(out_rows * num_classes + out_cols, kind="stable")
        out_rows, out_cols, out_values = out_rows[sort], out_cols[sort], out_values[sort]
    return PartialLabels(
        labels.image_ids, labels.class_names, rows=out_rows, cols=out_cols, values=out_values, complete=False
    )


# -- RPS -------------------------------------------------------------------------------------------
def simulate_rps(labels: PartialLabels, p: float, seed: int) -> PartialLabels:
    """Random per sample: hide each annotation independently with probability ``p``.

    One uniform double u is drawn per annotated entry in row-major order (for complete labels that is
    every entry, implicit negatives included); the entry is hidden when u < p.

    Args:
        labels: (N, C) labels, dense or sparse, complete or partial.
        p: probability in [0, 1].
        seed: non-negative int.
    Returns:
        (N, C) labels with ``complete=False``, in the input layout. Same seed, same bits.
    Raises:
        ValueError: ``p`` outside [0, 1], a bad seed, or complete sparse labels whose kept implicit
            negatives would exceed ``MAX_MATERIALISED_ENTRIES`` explicit entries.
    """
    _check_labels(labels)
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"expected p in [0, 1], but got {p!r}")
    rng = make_rng(seed)
    if not labels.is_sparse:
        matrix = labels.matrix
        annotated = matrix != UNK
        num_annotated = int(np.count_nonzero(annotated))
        if num_annotated == matrix.size:  # same draws, without the boolean scatter
            hide = rng.random(matrix.shape) < p
        else:
            hide = np.zeros(matrix.shape, dtype=bool)
            hide[annotated] = rng.random(num_annotated) < p
        out = np.where(hide, np.int8(UNK), matrix).astype(LABEL_DTYPE, copy=False)
        return PartialLabels(labels.image_ids, labels.class_names, matrix=out, complete=False)
    rows, cols, values = labels.sparse
    if not labels.complete:
        keep = rng.random(rows.size) >= p
        return PartialLabels(
            labels.image_ids, labels.class_names, rows=rows[keep], cols=cols[keep], values=values[keep],
            complete=False,
        )
    return _rps_complete_sparse(labels, p, rng)


def _rps_complete_sparse(labels: PartialLabels, p: float, rng: np.random.Generator) -> PartialLabels:
    """RPS over all N*C entries of complete sparse labels, a block of rows at a time."""
    n, c = labels.shape
    expected = (1.0 - p) * n * c
    if expected > MAX_MATERIALISED_ENTRIES:
        raise ValueError(
            f"RPS({p}) on complete labels of {n} x {c} would keep about {expected:.3g} explicit "
            f"annotations (limit {MAX_MATERIALISED_ENTRIES:.3g}); use FPC, or a larger p"
        )
    block = max(1, _RPS_CHUNK_ENTRIES // max(c, 1))
    parts_r, parts_c, parts_v = [], [], []
    for start in range(0, n, block):
        stop = min(n, start + block)
        dense = labels.batch(np.arange(start, stop))
        # rng.random draws doubles sequentially, so blocks give the same stream as one big draw
        keep = rng.random(dense.shape) >= p
        r, k = np.nonzero(keep)
        parts_r.append(r.astype(np.int64) + start)
        parts_c.append(k.astype(np.int32))
        parts_v.append(dense[r, k])
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.empty(0, dt))
    return PartialLabels(
        labels.image_ids, labels.class_names, rows=cat(parts_r, np.int64), cols=cat(parts_c, np.int32),
        values=cat(parts_v, LABEL_DTYPE), complete=False,
    )


# -- single positive -------------------------------------------------------------------------------
def simulate_single_positive(labels: PartialLabels, seed: int) -> PartialLabels:
    """Keep one uniformly random positive per image; every other entry becomes unannotated.

    Images without any positive end up fully unannotated (they stay in the store, so row indices
    are unchanged). One ``rng.integers(0, k_i)`` draw per image with k_i >= 1 positives, in row order.

    Args:
        labels: (N, C) labels, dense or sparse, complete or partial.
        seed: non-negative int.
    Returns:
        (N, C) labels with ``complete=False`` and at most one (positive) annotation per row.
    """
    _check_labels(labels)
    rng = make_rng(seed)
    if labels.is_sparse:
        rows, cols, values = labels.sparse
        pos_rows, pos_cols = rows[values == POS], cols[values == POS]
    else:
        pos_rows, pos_cols = np.nonzero(labels.matrix == POS)
    # positives are in row-major order: each image's positives are one contiguous run
    per_image = np.bincount(pos_rows, minlength=labels.num_images)
    has = np.flatnonzero(per_image)
    run_starts = np.cumsum(per_image) - per_image
    pick = run_starts[has] + rng.integers(0, per_image[has], dtype=np.int64) if has.size else has
    if labels.is_sparse:
        return PartialLabels(
            labels.image_ids, labels.class_names, rows=has.astype(np.int64),
            cols=pos_cols[pick].astype(np.int32), values=np.full(has.size, POS, LABEL_DTYPE), complete=False,
        )
    out = np.full(labels.shape, UNK, dtype=LABEL_DTYPE)
    out[has, pos_cols[pick]] = POS
    return PartialLabels(labels.image_ids, labels.class_names, matrix=out, complete=False)


# -- registry --------------------------------------------------------------------------------------
class Scheme(str, Enum):
    """Simulation schemes; the value is the name used on the command line and in file names."""

    FPC = "fpc"  # param: positives and negatives kept per class (int)
    RPS = "rps"  # param: probability of hiding each annotation
    SPL = "spl"  # param: none (ignored)

    @classmethod
    def parse(cls, value: "Scheme | str") -> "Scheme":
        """``Scheme`` from its name; raises ValueError listing the allowed names."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"unknown simulation scheme {value!r}; available: {', '.join(s.value for s in cls)}"
            ) from None


SIMULATORS: dict[Scheme, Callable[[PartialLabels, float | int | None, int], PartialLabels]] = {
    Scheme.FPC: lambda labels, param, seed: simulate_fpc(labels, _as_count(param), seed),
    Scheme.RPS: lambda labels, param, seed: simulate_rps(labels, _as_probability(param), seed),
    Scheme.SPL: lambda labels, param, seed: simulate_single_positive(labels, seed),
}


def _as_count(param: float | int | None) -> int:
    value = None if param is None or isinstance(param, bool) else float(param)
    if value is None or not math.isfinite(value) or not value.is_integer() or value < 1:
        # n = 0 would hide every label: an empty training set, never what a user means
        raise ValueError(f"FPC expects a positive integer count per class (n >= 1), but got {param!r}")
    return int(value)


def _as_probability(param: float | int | None) -> float:
    value = None if param is None or isinstance(param, bool) else float(param)
    if value is None or not 0.0 <= value <= 1.0:  # NaN fails the comparison too
        raise ValueError(f"RPS expects a probability in [0, 1], but got {param!r}")
    return value


def normalise_param(scheme: Scheme | str, param: float | int | None) -> int | float | None:
    """The parameter in its canonical type: int for FPC, float for RPS, None for SPL.

    Raises:
        ValueError: unknown scheme or a parameter out of range.
    """
    scheme = Scheme.parse(scheme)
    if scheme is Scheme.FPC:
        return _as_count(param)
    if scheme is Scheme.RPS:
        return _as_probability(param)
    return None


def simulate(labels: PartialLabels, scheme: Scheme | str, param: float | int | None, seed: int) -> PartialLabels:
    """Run the named simulator: ``fpc`` (param = n per class), ``rps`` (param = p), ``spl`` (no param).

    Raises:
        ValueError: unknown scheme (the message lists the available ones) or a bad parameter.
    """
    return SIMULATORS[Scheme.parse(scheme)](labels, param, seed)

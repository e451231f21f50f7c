"""Multi-label metrics with partial targets: per-class AP, mAP (percent), CF1/OF1.

Targets are (N, C) in {1, 0, -1}; entries with target ``-1`` are left out, class by class. Classes with
no positive or no negative among their annotated entries have no defined AP: they are left out of
the mean and counted. Inputs may be numpy arrays or torch tensors (CPU or CUDA: the work runs where
the tensor lives).

Average precision is scikit-learn's ``average_precision_score`` (step-wise, no interpolation):
``AP = (1/P) * sum over positives i of precision at threshold s_i``, where precision at threshold
``t`` = #positives with score >= t / #entries with score >= t, so tied scores form one threshold.
On the CPU (numpy), per class: entries below the lowest positive never count and are dropped; for
probability-like scores (float32, all positives > 0) the rest are counted with a histogram over the
float bits, O(n), sorting only the few entries that share a histogram cell with a positive; other
columns are sorted once (numpy's vectorised sort, much faster than an argsort) and the positives
ranked by bisection. On a GPU (torch) the classes are processed in batches without sorting whole
columns: the positives are sorted (``topk``), every entry is located among them with ``searchsorted``,
and a histogram of those locations gives the number of entries at or above each positive's score.
Counts are integers; the ratio and the mean are float64.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from plbench.labels import NEG, POS, UNK

# Elements (classes x images) processed at once: bounds the int64 work arrays to ~64 MiB each.
_CHUNK_ELEMENTS = 1 << 23


def _check_shapes(s_shape: tuple, t_shape: tuple) -> None:
    if len(s_shape) != 2 or tuple(s_shape) != tuple(t_shape):
        raise ValueError(f"scores {tuple(s_shape)} and targets {tuple(t_shape)} must both be (N, C)")


def _bad_target_values(bad: np.ndarray) -> ValueError:
    return ValueError(f"expected target values in {{1, 0, -1}}, but got {np.unique(bad)[:5].tolist()}")


def _prepare_numpy(scores: Any, targets: Any, validate: bool) -> tuple[np.ndarray, np.ndarray]:
    """CPU inputs as numpy (zero-copy for CPU tensors); validation with numpy's fast reductions."""
    if isinstance(scores, Tensor):
        scores = scores.detach().cpu()
        scores = (scores if scores.dtype in (torch.float32, torch.float64) else scores.float()).numpy()
    if isinstance(targets, Tensor):
        targets = targets.detach().cpu().numpy()
    s, t = np.asarray(scores), np.asarray(targets)
    if validate:
        _check_shapes(s.shape, t.shape)
        if not np.issubdtype(s.dtype, np.floating):
            raise ValueError(f"expected floating-point scores, but got {s.dtype}")
        if s.size and not np.isfinite(s).all():
            raise ValueError("expected finite scores, but got NaN or infinite values")
        if t.size:
            if np.issubdtype(t.dtype, np.integer):
                if t.min() < UNK or t.max() > POS:
                    raise _bad_target_values(t[(t < UNK) | (t > POS)])
            elif not ((t == POS) | (t == NEG) | (t == UNK)).all():
                raise _bad_target_values(t[(t != POS) & (t != NEG) & (t != UNK)])
    return s, t


def _prepare_torch(scores: Tensor, targets: Any, validate: bool) -> tuple[Tensor, Tensor]:
    """GPU inputs: stay on the scores' device."""
    s = scores.detach()
    t = targets.detach() if isinstance(targets, Tensor) else torch.as_tensor(np.asarray(targets))
    t = t.to(s.device)
    if validate:
        _check_shapes(tuple(s.shape), tuple(t.shape))
        if not s.is_floating_point():
            raise ValueError(f"expected floating-point scores, but got {s.dtype}")
        if not bool(torch.isfinite(s).all()):
            raise ValueError("expected finite scores, but got NaN or infinite values")
        bad = (t != POS) & (t != NEG) & (t != UNK)
        if bool(bad.any()):
            raise _bad_target_values(t[bad].cpu().numpy())
    return s, t


def _on_gpu(scores: Any) -> bool:
    return isinstance(scores, Tensor) and scores.device.type != "cpu"


def _ap_columns(s: Tensor, t: Tensor) -> Tensor:
    """AP (float64 (w,)) of columns that each have >= 1 positive and >= 1 negative; s, t are (w, N)."""
    positive = t == POS
    valid = t != UNK
    n_pos = positive.sum(1)  # (w,)
    p_max = int(n_pos.max())
    # sorted positive scores per class, padded with +inf (never <= a finite score)
    pos_scores = torch.where(positive, s, torch.full_like(s, float("inf")))
    top = torch.topk(pos_scores, p_max, dim=1, largest=False, sorted=True).values  # (w, p_max)
    # loc_j = number of positives with score <= s_j; entry j is at or above positive r iff loc_j > r
    loc = torch.searchsorted(top, s, right=True)
    loc = loc.masked_fill_(~valid, 0)
    hist = torch.zeros(s.shape[0], p_max + 1, dtype=torch.int64, device=s.device)
    hist.scatter_add_(1, loc, torch.ones_like(loc))
    n_at_or_above = hist.flip(1).cumsum(1).flip(1)[:, 1:]  # (w, p_max): entries with score >= top[r]
    pos_at_or_above = n_pos[:, None] - torch.searchsorted(top, top, right=False)  # ties among positives
    precision = pos_at_or_above.double() / n_at_or_above.clamp(min=1).double()
    real = torch.arange(p_max, device=s.device)[None, :] < n_pos[:, None]
    return (precision * real).sum(1) / n_pos.double()


def _ap_column_numpy(s: np.ndarray, t: np.ndarray) -> float:
    """AP of one class on the CPU from its scores ``s`` (-inf at unannotated entries) and targets ``t``.

    Needed per positive: the number of annotated entries at or above its score. Entries below the lowest
    positive never count. Large float32 columns of positive scores (probabilities) are counted with a
    histogram over the float bits (O(n), about one cell per two entries), sorting only the entries that
    share a cell with a positive; otherwise the candidates are sorted. Both are exact.
    """
    pos = np.sort(s[t == POS])
    pos_at_or_above = pos.size - np.searchsorted(pos, pos, side="left")  # ties among positives
    if s.dtype == np.float32 and pos[0] > 0 and s.size >= 4096 and pos.size * 4 <= s.size:
        at_or_above = _at_or_above_by_histogram(s, pos)
    else:
        cand = np.sort(s[s >= pos[0]])  # also drops the -inf of unannotated entries
        at_or_above = cand.size - np.searchsorted(cand, pos, side="left")
    return float(np.mean(pos_at_or_above / at_or_above))


def _at_or_above_by_histogram(s: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """For sorted float32 ``pos`` > 0: how many entries of ``s`` are >= each (int64 (P,)).

    The bit patterns of positive floats, read as integers, sort like the values; everything below the
    lowest positive (negative floats, -inf, zeros included) falls into cell 0 and is never counted.
    """
    k = s.view(np.int32)
    kp = pos.view(np.int32).astype(np.int64)
    k0 = int(kp[0])
    span = int(np.float32(s.max()).view(np.int32)) - k0 + 1
    shift = max(0, (span - 1).bit_length() - min(16, max(10, s.size.bit_length() - 1)))
    step = 1 << shift
    cells = (np.maximum(k, k0 - step) - (k0 - step)) >> shift  # key cell + 1, or 0 below k0; no overflow
    n_cells = ((span - 1) >> shift) + 1
    counts = np.bincount(cells, minlength=n_cells + 1)
    up_to = np.cumsum(counts[1:])  # entries in key cells <= c
    pos_cells = (kp - k0) >> shift
    shared = np.zeros(n_cells + 1, dtype=bool)
    shared[pos_cells + 1] = True
    near = np.sort(k[shared[cells]]).astype(np.int64)  # entries sharing a cell with some positive
    next_start = k0 + ((pos_cells + 1) << shift)
    # above the positive's cell: from the histogram; inside it: exact, among the sorted shared entries
    inside = np.searchsorted(near, next_start, side="left") - np.searchsorted(near, kp, side="left")
    return (up_to[-1] - up_to[pos_cells]) + inside


def _transpose_columns(a: np.ndarray, sel: slice | np.ndarray, width: int) -> np.ndarray:
    """``a[:, sel].T`` as a contiguous (width, N) array, copied in row tiles that stay in cache."""
    out = np.empty((width, a.shape[0]), dtype=a.dtype if a.dtype != np.float16 else np.float32)
    tile = 256
    for r in range(0, a.shape[0], tile):
        out[:, r : r + tile] = a[r : r + tile, sel].T
    return out


def _ap_cpu(s: np.ndarray, t: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """AP of the given (evaluable) columns; blocks of columns are transposed so each class is contiguous."""
    out = np.empty(cols.size)
    block = 128
    for start in range(0, cols.size, block):
        idx = cols[start : start + block]
        # a run of consecutive classes is a slice: a cheaper copy than a fancy-index gather
        sel = slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == idx.size else idx
        s_block, t_block = _transpose_columns(s, sel, idx.size), _transpose_columns(t, sel, idx.size)
        np.putmask(s_block, t_block == UNK, -np.inf)
        for j in range(idx.size):
            out[start + j] = _ap_column_numpy(s_block[j], t_block[j])
    return out


def average_precision_per_class(
    scores: Any, targets: Any, *, validate: bool = True, backend: str = "auto"
) -> np.ndarray:
    """Average precision of each class, skipping ``-1`` targets; equals sklearn's per class.

    Args:
        scores: float (N, C) scores (probabilities or logits: only their order matters), numpy or torch.
        targets: (N, C) in {1, 0, -1}, numpy or torch.
        validate: check shapes, finite scores and target values.
        backend: ``"auto"`` (numpy on the CPU, batched torch on a GPU), ``"numpy"`` or ``"torch"``.
    Returns:
        float64 (C,): AP as a fraction in [0, 1]; NaN for classes without a positive or without a
        negative among their annotated entries.
    Raises:
        ValueError: shape mismatch, non-float or non-finite scores, target values outside {1, 0, -1},
            unknown backend.

    Example:
        >>> average_precision_per_class([[0.9, 0.1], [0.8, 0.7], [0.2, 0.3]], [[1, 0], [0, -1], [1, 1]])
        array([0.83333333, 1.        ])
    """
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"expected backend auto, numpy or torch, but got {backend!r}")
    if backend == "torch" or (backend == "auto" and _on_gpu(scores)):
        st, tt = _prepare_torch(scores if isinstance(scores, Tensor) else torch.as_tensor(np.asarray(scores)),
                                targets, validate)
        return _ap_torch(st, tt)
    s, t = _prepare_numpy(scores, targets, validate)
    ap = np.full(s.shape[1], np.nan)
    n_pos = (t == POS).sum(0)
    n_neg = (t == NEG).sum(0)
    cols = np.flatnonzero((n_pos > 0) & (n_neg > 0))
    if cols.size:
        ap[cols] = _ap_cpu(s, t, cols)
    return ap


def _ap_torch(s: Tensor, t: Tensor) -> np.ndarray:
    n_pos = (t == POS).sum(0)
    n_neg = (t == NEG).sum(0)
    ap = np.full(s.shape[1], np.nan)
    cols = torch.nonzero((n_pos > 0) & (n_neg > 0)).flatten()
    cols = cols[torch.argsort(n_pos[cols], stable=True)]  # similar positive counts share a chunk
    width = max(1, _CHUNK_ELEMENTS // max(s.shape[0], 1))
    for start in range(0, cols.numel(), width):
        idx = cols[start : start + width]
        ap[idx.cpu().numpy()] = _ap_columns(s[:, idx].T.contiguous(), t[:, idx].T.contiguous()).cpu().numpy()
    return ap


class MAPResult(float):
    """mAP in percent (a ``float``), with the details as attributes.

    Attributes:
        ap: float64 (C,) per-class AP as a fraction, NaN for skipped classes.
        num_evaluated: classes in the mean.
        num_skipped: classes without a positive or a negative (left out).
    """

    ap: np.ndarray
    num_evaluated: int
    num_skipped: int

    def __new__(cls, ap: np.ndarray) -> "MAPResult":
        valid = ~np.isnan(ap)
        value = float(ap[valid].mean() * 100.0) if valid.any() else float("nan")
        obj = super().__new__(cls, value)
        obj.ap, obj.num_evaluated, obj.num_skipped = ap, int(valid.sum()), int((~valid).sum())
        return obj

    def __reduce__(self) -> tuple:
        return (MAPResult, (self.ap,))

    def __repr__(self) -> str:
        return f"MAPResult({float(self):.4f}%, evaluated={self.num_evaluated}, skipped={self.num_skipped})"


def mean_average_precision(scores: Any, targets: Any, *, validate: bool = True) -> MAPResult:
    """Mean over classes of :func:`average_precision_per_class`, in percent.

    Returns:
        :class:`MAPResult`, a float in [0, 100] (NaN if no class is evaluable) that also carries
        ``ap`` (per class, fraction), ``num_evaluated`` and ``num_skipped``.
    """
    return MAPResult(average_precision_per_class(scores, targets, validate=validate))


class MAPMeter:
    """Accumulate (scores, targets) batches, compute mAP once at the end.

    Batches are copied to host memory as they come (GPU memory stays free).

    Example:
        >>> meter = MAPMeter()
        >>> meter.update([[0.9], [0.1]], [[1], [0]]); meter.update([[0.4]], [[1]])
        >>> round(float(meter.compute()), 2)
        100.0
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def update(self, scores: Any, targets: Any) -> None:
        """Add a batch: scores float (B, C), targets (B, C) in {1, 0, -1} (numpy or torch, any device)."""
        s, t = _prepare_numpy(scores, targets, validate=False)
        _check_shapes(s.shape, t.shape)
        if self._scores and s.shape[1] != self._scores[0].shape[1]:
            raise ValueError(f"expected {self._scores[0].shape[1]} classes, but got a batch with {s.shape[1]}")
        self._scores.append(np.array(s, copy=True))
        self._targets.append(np.asarray(t, dtype=np.int8).copy())

    @property
    def num_samples(self) -> int:
        return sum(s.shape[0] for s in self._scores)

    def compute(self) -> MAPResult:
        """mAP (percent) of everything added since the last reset. Raises ValueError when empty."""
        if not self._scores:
            raise ValueError("MAPMeter.compute() called before any update()")
        return mean_average_precision(np.concatenate(self._scores), np.concatenate(self._targets))


class F1Scores(NamedTuple):
    """Threshold metrics in percent: class-averaged (C*) and overall (O*) F1, precision and recall."""

    cf1: float
    of1: float
    cp: float
    cr: float
    op: float
    or_: float


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def f1_scores(scores: Any, targets: Any, threshold: float = 0.5, *, validate: bool = True) -> F1Scores:
    """CF1 / OF1 (and CP, CR, OP, OR) at ``scores >= threshold``, in percent.

    Over the classes that :func:`average_precision_per_class` evaluates (>= 1 positive and >= 1
    negative among the annotated entries), ``-1`` entries left out. Per class c: CP_c = TP/(TP+FP)
    (0 when nothing is predicted), CR_c = TP/(TP+FN); CP, CR are their means and CF1 = 2 CP CR/(CP+CR).
    OP, OR use the totals over those classes; OF1 likewise. NaN everywhere when no class is evaluable.

    Args:
        scores: float (N, C), on the scale of ``threshold`` (probabilities for 0.5).
        targets: (N, C) in {1, 0, -1}.
    Returns:
        :class:`F1Scores` ``(cf1, of1, cp, cr, op, or_)``; ``._asdict()`` gives a dict.
    """
    if _on_gpu(scores):
        st, tt = _prepare_torch(scores, targets, validate)
        predicted = (st >= threshold) & (tt != UNK)
        positive = tt == POS
        counts = [x.sum(0).cpu().numpy() for x in (predicted & positive, predicted, positive, tt == NEG)]
    else:
        s, t = _prepare_numpy(scores, targets, validate)
        predicted = (s >= threshold) & (t != UNK)
        positive = t == POS
        counts = [x.sum(0) for x in (predicted & positive, predicted, positive, t == NEG)]
    tp, n_pred, n_pos, n_neg = (np.asarray(x, dtype=np.float64) for x in counts)
    keep = (n_pos > 0) & (n_neg > 0)
    if not keep.any():
        nan = float("nan")
        return F1Scores(nan, nan, nan, nan, nan, nan)
    tp, n_pred, n_pos = tp[keep], n_pred[keep], n_pos[keep]
    cp = float(np.mean(np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0)))
    cr = float(np.mean(tp / n_pos))
    op = float(tp.sum() / n_pred.sum()) if n_pred.sum() > 0 else 0.0
    or_ = float(tp.sum() / n_pos.sum())
    return F1Scores(*(100.0 * v for v in (_f1(cp, cr), _f1(op, or_), cp, cr, op, or_)))


__all__ = ["F1Scores", "MAPMeter", "MAPResult", "average_precision_per_class", "f1_scores",
           "mean_average_precision"]

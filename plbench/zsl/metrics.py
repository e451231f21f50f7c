"""Zero-shot multi-label metrics as the NUS-WIDE zero-shot papers compute them.

ZSL scores the unseen classes only; GZSL scores seen and unseen together (the same functions on
the (N, S + U) matrix, columns in the same order as the targets). Both report:

* **mAP** (percent): average precision per *class*, ranking the images of that class's column,
  then the mean over classes. This is what ``hbdat/cvpr20_LESA`` ``core/utils.py::compute_AP``
  (scikit-learn's ``average_precision_score`` per column), ``akshitac8/BiAM``
  ``util_nus.py::compute_AP`` and ML-Decoder's ``helper_functions.py::mAP`` compute. As in all
  three, a class without any positive counts as AP 0 in the mean (``empty_classes="zero"``; they
  skip the computation but keep the zero); ``"skip"`` leaves such classes out instead. Targets of
  ``-1`` (unannotated) are left out of the ranking, as LESA and BiAM leave out their 0 (unknown)
  entries. A class with positives and no negative has AP 1. Ties form one threshold
  (scikit-learn's definition; BiAM and ML-Decoder break ties by sort order, the same for distinct
  scores). The AP itself is :func:`plbench.metrics.average_precision_per_class`.
* **Top-K precision, recall, F1** ("overall", LESA's / BiAM's ``compute_F1(mode_F1="overall")``): per
  image the K highest-scored classes are predicted positive; over all images, TP = predicted entries
  whose target is 1, P = TP / (N K), R = TP / (number of targets equal to 1), F1 = 2PR / (P + R).
  Images without positives are kept (they add K predictions and no positive). Ties among scores
  are broken towards the lower class index (a stable sort), so results are deterministic.

All values are percent. ML-Decoder's NUS-WIDE evaluation keeps only test images with an unseen
positive; LESA and BiAM keep every test image. Choose with
:func:`plbench.zsl.splits.restrict_labels` before calling these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from plbench.labels import NEG, POS, UNK
from plbench.metrics import average_precision_per_class

EMPTY_CLASSES = ("zero", "skip")
DEFAULT_KS = (3, 5)


@dataclass(frozen=True)
class TopK:
    """Overall top-K precision, recall and F1, each in percent."""

    k: int
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class ZeroShotScores:
    """mAP and top-K scores of one evaluation (ZSL or GZSL), percent.

    Attributes:
        map: mean AP over classes, percent.
        ap: float64 (C,) per-class AP as a fraction; NaN for classes left out (``empty_classes="skip"``).
        top_k: one :class:`TopK` per K, in the order asked.
        num_images: N.
        num_empty_classes: classes without any positive (AP 0 or left out).
    """

    map: float
    ap: np.ndarray
    top_k: tuple[TopK, ...]
    num_images: int
    num_empty_classes: int

    def f1(self, k: int) -> float:
        """F1 at K (percent). Raises KeyError when K was not computed."""
        for t in self.top_k:
            if t.k == k:
                return t.f1
        raise KeyError(f"F1@{k} not computed; have K = {[t.k for t in self.top_k]}")

    def row(self) -> dict[str, float]:
        """``{"map": ..., "p@3": ..., "r@3": ..., "f1@3": ..., ...}`` for tables and JSON."""
        out = {"map": self.map}
        for t in self.top_k:
            out.update({f"p@{t.k}": t.precision, f"r@{t.k}": t.recall, f"f1@{t.k}": t.f1})
        return out


def _prepare(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores)
    t = np.asarray(targets.detach().cpu() if hasattr(targets, "detach") else targets)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"scores {s.shape} and targets {t.shape} must both be (N, C)")
    if not np.issubdtype(s.dtype, np.floating):
        raise ValueError(f"expected float scores, but got {s.dtype}")
    if not np.isfinite(s).all():
        raise ValueError("expected finite scores, but got NaN or inf")
    t = t.astype(np.int8, copy=False) if t.dtype != np.int8 else t
    bad = (t != POS) & (t != NEG) & (t != UNK)
    if bad.any():
        raise ValueError(f"expected target values in {{1, 0, -1}}, but got {np.unique(t[bad])[:5].tolist()}")
    return s, t


def zsl_average_precision(scores: Any, targets: Any, empty_classes: str = "zero") -> np.ndarray:
    """Per-class AP, the papers' way (see the module docstring).

    Args:
        scores: float (N, C), any monotone score (logits or probabilities), numpy or torch.
        targets: (N, C) in {1, 0, -1}; -1 is left out of the ranking.
        empty_classes: ``"zero"`` (papers: AP 0 for a class without positives) or ``"skip"`` (NaN).
    Returns:
        float64 (C,) AP as a fraction in [0, 1]; NaN only for skipped classes.
    Raises:
        ValueError: shape mismatch, non-float or non-finite scores, bad targets, unknown ``empty_classes``.
    """
    if empty_classes not in EMPTY_CLASSES:
        raise ValueError(f"expected empty_classes in {EMPTY_CLASSES}, but got {empty_classes!r}")
    s, t = _prepare(scores, targets)
    ap = average_precision_per_class(s, t, validate=False, backend="numpy")
    n_pos, n_neg = (t == POS).sum(0), (t == NEG).sum(0)
    ap[(n_pos > 0) & (n_neg == 0)] = 1.0  # every ranked entry positive: precision 1 everywhere
    ap[n_pos == 0] = 0.0 if empty_classes == "zero" else np.nan
    return ap


def top_k_scores(scores: Any, targets: Any, k: int) -> TopK:
    """Overall top-K precision, recall and F1 (percent; see the module docstring).

    Args:
        scores: float (N, C).
        targets: (N, C) in {1, 0, -1}; only 1 counts as positive.
        k: predictions per image, in [1, C].
    Returns:
        :class:`TopK`; recall and F1 are 0 when there is no positive at all.
    Raises:
        ValueError: bad shapes or values, ``k`` out of range.
    """
    s, t = _prepare(scores, targets)
    n, c = s.shape
    if not 1 <= k <= c:
        raise ValueError(f"expected k in [1, {c}], but got {k}")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]  # ties: lower class index first
    tp = int((np.take_along_axis(t, top, axis=1) == POS).sum())
    positives = int((t == POS).sum())
    p = tp / (n * k) if n else 0.0
    r = tp / positives if positives else 0.0
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return TopK(k, 100.0 * p, 100.0 * r, 100.0 * f1)


def zero_shot_scores(scores: Any, targets: Any, ks: Sequence[int] = DEFAULT_KS,
                     empty_classes: str = "zero") -> ZeroShotScores:
    """mAP and top-K scores of one evaluation: unseen columns for ZSL, seen + unseen for GZSL.

    Args:
        scores: float (N, C) (numpy or torch).
        targets: (N, C) in {1, 0, -1}, the same columns as ``scores``.
        ks: the K of the top-K scores.
        empty_classes: see :func:`zsl_average_precision`.
    Returns:
        :class:`ZeroShotScores` (percent).
    """
    s, t = _prepare(scores, targets)
    ap = zsl_average_precision(s, t, empty_classes)
    valid = ~np.isnan(ap)
    value = float(ap[valid].mean() * 100.0) if valid.any() else float("nan")
    return ZeroShotScores(value, ap, tuple(top_k_scores(s, t, k) for k in ks), s.shape[0],
                          int(((t == POS).sum(0) == 0).sum()))


def zsl_gzsl_scores(scores: Any, targets: Any, unseen: np.ndarray, ks: Sequence[int] = DEFAULT_KS,
                    empty_classes: str = "zero") -> dict[str, ZeroShotScores]:
    """ZSL (unseen columns only) and GZSL (all columns) from one (N, S + U) score matrix.

    Valid when each class's score does not depend on the other classes queried (ML-Decoder's group
    decoder without self-attention, BiAM, LESA): the ZSL ranking then uses the same unseen scores.

    Args:
        scores: float (N, C) over seen and unseen classes.
        targets: (N, C) in {1, 0, -1}.
        unseen: int indices (U,) or bool mask (C,) of the unseen columns.
    Returns:
        ``{"zsl": ..., "gzsl": ...}``.
    """
    s, t = _prepare(scores, targets)
    cols = np.flatnonzero(unseen) if np.asarray(unseen).dtype == bool else np.asarray(unseen, dtype=np.int64)
    return {"zsl": zero_shot_scores(s[:, cols], t[:, cols], ks, empty_classes),
            "gzsl": zero_shot_scores(s, t, ks, empty_classes)}

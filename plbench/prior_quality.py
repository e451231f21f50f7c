"""How good is an estimated class prior? Rank correlation, mean absolute error and top-k overlap.

Pure numpy: estimates (C,) in, numbers and tables out. The CSL README judges prior estimates this way on
COCO: the ten most frequent classes against the ten highest estimates of an Ignore-mode model (7 of 10
recovered) and of a Negative-mode model (1 of 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of float (C,) values, ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    start = 0
    while start < len(x):
        stop = start + 1
        while stop < len(x) and sorted_x[stop] == sorted_x[start]:
            stop += 1
        ranks[order[start:stop]] = (start + stop + 1) / 2.0  # mean of 1-based ranks start+1 .. stop
        start = stop
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two (C,) vectors (Pearson correlation of their average ranks);
    NaN when either is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def naive_prior(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Positives / annotated entries per class, from int (C,) counts; NaN for a class without any annotation."""
    pos = np.asarray(positives, dtype=np.float64)
    ann = pos + np.asarray(negatives, dtype=np.float64)
    return np.where(ann > 0, pos / np.maximum(ann, 1), np.nan)


@dataclass(frozen=True)
class PriorScore:
    """An estimate against a reference: Spearman rank correlation, mean absolute error (probability
    units) and how many of the reference's top-k classes the estimate's top-k recovers."""

    spearman: float
    mae: float
    top_k_recovered: int
    k: int


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest finite values, largest first (ties by class order)."""
    v = np.where(np.isfinite(values), values, -np.inf)
    return np.argsort(-v, kind="stable")[:k]


def score_prior(estimate: np.ndarray, reference: np.ndarray, k: int = 10) -> PriorScore:
    """Compare two (C,) priors over the classes where both are finite."""
    ok = np.isfinite(estimate) & np.isfinite(reference)
    if ok.sum() < 2:
        return PriorScore(float("nan"), float("nan"), 0, min(k, int(ok.sum())))
    e, r = estimate[ok], reference[ok]
    k = min(k, len(e))
    recovered = len(set(top_k(e, k).tolist()) & set(top_k(r, k).tolist()))
    return PriorScore(spearman(e, r), float(np.abs(e - r).mean()), recovered, k)


def comparison_markdown(class_names: Sequence[str], priors: dict[str, np.ndarray], reference: str,
                        k: int = 10) -> str:
    """Markdown: one row per estimate scored against ``priors[reference]``, then the top-k classes of each.

    Args:
        priors: name -> (C,) prior, e.g. {"true frequency": ..., "naive (partial labels)": ...,
            "ignore model": ...}; ``reference`` names the one the others are scored against.
    """
    ref = priors[reference]
    lines = [f"Scored against: {reference}", "",
             f"| estimate | Spearman | MAE | top-{k} recovered | mean |", "|---|---:|---:|---:|---:|"]
    for name, values in priors.items():
        if name == reference:
            continue
        s = score_prior(values, ref, k)
        lines.append(f"| {name} | {s.spearman:.3f} | {s.mae:.4f} | {s.top_k_recovered}/{s.k} | "
                     f"{np.nanmean(values):.4f} |")
    lines += ["", f"Top-{k} classes:", "", "| rank | " + " | ".join(priors) + " |",
              "|---:|" + "---|" * len(priors)]
    tops = {name: top_k(v, k) for name, v in priors.items()}
    for i in range(min(k, len(class_names))):
        cells = [f"{class_names[tops[n][i]]} ({priors[n][tops[n][i]]:.3f})" if i < len(tops[n]) else ""
                 for n in priors]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

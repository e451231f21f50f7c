"""Evaluation during training: a model's scores over a validation loader, and the metrics of a score matrix.

mAP is computed on the validation split with its own labels (never simulated): unannotated entries are
skipped per class, and classes without a positive or a negative are left out and counted.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from plbench.engine.forward import LoaderBatch, score_batches
from plbench.metrics import f1_scores, mean_average_precision
from plbench.progress import progress as progress_bar


def _loader_batches(loader: Iterable) -> Iterator[LoaderBatch]:
    """``(inputs, labels, index)`` batches of an image or feature loader as :class:`LoaderBatch`; a None
    batch (every image undecodable, non-strict loading) has nothing to score and is dropped."""
    for batch in loader:
        if batch is not None:
            inputs, labels, index = batch
            yield LoaderBatch(inputs, index.numpy(), labels.numpy())


def predict(model: nn.Module, loader: DataLoader, device: torch.device, *, mean: Sequence[float],
            std: Sequence[float], amp: bool = False, progress: bool = False,
            desc: str = "eval") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigmoid scores over a loader of ``(inputs, labels, index)`` batches (the one scoring core,
    :func:`plbench.engine.forward.score_batches`).

    Args:
        model: on ``device``; its train/eval mode is restored afterwards.
        mean, std: the backbone's input normalisation (applied to uint8 image batches on ``device``).
        amp: mixed precision by :func:`plbench.engine.runtime.amp_dtype`.
    Returns:
        scores float32 (N', C), labels int8 (N', C) and dataset indices int64 (N',); N' < N when
        undecodable images were skipped (non-strict loading).
    """
    n_cls = loader.dataset.labels.num_classes  # type: ignore[attr-defined]
    batches = _loader_batches(progress_bar(loader, desc=desc, enabled=progress, unit="batch"))
    scored = list(score_batches(model, batches, device, mean=mean, std=std, amp=amp, num_classes=n_cls))
    if not scored:
        return np.zeros((0, n_cls), np.float32), np.zeros((0, n_cls), np.int8), np.zeros(0, np.int64)
    return (np.concatenate([b.scores for b in scored]), np.concatenate([b.labels for b in scored]),
            np.concatenate([b.index for b in scored]).astype(np.int64))


def evaluate_scores(scores: np.ndarray, targets: np.ndarray, class_groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """Metrics of scores float (N, C) in [0, 1] against targets int8 (N, C) in {1, 0, -1}.

    Returns:
        ``map`` (percent), ``classes_evaluated``, ``classes_skipped``, ``ap_per_class`` (percent, None
        where skipped), the :class:`plbench.metrics.F1Scores` fields at threshold 0.5 (percent) and
        ``map_<group>`` (percent) for each class group (LVIS rare/common/frequent).
    """
    result = mean_average_precision(scores, targets)
    ap = result.ap
    out: dict[str, Any] = {
        "map": float(result),
        "classes_evaluated": result.num_evaluated,
        "classes_skipped": result.num_skipped,
        "ap_per_class": [None if np.isnan(a) else float(a * 100) for a in ap],
    }
    out.update({k: float(v) for k, v in f1_scores(scores, targets, threshold=0.5)._asdict().items()})
    for group, idx in class_groups.items():
        g = ap[np.asarray(idx, dtype=np.int64)]
        g = g[~np.isnan(g)]
        out[f"map_{group}"] = float(g.mean() * 100) if g.size else float("nan")
    return out

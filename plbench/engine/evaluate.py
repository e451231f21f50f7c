"""Evaluation: a model's scores over a loader, and the metrics of a score matrix.

mAP is computed on the validation split with its own labels (never simulated): unannotated entries are
skipped per class, and classes without a positive or a negative are left out and counted.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from plbench.engine.data import normalize
from plbench.metrics import f1_scores, mean_average_precision
from plbench.progress import progress as progress_bar


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device, *, mean: Sequence[float],
            std: Sequence[float], amp: bool = False, progress: bool = False,
            desc: str = "eval") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigmoid scores over a loader of ``(inputs, labels, index)`` batches.

    Args:
        mean, std: the backbone's input normalisation (applied to uint8 image batches on ``device``).
    Returns:
        scores float32 (N', C), labels int8 (N', C) and dataset indices int64 (N',); N' < N when
        undecodable images were skipped (non-strict loading).
    """
    was_training = model.training
    model.eval()
    scores, targets, indices = [], [], []
    for batch in progress_bar(loader, desc=desc, enabled=progress, unit="batch"):
        if batch is None:  # every image of the batch was undecodable (non-strict loading)
            continue
        inputs, labels, index = batch
        x = normalize(inputs.to(device, non_blocking=True), mean, std)
        if device.type == "cuda" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast(device.type, dtype=dtype, enabled=amp and device.type == "cuda"):
            logits = model(x)
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
        targets.append(labels.numpy())
        indices.append(index.numpy())
    model.train(was_training)
    n_cls = loader.dataset.labels.num_classes  # type: ignore[attr-defined]
    if not scores:
        return np.zeros((0, n_cls), np.float32), np.zeros((0, n_cls), np.int8), np.zeros(0, np.int64)
    return np.concatenate(scores), np.concatenate(targets), np.concatenate(indices).astype(np.int64)


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

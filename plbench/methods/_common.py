"""Helpers shared by the method modules: input checks for indices and per-image state, the logarithm.

Targets follow plbench's codes (:mod:`plbench.labels`): ``1`` positive, ``0`` annotated negative,
``-1`` unannotated. The single-positive papers' code writes unknown as ``0`` and (Cole et al.) an
observed negative as ``-1``; every docstring here uses plbench's codes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from plbench.labels import NEG, POS, UNK
from plbench.losses.functional import SPML_EPS, check_logits_targets

__all__ = ["POS", "NEG", "UNK", "SPML_EPS", "neg_log", "check_logits_targets", "check_indices", "as_float"]


def neg_log(x: Tensor, eps: float = SPML_EPS) -> Tensor:
    """``-log(x + eps)``: the offset logarithm of Cole et al. (eps 1e-5) and of the papers built on it."""
    return -torch.log(x + eps)


def as_float(logits: Tensor) -> Tensor:
    """Logits in float32, or float64 when given float64 (the math never runs in half precision)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def check_indices(indices: Tensor, batch_size: int | None, num_images: int) -> Tensor:
    """Validate dataset indices of a batch: integer (B,), each in [0, num_images) (B unchecked if None).

    Returns:
        int64 (B,) on the same device.
    Raises:
        ValueError: wrong shape, dtype or an index out of range.
    """
    if not isinstance(indices, Tensor):
        indices = torch.as_tensor(indices)
    if indices.is_floating_point() or indices.dtype == torch.bool:
        raise ValueError(f"expected integer dataset indices, but got {indices.dtype}")
    if indices.ndim != 1 or (batch_size is not None and indices.shape[0] != batch_size):
        raise ValueError(f"expected dataset indices of shape ({batch_size or 'B'},), but got {tuple(indices.shape)}")
    if indices.numel():
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= num_images:
            raise ValueError(
                f"expected dataset indices in [0, {num_images}), but got values from {lo} to {hi}; "
                f"the method's per-image state was built for a training set of {num_images} images"
            )
    return indices.long()


def check_targets_matrix(targets: Tensor) -> Tensor:
    """Validate a training set's (N, C) target matrix in {1, 0, -1}; returns it as int8 on CPU."""
    targets = torch.as_tensor(targets)
    if targets.ndim != 2:
        raise ValueError(f"expected an (N, C) target matrix, but got shape {tuple(targets.shape)}")
    if targets.numel():
        bad = (targets != POS) & (targets != NEG) & (targets != UNK)
        if bool(bad.any()):
            raise ValueError(f"expected target values in {{1, 0, -1}}, but got {torch.unique(targets[bad])[:5].tolist()}")
    return targets.to(torch.int8)

"""ROLE: regularised online label estimation (Cole et al., "Multi-Label Learning from Single Positive
Labels", CVPR 2021; code: github.com/elijahcole/single-positive-multi-label, ``losses.py::loss_role``,
``models.py::LabelEstimator``, ``train.py``).

A learnable matrix of label-estimate logits, one row per training image, is trained jointly with the
classifier. With p = sigmoid(classifier logits) and q = sigmoid(estimate logits) of the batch's images
(both (B, C)), nl(x) = -log(x + 1e-5), K the expected number of positives per image and
reg(x) = (mean_b sum_c x_bc - K)^2 / C^2, the loss is::

    1/(B C) sum_bc 0.5 [y_bc = 1] (nl(p) + nl(q))
                 + 0.5 (sg(q) nl(p) + (1 - sg(q)) nl(1 - p) + sg(p) nl(q) + (1 - sg(p)) nl(1 - q))
    + 0.5 (reg(p) + reg(q))

where sg() stops the gradient: each side is fitted to the other's current values, and the EPR
regulariser acts on both. The estimates are initialised from the observed labels: logit(0.995) for
positives, logit(0.005) for annotated negatives, uniform in (-logit(0.6), logit(0.6)) elsewhere.

Where this follows the code rather than the paper:
    * the estimator's learning rate is ``lr_mult`` (10) times the classifier's (``train.py``), and the
      authors optimise the whole N x C matrix with dense Adam, so rows not in the batch still move by
      their Adam momentum; use a dense optimiser (not SparseAdam) to reproduce that.
    * the linear-init protocol carries the estimates of the linear phase into the fine-tuning phase
      (``estimated_labels`` in ``train.py``): :meth:`LabelEstimator.from_estimates`.
Extension (no annotated negatives occur in the authors' single-positive data, where their loss asserts
there are none): an annotated negative (``0``) adds ``0.5 (nl(1 - p) + nl(1 - q))``, the mirror of the
positive term.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from plbench.methods._common import NEG, POS, as_float, check_indices, check_logits_targets, \
    check_targets_matrix, neg_log

__all__ = ["init_estimate_logits", "role_loss", "expected_positive_penalty", "LabelEstimator", "ROLE",
           "ROLE_LR_MULT", "ROLE_EXPECTED_NUM_POS"]

#: Learning-rate multiplier of the label estimator (``P['lr_mult']`` in the authors' ``train.py``).
ROLE_LR_MULT = 10.0
#: Expected positives per image used by the authors (``train.py`` lookup), per dataset.
ROLE_EXPECTED_NUM_POS = {"voc": 1.5, "coco": 2.9, "nuswide": 1.9, "cub": 31.4}

_INIT_POS, _INIT_NEG, _INIT_UNK_HALF_WIDTH = 0.995, 0.005, 0.6


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def init_estimate_logits(targets: Tensor, seed: int) -> Tensor:
    """Initial label-estimate logits from a training set's observed labels.

    Args:
        targets: (N, C) in {1, 0, -1}.
        seed: seeds a CPU ``torch.Generator`` for the unannotated entries.
    Returns:
        float32 (N, C): logit(0.995) on positives, logit(0.005) on annotated negatives, and
        ``logit(0.6) * (2 u - 1)`` with u ~ U[0, 1) elsewhere (one draw per entry in row-major order,
        all N x C drawn so the bits do not depend on the labels). Same seed, same bits.
    """
    targets = check_targets_matrix(targets)
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.rand(targets.shape, generator=gen, dtype=torch.float32)
    out = _logit(_INIT_UNK_HALF_WIDTH) * (2.0 * u - 1.0)
    out[targets == POS] = _logit(_INIT_POS)
    out[targets == NEG] = _logit(_INIT_NEG)
    return out


def expected_positive_penalty(probs: Tensor, expected_num_pos: float) -> Tensor:
    """EPR's penalty ``(mean_b sum_c probs_bc - expected_num_pos)^2 / C^2``; probs (B, C) in [0, 1]."""
    return (probs.sum(dim=1).mean() - float(expected_num_pos)) ** 2 / probs.shape[1] ** 2


def role_loss(
    logits: Tensor, estimates: Tensor, targets: Tensor, *, expected_num_pos: float, validate: bool = True
) -> Tensor:
    """The ROLE loss of a batch (see the module docstring for the formula).

    Args:
        logits: float (B, C), the classifier's.
        estimates: float (B, C) in [0, 1], the label estimates of the batch's images (sigmoid of the
            estimator's logits), with gradient to the estimator.
        targets: (B, C) in {1, 0, -1}.
        expected_num_pos: expected positives per image (:data:`ROLE_EXPECTED_NUM_POS`).
    Returns:
        0-dim float tensor; gradients reach both ``logits`` and ``estimates``.
    """
    if validate:
        check_logits_targets(logits, targets)
        if estimates.shape != logits.shape:
            raise ValueError(f"expected estimates of shape {tuple(logits.shape)}, but got {tuple(estimates.shape)}")
    p = torch.sigmoid(as_float(logits))
    q = estimates.to(p.dtype)
    positive, negative = targets == POS, targets == NEG
    zero = torch.zeros((), dtype=p.dtype, device=p.device)
    observed = torch.where(positive, neg_log(p) + neg_log(q),
                           torch.where(negative, neg_log(1.0 - p) + neg_log(1.0 - q), zero))
    q_sg, p_sg = q.detach(), p.detach()
    cross = (q_sg * neg_log(p) + (1.0 - q_sg) * neg_log(1.0 - p)
             + p_sg * neg_log(q) + (1.0 - p_sg) * neg_log(1.0 - q))
    reg = 0.5 * (expected_positive_penalty(p, expected_num_pos) + expected_positive_penalty(q, expected_num_pos))
    return 0.5 * (observed + cross).mean() + reg


class LabelEstimator(nn.Module):
    """The N x C label-estimate logits of ROLE (a parameter, trained with ``lr_mult`` times the lr).

    Args:
        logits: float (N, C) initial logits (:func:`init_estimate_logits`).
    """

    lr_mult: float = ROLE_LR_MULT

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        if logits.ndim != 2:
            raise ValueError(f"expected (N, C) estimate logits, but got shape {tuple(logits.shape)}")
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32).clone())

    @classmethod
    def from_targets(cls, targets: Tensor, seed: int) -> "LabelEstimator":
        """Initialised from observed labels as the authors' ``LabelEstimator`` does."""
        return cls(init_estimate_logits(targets, seed))

    @classmethod
    def from_estimates(cls, estimates: Tensor) -> "LabelEstimator":
        """From earlier estimates in [0, 1] (N, C): logits ``logit(clip(e, 1e-5, 1 - 1e-5))``."""
        e = torch.as_tensor(estimates, dtype=torch.float64).clamp(1e-5, 1.0 - 1e-5)
        return cls(torch.log(e / (1.0 - e)).float())

    @property
    def num_images(self) -> int:
        return self.logits.shape[0]

    def forward(self, indices: Tensor) -> Tensor:
        """float (B, C): sigmoid of the rows ``indices`` (int (B,) dataset indices)."""
        indices = check_indices(indices, None, self.num_images)
        return torch.sigmoid(self.logits[indices])

    def estimates(self) -> Tensor:
        """float (N, C) current estimates, detached."""
        return torch.sigmoid(self.logits.detach())


class ROLE(nn.Module):
    """ROLE as a stateful module: owns the :class:`LabelEstimator` (per-image parameter).

    Needs per step the batch's dataset indices; its parameters (``self.estimator``) join the optimiser
    with learning rate ``lr * ROLE.lr_mult``. ``state_dict`` holds ``estimator.logits`` (N, C).

    Example:
        >>> targets = torch.tensor([[1, -1], [-1, 1]])
        >>> role = ROLE(targets, expected_num_pos=1.0, seed=0)
        >>> loss = role(torch.zeros(2, 2), targets, torch.tensor([1, 0]))
        >>> loss.ndim
        0
    """

    lr_mult: float = ROLE_LR_MULT

    def __init__(self, targets: Tensor, *, expected_num_pos: float, seed: int = 0,
                 estimator: LabelEstimator | None = None) -> None:
        super().__init__()
        if not math.isfinite(float(expected_num_pos)) or expected_num_pos < 0:
            raise ValueError(f"expected expected_num_pos to be a finite number >= 0, but got {expected_num_pos!r}")
        self.expected_num_pos = float(expected_num_pos)
        self.estimator = estimator if estimator is not None else LabelEstimator.from_targets(targets, seed)

    def forward(self, logits: Tensor, targets: Tensor, indices: Tensor) -> Tensor:
        indices = check_indices(indices, logits.shape[0], self.estimator.num_images)
        return role_loss(logits, self.estimator(indices), targets, expected_num_pos=self.expected_num_pos)

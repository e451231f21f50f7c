"""LL-Ct and LL-Cp, the correction variants of "Large Loss Matters" (Kim et al., "Large Loss Matters in
Weakly Supervised Multi-Label Classification", CVPR 2022; code: github.com/snucml/LargeLossMatters,
``losses.py::compute_batch_loss``, ``train.py``, ``config.py``; fixed in
github.com/youngwk/BridgeGapExplanationPAMC, same files). LL-R, the rejection variant, is
:func:`plbench.losses.large_loss_rejection_loss`.

Unannotated labels are assumed negative (BCE with logits, mean over the B x C entries). Among the
unannotated entries of a batch, the k with the largest loss are *corrected*: their target becomes 1.

* LL-Ct (temporary): k = ceil(B C r) with r = epoch * delta_rel (0-based epoch: nothing in the first
  epoch, as the authors' ``clean_rate`` starts at 1 and drops by ``delta_rel`` after each epoch); the
  correction lasts for that step only.
* LL-Cp (permanent): k = ceil(B C delta_rel) from the second epoch on, and each corrected entry is
  written back into the training labels as a positive for the rest of training (per-image state).

``delta_rel`` is a fraction here; the authors' command-line ``--delta_rel`` is in percent (their
``config.py`` divides by 100): ``--delta_rel 0.2`` is ``delta_rel=0.002``. :data:`LL_DELTA_REL` holds
the per-scheme values of the BoostLU authors' ``config.py`` (0.5, 0.2 and 0.1 percent).

Differences from the authors' code:
    * snucml/LargeLossMatters tests ``P['mod_scheme'] is 'LL-Cp'``: a string parsed from the command
      line is never the same object as the literal, so its LL-Cp takes LL-Ct's k and never writes
      back; its published LL-Cp numbers come from that code path. BridgeGapExplanationPAMC compares
      with ``==``; this module implements the intended LL-Cp, as the latter does.
    * the authors select every unannotated entry whose loss is >= the k-th largest (ties can add more
      than k; when the k-th largest is 0 every entry, positives included, is selected) and, for LL-Cp,
      LargeLossMatters writes back only the entries strictly above it. Here exactly k entries are
      selected (ties: lowest row-major index) and the same k are written back.
    * the authors' rate is ``1 - clean_rate`` after repeated float subtraction; here ``epoch *
      delta_rel``, which can differ by one ulp and so, rarely, k by one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plbench.losses.functional import smallest_k_mask
from plbench.methods._common import POS, UNK, as_float, check_indices, check_logits_targets

__all__ = ["LL_DELTA_REL", "large_loss_rate", "large_loss_correction_loss", "LargeLossCorrection",
           "LargeLossPermanentCorrection"]

#: ``delta_rel`` per scheme as a fraction (BridgeGapExplanationPAMC ``config.py``, percent / 100).
LL_DELTA_REL = {"ll_r": 0.005, "ll_ct": 0.002, "ll_cp": 0.001}


def large_loss_rate(epoch: int, delta_rel: float) -> float:
    """LL-R / LL-Ct rate of 0-based epoch ``epoch``: ``min(epoch * delta_rel, 1)``."""
    if not 0.0 <= delta_rel <= 1.0:
        raise ValueError(f"expected delta_rel in [0, 1] (a fraction, not percent), but got {delta_rel}")
    return min(max(int(epoch), 0) * float(delta_rel), 1.0)


def large_loss_correction_loss(
    logits: Tensor, targets: Tensor, *, rate: float, validate: bool = True
) -> tuple[Tensor, Tensor]:
    """Assume-negative BCE whose ``ceil(B C rate)`` largest unannotated losses are corrected to positive.

    Args:
        logits: float (B, C).
        targets: (B, C) in {1, 0, -1}.
        rate: fraction in [0, 1] of the B x C entries to correct.
    Returns:
        (loss, corrected): 0-dim mean over the B x C entries, and bool (B, C) marking the corrected
        entries (ties: lowest row-major index first).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"expected rate in [0, 1], but got {rate}")
    if validate:
        check_logits_targets(logits, targets)
    x = as_float(logits)
    y = (targets == POS).to(x.dtype)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    k = math.ceil(loss.numel() * rate)
    if k <= 0:
        return loss.mean(), torch.zeros_like(y, dtype=torch.bool)
    corrected = smallest_k_mask(-loss.detach(), targets == UNK, k)
    fixed = F.binary_cross_entropy_with_logits(x, torch.ones_like(y), reduction="none")
    return torch.where(corrected, fixed, loss).mean(), corrected


class LargeLossCorrection(nn.Module):
    """LL-Ct: ``forward(logits, targets)`` with the rate of the epoch set by :meth:`set_epoch`."""

    def __init__(self, delta_rel: float = LL_DELTA_REL["ll_ct"], epoch: int = 0) -> None:
        super().__init__()
        large_loss_rate(0, delta_rel)  # validates
        self.delta_rel, self.epoch = float(delta_rel), int(epoch)

    def set_epoch(self, epoch: int) -> None:
        """0-based index of the epoch about to run."""
        self.epoch = int(epoch)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return large_loss_correction_loss(logits, targets, rate=large_loss_rate(self.epoch, self.delta_rel))[0]


class LargeLossPermanentCorrection(nn.Module):
    """LL-Cp: corrections are written back into per-image state.

    State (buffer, in ``state_dict``): ``corrected`` bool (N, C), labels turned positive so far. Hooks:
    :meth:`set_epoch` at epoch start; per step ``forward(logits, targets, indices)`` (indices: int (B,)
    dataset indices), which updates the state after computing the loss. Under data parallelism each
    process writes only its own batch's rows; gather (logical or) before saving.
    """

    def __init__(self, num_images: int, num_classes: int, delta_rel: float = LL_DELTA_REL["ll_cp"],
                 epoch: int = 0) -> None:
        super().__init__()
        large_loss_rate(0, delta_rel)
        self.delta_rel, self.epoch = float(delta_rel), int(epoch)
        self.register_buffer("corrected", torch.zeros(int(num_images), int(num_classes), dtype=torch.bool))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def effective_targets(self, targets: Tensor, indices: Tensor) -> Tensor:
        """targets (B, C) with the entries corrected in earlier steps set to 1."""
        indices = check_indices(indices, targets.shape[0], self.corrected.shape[0]).to(self.corrected.device)
        return torch.where(self.corrected[indices].to(targets.device), torch.ones_like(targets), targets)

    def forward(self, logits: Tensor, targets: Tensor, indices: Tensor) -> Tensor:
        targets = self.effective_targets(targets, indices)
        rate = self.delta_rel if self.epoch >= 1 else 0.0
        loss, corrected = large_loss_correction_loss(logits, targets, rate=rate)
        with torch.no_grad():
            rows = indices.long().to(self.corrected.device)
            self.corrected[rows] |= corrected.to(self.corrected.device)
        return loss

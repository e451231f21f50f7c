"""Hill and SPLC (Zhang et al., "Simple and Robust Loss Design for Multi-Label Learning with Missing
Labels", arXiv:2112.07368; code: github.com/xinyu1205/robust-loss-mlml, ``src/loss_functions/
losses.py::Hill``, ``::SPLC``, ``train.py``).

Both treat every non-positive label as a (possibly false) negative and sum over the batch, with
p = sigmoid(logit):

* Hill: positives ``(1 - p_m)^gamma * -log(p_m)`` with p_m = sigmoid(logit - margin) (focal margin);
  negatives ``(lamb - p) p^2``, a hill-shaped cost that gives little gradient to confident
  "negatives" (likely missing positives).
* SPLC (self-paced loss correction): focal-margin BCE, positives shifted by ``margin``; from epoch
  ``change_epoch`` on (0-based, as the authors' ``for epoch in range(Epochs)``), every unannotated
  entry with sigmoid(logit) > ``tau`` is treated as a positive for that step (its logit unshifted).

As in the authors' code the focal factors carry gradient (nothing is detached). Differences: theirs
calls ``.cuda()`` (this runs on any device), and their targets are 0/1 with missing labels as 0; here
only unannotated (``-1``) entries can be corrected by SPLC, annotated negatives (``0``) stay negative
(identical on their data, where no negative is annotated). Defaults are the authors' (lamb 1.5,
margin 1, gamma 2; tau 0.6, change_epoch 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plbench.methods._common import POS, UNK, as_float, check_logits_targets

__all__ = ["hill_loss", "splc_loss", "Hill", "SPLC"]


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"expected reduction in {{sum, mean, none}}, but got {reduction!r}")


def hill_loss(
    logits: Tensor, targets: Tensor, *, lamb: float = 1.5, margin: float = 1.0, gamma: float = 2.0,
    reduction: str = "sum", validate: bool = True,
) -> Tensor:
    """Hill loss; logits float (B, C), targets (B, C) in {1, 0, -1}; 0-dim unless reduction='none'."""
    if validate:
        check_logits_targets(logits, targets)
    x = as_float(logits)
    positive = targets == POS
    p_m = torch.sigmoid(x - margin)
    p = torch.sigmoid(x)
    loss_pos = -torch.log(p_m) * (1.0 - p_m) ** gamma
    loss_neg = (lamb - p) * p**2
    return _reduce(torch.where(positive, loss_pos, loss_neg), reduction)


def splc_loss(
    logits: Tensor, targets: Tensor, *, epoch: int, tau: float = 0.6, change_epoch: int = 1,
    margin: float = 1.0, gamma: float = 2.0, reduction: str = "sum", validate: bool = True,
) -> Tensor:
    """SPLC with focal margin; ``epoch`` 0-based; 0-dim unless reduction='none'."""
    if validate:
        check_logits_targets(logits, targets)
    x = as_float(logits)
    positive = targets == POS
    x = torch.where(positive, x - margin, x)
    if epoch >= change_epoch:
        positive = positive | ((targets == UNK) & (torch.sigmoid(x) > tau))
    p = torch.sigmoid(x)
    focal = torch.where(positive, 1.0 - p, p) ** gamma
    loss = torch.where(positive, -F.logsigmoid(x), -F.logsigmoid(-x)) * focal
    return _reduce(loss, reduction)


class Hill(nn.Module):
    """:func:`hill_loss` with its hyper-parameters; ``forward(logits, targets)``, summed."""

    reduction = "sum"

    def __init__(self, lamb: float = 1.5, margin: float = 1.0, gamma: float = 2.0) -> None:
        super().__init__()
        self.lamb, self.margin, self.gamma = float(lamb), float(margin), float(gamma)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return hill_loss(logits, targets, lamb=self.lamb, margin=self.margin, gamma=self.gamma)


class SPLC(nn.Module):
    """:func:`splc_loss`; needs the epoch (:meth:`set_epoch`, 0-based) before each epoch."""

    reduction = "sum"

    def __init__(self, tau: float = 0.6, change_epoch: int = 1, margin: float = 1.0, gamma: float = 2.0,
                 epoch: int = 0) -> None:
        super().__init__()
        self.tau, self.change_epoch, self.margin, self.gamma = float(tau), int(change_epoch), float(margin), float(gamma)
        self.epoch = int(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return splc_loss(logits, targets, epoch=self.epoch, tau=self.tau, change_epoch=self.change_epoch,
                         margin=self.margin, gamma=self.gamma)

"""EM and EM + APL (Zhou et al., "Acknowledging the Unknown for Multi-label Learning with Single
Positive Labels", ECCV 2022; code: github.com/Correr-Zhou/SPML-AckTheUnknown, ``losses.py::loss_EM``,
``losses.py::loss_EM_APL``, ``main.py::aysmmetric_pseudo_labeling`` and the per-dataset settings in
``main.py``).

EM (entropy maximisation): with p = sigmoid(logit) and nl(x) = -log(x + 1e-5), an entry costs
``nl(p)`` if positive and ``-alpha * (p nl(p) + (1 - p) nl(1 - p))`` (minus alpha times the binary
entropy) if unannotated; the mean runs over the B x C entries.

APL (asymmetric pseudo-labelling): after the training pass of each epoch from ``warmup_epoch`` on
(1-based, as in ``main.py``: after epochs warmup_epoch, warmup_epoch + 1, ...), predictions on every
training image are taken and, per class c, the ``int(neg_proportion * U_c / (num_epochs -
warmup_epoch))`` still-unknown entries with the lowest probability become soft negative pseudo-labels
whose target is that probability s (U_c: unannotated entries of class c before training). A
pseudo-labelled entry then costs ``beta * (s nl(p) + (1 - s) nl(1 - p))`` instead of the entropy term,
for the rest of training. Only negatives are pseudo-labelled (the asymmetry of the paper).

Where this follows the code:
    * the hyper-parameters (:data:`APL_SETTINGS`) are those of ``main.py`` per dataset.
    * the soft target is the probability at pseudo-labelling time (``label_matrix_obs = -pred``).
    * the authors' pass runs the training loader (training transforms, shuffled) with the model in
      eval mode; the caller chooses the transforms here, and ties in the probability are broken by
      dataset index (the authors' ``np.argsort`` is not stable and runs over a shuffled order).
    * the authors keep the label state in one float matrix where a pseudo-label ``s`` is stored as
      ``-s``, so an entry whose probability is exactly 0.0 would stay "unknown"; here the state is a
      mask plus the values, so such an entry is pseudo-labelled.
Extension: an annotated negative (``0``, absent from the authors' data) costs ``nl(1 - p)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plbench.methods._common import NEG, POS, UNK, as_float, check_indices, check_logits_targets, \
    check_targets_matrix, neg_log

__all__ = ["APLSettings", "APL_SETTINGS", "entropy_maximization_loss", "apl_quota", "apl_due",
           "asymmetric_pseudo_labels", "EntropyMaximization", "EMAPL"]


@dataclass(frozen=True)
class APLSettings:
    """One dataset's settings in the authors' ``main.py``."""

    batch_size: int
    lr: float
    alpha: float  # weight of the entropy term on unknown labels
    beta: float  # weight of the soft pseudo-negative term
    neg_proportion: float  # share of each class's unknown labels pseudo-labelled by the end
    warmup_epoch: int  # 1-based epoch after which pseudo-labelling starts
    num_epochs: int = 10


#: ``main.py`` settings by plbench dataset name (``pascal`` in the authors' code is ``voc``).
APL_SETTINGS: dict[str, APLSettings] = {
    "voc": APLSettings(batch_size=8, lr=1e-5, alpha=0.2, beta=0.02, neg_proportion=0.9, warmup_epoch=5),
    "coco": APLSettings(batch_size=16, lr=1e-5, alpha=0.1, beta=0.9, neg_proportion=0.9, warmup_epoch=5),
    "nuswide": APLSettings(batch_size=16, lr=1e-5, alpha=0.1, beta=0.2, neg_proportion=0.9, warmup_epoch=4),
    "cub": APLSettings(batch_size=8, lr=1e-4, alpha=0.01, beta=0.4, neg_proportion=0.9, warmup_epoch=3),
}


def entropy_maximization_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: float,
    pseudo_mask: Tensor | None = None,
    pseudo_targets: Tensor | None = None,
    beta: float = 0.0,
    validate: bool = True,
) -> Tensor:
    """EM, and with pseudo-labels EM + APL's loss, averaged over the B x C entries.

    Args:
        logits: float (B, C).
        targets: (B, C) in {1, 0, -1}.
        alpha: weight of the (negated) entropy on unknown entries.
        pseudo_mask: bool (B, C), unknown entries that carry a soft pseudo-label, or None.
        pseudo_targets: float (B, C) soft targets in [0, 1], read where ``pseudo_mask``.
        beta: weight of the pseudo-label term.
    Returns:
        0-dim float tensor.
    """
    if validate:
        check_logits_targets(logits, targets)
    p = torch.sigmoid(as_float(logits))
    nl_p, nl_n = neg_log(p), neg_log(1.0 - p)
    unknown = targets == UNK
    loss = torch.where(targets == POS, nl_p, torch.zeros_like(p))
    loss = torch.where(targets == NEG, nl_n, loss)
    loss = torch.where(unknown, -float(alpha) * (p * nl_p + (1.0 - p) * nl_n), loss)
    if pseudo_mask is not None:
        pseudo = pseudo_mask & unknown
        s = pseudo_targets.to(p.dtype)
        loss = torch.where(pseudo, float(beta) * (s * nl_p + (1.0 - s) * nl_n), loss)
    return loss.mean()


def apl_quota(num_unknown: Tensor, *, neg_proportion: float, num_epochs: int, warmup_epoch: int) -> Tensor:
    """Pseudo-labels per class per round: ``int(neg_proportion * U_c / (num_epochs - warmup_epoch))``.

    Args:
        num_unknown: int (C,), unannotated entries per class in the training set before training.
    Returns:
        int64 (C,). Raises ValueError when ``num_epochs <= warmup_epoch``.
    """
    if num_epochs <= warmup_epoch:
        raise ValueError(f"expected num_epochs > warmup_epoch, but got {num_epochs} and {warmup_epoch}")
    # the authors' order of operations in float64, then truncation (Python int())
    return torch.floor(float(neg_proportion) * num_unknown.to(torch.float64) / (num_epochs - warmup_epoch)).long()


def apl_due(epoch: int, warmup_epoch: int) -> bool:
    """Whether pseudo-labels are written after the training pass of 0-based epoch ``epoch``."""
    return epoch + 1 >= warmup_epoch


def asymmetric_pseudo_labels(
    probs: Tensor, targets: Tensor, pseudo_mask: Tensor, pseudo_targets: Tensor, quota: Tensor
) -> tuple[Tensor, Tensor]:
    """One APL round over the whole training set (pure: returns new state, inputs untouched).

    Args:
        probs: float (N, C), predicted probabilities of every training image (row = dataset index).
        targets: (N, C) observed labels in {1, 0, -1}.
        pseudo_mask: bool (N, C), entries pseudo-labelled in earlier rounds.
        pseudo_targets: float (N, C), their soft targets.
        quota: int (C,), new pseudo-labels per class (:func:`apl_quota`).
    Returns:
        (mask, values): per class, the ``quota_c`` unknown, not yet pseudo-labelled entries with the
        lowest probability (ties: lowest dataset index) are added, with value = their probability.
    """
    if probs.shape != targets.shape or probs.shape != pseudo_mask.shape or probs.shape != pseudo_targets.shape:
        raise ValueError(
            f"expected probs, targets, pseudo_mask and pseudo_targets of one (N, C) shape, but got "
            f"{tuple(probs.shape)}, {tuple(targets.shape)}, {tuple(pseudo_mask.shape)}, {tuple(pseudo_targets.shape)}"
        )
    if quota.shape != (probs.shape[1],):
        raise ValueError(f"expected a quota of shape ({probs.shape[1]},), but got {tuple(quota.shape)}")
    probs = probs.detach()
    candidates = (targets == UNK) & ~pseudo_mask
    ranked = torch.where(candidates, probs.to(torch.float64), torch.full_like(probs, float("inf"), dtype=torch.float64))
    # stable sort down each column: equal probabilities keep dataset order
    order = torch.sort(ranked, dim=0, stable=True).indices  # (N, C)
    rank = torch.empty_like(order)
    rank.scatter_(0, order, torch.arange(probs.shape[0], device=probs.device).unsqueeze(1).expand_as(order))
    chosen = candidates & (rank < quota.to(rank.device).unsqueeze(0))
    mask = pseudo_mask | chosen
    values = torch.where(chosen, probs.to(pseudo_targets.dtype), pseudo_targets)
    return mask, values


class EntropyMaximization(nn.Module):
    """EM alone: ``forward(logits, targets)``; no state, no hooks."""

    def __init__(self, alpha: float = APL_SETTINGS["coco"].alpha) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return entropy_maximization_loss(logits, targets, alpha=self.alpha)


class EMAPL(nn.Module):
    """EM + APL with its per-image pseudo-label state.

    State (buffers, in ``state_dict``): ``pseudo_mask`` bool (N, C), ``pseudo_targets`` float32 (N, C),
    ``quota`` int64 (C,). Hooks: per step ``forward(logits, targets, indices)``; after the training pass
    of each epoch, if :meth:`due`, a pass over the whole training set giving probabilities (N, C) in
    dataset order to :meth:`pseudo_label`.

    Args:
        targets: (N, C) observed training labels in {1, 0, -1}.
        settings: an :class:`APLSettings` (``APL_SETTINGS[dataset]``).
    """

    def __init__(self, targets: Tensor, settings: APLSettings = APL_SETTINGS["coco"]) -> None:
        super().__init__()
        targets = check_targets_matrix(targets)
        self.settings = settings
        n, c = targets.shape
        self.register_buffer("pseudo_mask", torch.zeros(n, c, dtype=torch.bool))
        self.register_buffer("pseudo_targets", torch.zeros(n, c, dtype=torch.float32))
        self.register_buffer("quota", apl_quota(
            (targets == UNK).sum(dim=0), neg_proportion=settings.neg_proportion,
            num_epochs=settings.num_epochs, warmup_epoch=settings.warmup_epoch))

    @property
    def num_images(self) -> int:
        return self.pseudo_mask.shape[0]

    def forward(self, logits: Tensor, targets: Tensor, indices: Tensor) -> Tensor:
        indices = check_indices(indices, logits.shape[0], self.num_images).to(self.pseudo_mask.device)
        return entropy_maximization_loss(
            logits, targets, alpha=self.settings.alpha, beta=self.settings.beta,
            pseudo_mask=self.pseudo_mask[indices].to(logits.device),
            pseudo_targets=self.pseudo_targets[indices].to(logits.device),
        )

    def due(self, epoch: int) -> bool:
        """Whether to pseudo-label after the training pass of 0-based epoch ``epoch``."""
        return apl_due(epoch, self.settings.warmup_epoch)

    @torch.no_grad()
    def pseudo_label(self, probs: Tensor, targets: Tensor) -> int:
        """Run one APL round in place; returns how many entries were newly pseudo-labelled.

        Args:
            probs: float (N, C) probabilities of every training image, row = dataset index.
            targets: (N, C) the observed training labels.
        """
        dev = self.pseudo_mask.device
        mask, values = asymmetric_pseudo_labels(
            probs.to(dev), torch.as_tensor(targets).to(dev), self.pseudo_mask, self.pseudo_targets, self.quota)
        added = int(mask.sum() - self.pseudo_mask.sum())
        self.pseudo_mask.copy_(mask)
        self.pseudo_targets.copy_(values)
        return added

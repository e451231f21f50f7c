"""``nn.Module`` wrappers: each keeps its hyper-parameters (and prior buffer) and calls the functional form.

Every loss is called as ``loss(logits, targets)`` and has ``set_epoch(epoch)`` (a no-op except for
schedules such as LL-R's), so a training loop can treat them alike.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from plbench.losses import functional as LF
from plbench.losses.functional import Mode


def _prior_buffer(prior: Tensor | Any | None) -> Tensor | None:
    if prior is None:
        return None
    prior = torch.as_tensor(prior, dtype=torch.float32).clone()
    if prior.ndim != 1:
        raise ValueError(f"expected a 1-D (C,) prior, but got shape {tuple(prior.shape)}")
    return prior


class PartialLoss(nn.Module):
    """Base class: ``forward(logits, targets)`` plus an epoch hook for scheduled losses.

    Class attributes declare what the training loop, the CLI, the sweep and the report must know about a
    loss; a new loss sets them and registers itself with :func:`plbench.losses.register_loss`:

    * ``default_mode``: the :class:`~plbench.choices.Mode` a run uses when none is given, or None when the
      loss takes no mode (nor a prior). :func:`plbench.losses.resolve_mode` is the one reader.
    * ``has_modes``: ``default_mode is not None``, derived for every subclass (do not set it).
    * ``reduction``: ``sum`` or ``mean`` over the batch (data-parallel training scales a summed loss by the
      number of processes).
    * ``label``: display name in reports (``"P-ASL"``); None: the registry name in capitals.
    * ``column_order``: position of the loss's columns in report tables, among the losses with modes (shown
      first) or among those without; ties by name.
    """

    default_mode: ClassVar[Mode | None] = None
    has_modes: ClassVar[bool] = False
    reduction: ClassVar[str] = "mean"
    label: ClassVar[str | None] = None
    column_order: ClassVar[int] = 1000

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.has_modes = cls.default_mode is not None

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss the 0-based index of the epoch about to run (no-op unless scheduled)."""


class PartialAsymmetricLoss(PartialLoss):
    """CSL's partial asymmetric loss (see :func:`plbench.losses.partial_asymmetric_loss`).

    Args:
        prior: float (C,) class prior aligned with the class order (kept as a buffer so it follows
            ``.to(device)``), or None; used by ``mode="selective"`` only.
        other arguments: as :func:`~plbench.losses.partial_asymmetric_loss`, with the same defaults
            (the CSL README's FPC training command).

    Example:
        >>> loss = PartialAsymmetricLoss(mode="ignore", gamma_neg=0, gamma_unann=0)
        >>> round(float(loss(torch.zeros(1, 2), torch.tensor([[1, -1]]))), 4)  # -log(0.5)
        0.6931
    """

    default_mode = Mode.SELECTIVE
    reduction = "sum"
    label = "P-ASL"
    column_order = 30

    def __init__(
        self,
        mode: Mode | str | None = None,
        gamma_pos: float = 0.0,
        gamma_neg: float = 3.0,
        gamma_unann: float = 4.0,
        alpha_pos: float = 1.0,
        alpha_neg: float = 1.0,
        alpha_unann: float = 1.0,
        clip: float = 0.0,
        likelihood_topk: int = 5,
        prior_threshold: float = 0.5,
        prior: Tensor | Any | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__()
        self.mode = Mode.parse(self.default_mode if mode is None else mode)
        self.hp: dict[str, Any] = dict(
            gamma_pos=float(gamma_pos), gamma_neg=float(gamma_neg), gamma_unann=float(gamma_unann),
            alpha_pos=float(alpha_pos), alpha_neg=float(alpha_neg), alpha_unann=float(alpha_unann),
            clip=float(clip or 0.0), likelihood_topk=int(likelihood_topk), prior_threshold=float(prior_threshold),
        )
        self.validate = validate
        self.register_buffer("prior", _prior_buffer(prior), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return LF.partial_asymmetric_loss(
            logits, targets, mode=self.mode, prior=self.prior, validate=self.validate, **self.hp
        )

    def extra_repr(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hp.items())
        return f"mode={self.mode.value}, {hp}, prior={'none' if self.prior is None else tuple(self.prior.shape)}"


class AsymmetricLoss(PartialLoss):
    """ASL (:func:`plbench.losses.asymmetric_loss`); sum over the batch. ``mode`` (default negative),
    ``likelihood_topk``, ``prior_threshold`` and ``prior`` act as in :class:`PartialAsymmetricLoss`."""


    default_mode = Mode.NEGATIVE
    reduction = "sum"
    label = "ASL"
    column_order = 20

    def __init__(
        self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05,
        mode: Mode | str | None = None, likelihood_topk: int = 5, prior_threshold: float = 0.5,
        prior: Tensor | Any | None = None, validate: bool = True,
    ) -> None:
        super().__init__()
        self.mode, self.validate = Mode.parse(self.default_mode if mode is None else mode), validate
        self.hp: dict[str, Any] = dict(
            gamma_pos=float(gamma_pos), gamma_neg=float(gamma_neg), clip=float(clip),
            likelihood_topk=int(likelihood_topk), prior_threshold=float(prior_threshold),
        )
        self.register_buffer("prior", _prior_buffer(prior), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return LF.asymmetric_loss(
            logits, targets, mode=self.mode, prior=self.prior, validate=self.validate, **self.hp
        )


class BCELoss(PartialLoss):
    """Binary cross-entropy on logits (:func:`plbench.losses.binary_cross_entropy`); sum over the batch.
    Unannotated entries are negatives weighted by ``mode`` (default negative)."""


    default_mode = Mode.NEGATIVE
    reduction = "sum"
    label = "CE"  # the CSL paper's name
    column_order = 10

    def __init__(
        self, mode: Mode | str | None = None, likelihood_topk: int = 5, prior_threshold: float = 0.5,
        prior: Tensor | Any | None = None, validate: bool = True,
    ) -> None:
        super().__init__()
        self.mode, self.validate = Mode.parse(self.default_mode if mode is None else mode), validate
        self.hp: dict[str, Any] = dict(likelihood_topk=int(likelihood_topk), prior_threshold=float(prior_threshold))
        self.register_buffer("prior", _prior_buffer(prior), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return LF.binary_cross_entropy(
            logits, targets, mode=self.mode, prior=self.prior, validate=self.validate, **self.hp
        )


class AssumeNegativeLoss(PartialLoss):
    """AN (Cole et al. 2021): unannotated labels are negatives; mean over the B x C entries."""

    label = "AN"
    column_order = 10
    ls_coef: float = 0.0

    def __init__(self, ls_coef: float | None = None, validate: bool = True) -> None:
        super().__init__()
        if ls_coef is not None:
            self.ls_coef = float(ls_coef)
        if not 0.0 <= self.ls_coef < 1.0:
            raise ValueError(f"expected ls_coef in [0, 1), but got {self.ls_coef}")
        self.validate = validate

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return LF.assume_negative_loss(logits, targets, ls_coef=self.ls_coef, validate=self.validate)


class LabelSmoothedAssumeNegativeLoss(AssumeNegativeLoss):
    """AN-LS (Cole et al. 2021): AN with label smoothing, ``ls_coef`` 0.1 by default (their value)."""

    label = "AN-LS"
    column_order = 20
    ls_coef = 0.1


class WeightedAssumeNegativeLoss(PartialLoss):
    """WAN (Cole et al. 2021): AN with unannotated (assumed negative) terms weighted 1 / (C - 1)."""

    label = "WAN"
    column_order = 30

    def __init__(self, validate: bool = True) -> None:
        super().__init__()
        self.validate = validate

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        num_classes = logits.shape[-1]
        return LF.assume_negative_loss(
            logits, targets, unannotated_weight=1.0 / max(num_classes - 1, 1), validate=self.validate
        )


class ExpectedPositiveRegularizedLoss(PartialLoss):
    """EPR (Cole et al. 2021): annotated-only BCE plus the expected-positive-count regulariser.

    Args:
        expected_num_pos: expected number of positives per image, a statistic of the training set
            (Cole et al.: 2.9 for COCO). Required: there is no dataset-independent default.
    """

    label = "EPR"
    column_order = 40

    def __init__(self, expected_num_pos: float | None = None, validate: bool = True) -> None:
        super().__init__()
        if expected_num_pos is None or not math.isfinite(float(expected_num_pos)) or expected_num_pos < 0:
            raise ValueError(
                f"epr needs expected_num_pos, the expected number of positives per image (e.g. 2.9 for "
                f"COCO), a finite number >= 0, but got {expected_num_pos!r}"
            )
        self.expected_num_pos = float(expected_num_pos)
        self.validate = validate

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return LF.expected_positive_regularized_loss(
            logits, targets, expected_num_pos=self.expected_num_pos, validate=self.validate
        )


class LargeLossRejectionLoss(PartialLoss):
    """LL-R (Kim et al. 2022) with its rejection schedule.

    In the epoch with 0-based index ``epoch`` the rejection rate is ``min(epoch * delta_rel, 1)``: no
    rejection in the first epoch, then ``delta_rel`` more each epoch (the authors lower their clean rate
    by ``delta_rel`` after every epoch). Call :meth:`set_epoch` before each epoch (or set ``epoch``).

    Args:
        delta_rel: rate increase per epoch, a fraction (0.002 = the authors' ``--delta_rel 0.2``, in
            percent, the middle of their README's range 0.1-0.5).
    """

    label = "LL-R"
    column_order = 50

    def __init__(self, delta_rel: float = 0.002, epoch: int = 0, validate: bool = True) -> None:
        super().__init__()
        if not 0.0 <= delta_rel <= 1.0:
            raise ValueError(f"expected delta_rel in [0, 1] (a fraction, not percent), but got {delta_rel}")
        self.delta_rel, self.epoch, self.validate = float(delta_rel), int(epoch), validate

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def rejection_rate(self) -> float:
        return min(max(self.epoch, 0) * self.delta_rel, 1.0)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return LF.large_loss_rejection_loss(
            logits, targets, rejection_rate=self.rejection_rate, validate=self.validate
        )

    def extra_repr(self) -> str:
        return f"delta_rel={self.delta_rel}, epoch={self.epoch}"

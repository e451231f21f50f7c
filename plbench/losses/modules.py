"""``nn.Module`` wrappers: each keeps its hyper-parameters (and prior buffer) and calls the functional form.

Every loss is called as ``loss(logits, targets)`` and has ``set_epoch(epoch)`` (a no-op except for
schedules such as LL-R's), so a training loop can treat them alike. A module checks shapes on every call
but reads the target values (a device sync) only when built with ``validate=True``: in the training loop
the targets were checked once, when the engine loaded them. The functional forms check them by default.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, ClassVar

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


def hyper_parameters(function: Callable[..., Tensor]) -> dict[str, Any]:
    """Name -> default of a functional loss's keyword-only hyper-parameters (``mode``, ``prior`` and
    ``validate`` excluded): the one place those defaults are written is the function's signature."""
    return {n: p.default for n, p in inspect.signature(function).parameters.items()
            if p.kind is p.KEYWORD_ONLY and n not in ("mode", "prior", "validate")}


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

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Name -> default (``inspect.Parameter.empty``: required) of what ``loss_options`` may set: the
        constructor's arguments other than ``mode``, ``prior`` and ``validate``."""
        return {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()
                if n not in ("self", "mode", "prior", "validate") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss the 0-based index of the epoch about to run (no-op unless scheduled)."""


class ModalLoss(PartialLoss):
    """A loss with modes whose hyper-parameters are the keyword arguments of its functional form.

    The hyper-parameters and their defaults are read from ``function``'s signature (written once, there);
    ``mode``, ``prior`` and ``validate`` are passed separately.

    Args:
        mode: a :class:`~plbench.choices.Mode` (or its value); None: the class's ``default_mode``.
        prior: float (C,) class prior aligned with the class order (kept as a buffer so it follows
            ``.to(device)``), or None; used by ``mode="selective"`` only.
        validate: also check the target values on every call (a device sync on GPU; off because the
            engine checks a run's targets once when it loads them). Shapes are always checked (no sync).
        **hyper_parameters: keyword arguments of ``function`` (None: its default).
    Raises:
        TypeError: a hyper-parameter ``function`` does not take.
        ValueError: an unknown mode, or a non-integral value for an integer hyper-parameter.
    """

    #: the functional form: ``function(logits, targets, *, mode, prior, validate, **hyper_parameters)``
    function: ClassVar[Callable[..., Tensor]]
    reduction = "sum"

    def __init__(self, mode: Mode | str | None = None, prior: Tensor | Any | None = None, validate: bool = False,
                 **hyper_parameters: Any) -> None:
        super().__init__()
        defaults = self.options()
        unknown = sorted(set(hyper_parameters) - set(defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} does not take {', '.join(unknown)}; it takes: "
                            f"{', '.join(['mode', 'prior', 'validate', *defaults])}")
        self.mode = Mode.parse(self.default_mode if mode is None else mode)
        self.hp: dict[str, Any] = {k: _as_default_type(k, hyper_parameters.get(k), d) for k, d in defaults.items()}
        self.validate = validate
        self.register_buffer("prior", _prior_buffer(prior), persistent=False)

    @classmethod
    def options(cls) -> dict[str, Any]:
        return hyper_parameters(cls.function)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return type(self).function(
            logits, targets, mode=self.mode, prior=self.prior, validate=self.validate, **self.hp
        )

    def extra_repr(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hp.items())
        return f"mode={self.mode.value}, {hp}, prior={'none' if self.prior is None else tuple(self.prior.shape)}"


def _as_default_type(name: str, value: Any, default: Any) -> Any:
    """``value`` (None: ``default``) as the type of ``default``: ints stay ints, numbers become floats."""
    if value is None:
        return default
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or int(value) != value:
            raise ValueError(f"expected an integer {name}, but got {value!r}")
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


class PartialAsymmetricLoss(ModalLoss):
    """CSL's partial asymmetric loss; hyper-parameters and defaults (the CSL README's FPC training command)
    as :func:`~plbench.losses.partial_asymmetric_loss`, other arguments as :class:`ModalLoss`.

    Example:
        >>> loss = PartialAsymmetricLoss(mode="ignore", gamma_neg=0, gamma_unann=0)
        >>> round(float(loss(torch.zeros(1, 2), torch.tensor([[1, -1]]))), 4)  # -log(0.5)
        0.6931
    """

    function = staticmethod(LF.partial_asymmetric_loss)
    default_mode = Mode.SELECTIVE
    label = "P-ASL"
    column_order = 30


class AsymmetricLoss(ModalLoss):
    """ASL (:func:`plbench.losses.asymmetric_loss`, whose signature gives the hyper-parameters and the ASL
    authors' defaults); sum over the batch. Unannotated targets follow ``mode`` (default negative)."""

    function = staticmethod(LF.asymmetric_loss)
    default_mode = Mode.NEGATIVE
    label = "ASL"
    column_order = 20


class BCELoss(ModalLoss):
    """Binary cross-entropy on logits (:func:`plbench.losses.binary_cross_entropy`); sum over the batch.
    Unannotated entries are negatives weighted by ``mode`` (default negative)."""

    function = staticmethod(LF.binary_cross_entropy)
    default_mode = Mode.NEGATIVE
    label = "CE"  # the CSL paper's name
    column_order = 10


class AssumeNegativeLoss(PartialLoss):
    """AN (Cole et al. 2021): unannotated labels are negatives; mean over the B x C entries."""

    label = "AN"
    column_order = 10
    ls_coef: float = hyper_parameters(LF.assume_negative_loss)["ls_coef"]  # the function's: no smoothing

    def __init__(self, ls_coef: float | None = None, validate: bool = False) -> None:
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

    def __init__(self, validate: bool = False) -> None:
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

    def __init__(self, expected_num_pos: float | None = None, validate: bool = False) -> None:
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

    def __init__(self, delta_rel: float = 0.002, epoch: int = 0, validate: bool = False) -> None:
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

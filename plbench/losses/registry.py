"""Loss registry: name -> ``PartialLoss`` class, and the ``create_loss`` factory."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

from plbench.choices import Mode
from plbench.losses.modules import (
    AssumeNegativeLoss,
    AsymmetricLoss,
    BCELoss,
    ExpectedPositiveRegularizedLoss,
    LabelSmoothedAssumeNegativeLoss,
    LargeLossRejectionLoss,
    PartialAsymmetricLoss,
    PartialLoss,
    WeightedAssumeNegativeLoss,
)

log = logging.getLogger(__name__)

#: loss name -> class; filled by :func:`register_loss`
LOSSES: dict[str, type[PartialLoss]] = {}


def register_loss(name: str) -> Callable[[type[PartialLoss]], type[PartialLoss]]:
    """Class decorator adding a loss under ``name`` (a duplicate name warns and replaces)."""

    def add(cls: type[PartialLoss]) -> type[PartialLoss]:
        if name in LOSSES:
            warnings.warn(f"loss {name!r} registered twice; the later {cls.__name__} wins", stacklevel=2)
        LOSSES[name] = cls
        return cls

    return add


for _name, _cls in {
    "pasl": PartialAsymmetricLoss,
    "asl": AsymmetricLoss,
    "bce": BCELoss,
    "an": AssumeNegativeLoss,
    "an_ls": LabelSmoothedAssumeNegativeLoss,
    "wan": WeightedAssumeNegativeLoss,
    "epr": ExpectedPositiveRegularizedLoss,
    "ll_r": LargeLossRejectionLoss,
}.items():
    register_loss(_name)(_cls)


def list_losses() -> list[str]:
    """Sorted registered loss names."""
    return sorted(LOSSES)


def loss_class(name: str) -> type[PartialLoss]:
    """The registered class of ``name``.

    Raises:
        ValueError: unknown name (lists the available ones).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(list_losses())}")
    return LOSSES[name]


def takes_mode(loss: str | type[PartialLoss]) -> bool:
    """Whether ``loss`` (a registered name or a class) takes a :class:`~plbench.choices.Mode` and a prior;
    False for an unknown name."""
    if isinstance(loss, str):
        return loss in LOSSES and LOSSES[loss].has_modes
    return loss.has_modes


def resolve_mode(loss: str | type[PartialLoss], mode: Mode | str | None, *, default: bool = True) -> str | None:
    """The mode a run of ``loss`` uses: the one owner of "does this loss take a mode, and which".

    Args:
        loss: a registered name or a :class:`PartialLoss` class.
        mode: the requested mode, or None.
        default: with ``mode=None``, give the loss's ``default_mode`` (True), or refuse (False: a config or an
            experiment file must name the mode it records).
    Returns:
        the mode's value (``"selective"``) for a loss with modes; None for a loss without modes.
    Raises:
        ValueError: unknown loss (lists the available ones), a mode for a loss without modes, an unknown
            mode (lists the modes), or no mode for a loss with modes when ``default`` is False.
    Example:
        >>> resolve_mode("pasl", None), resolve_mode("asl", "ignore"), resolve_mode("an", None)
        ('selective', 'ignore', None)
    """
    cls = loss_class(loss) if isinstance(loss, str) else loss
    name = loss if isinstance(loss, str) else cls.__name__
    if not cls.has_modes:
        if mode is not None:
            raise ValueError(f"loss {name!r} has no partial-label modes, but got mode {str(mode)!r}; "
                             "leave out the mode")
        return None
    if mode is None:
        if not default:
            raise ValueError(f"loss {name!r} needs a mode, but none is given; "
                             f"one of {', '.join(m.value for m in Mode)}")
        return cls.default_mode.value
    return Mode.parse(mode).value


def create_loss(name: str, **kw: Any) -> PartialLoss:
    """Build a registered loss.

    ``mode=None`` and ``prior=None`` may be passed to every loss and are dropped where the loss has no
    modes (``cls.has_modes``); a mode or a prior for a loss without modes is an error
    (:func:`resolve_mode`).

    Args:
        name: one of :func:`list_losses` (``pasl``, ``asl``, ``bce``, ``an``, ``an_ls``, ``wan``, ``epr``,
            ``ll_r``).
        **kw: constructor arguments of that loss (see its class).
    Raises:
        ValueError: unknown name (lists the available ones), a prior for a loss that ignores it, or an
            argument the loss does not take.
    Example:
        >>> create_loss("pasl", mode="negative", gamma_neg=4).mode.value
        'negative'
    """
    cls = loss_class(name)
    kw = dict(kw)
    mode = resolve_mode(name, kw.pop("mode", None))
    prior = kw.pop("prior", None)
    if cls.has_modes:
        kw.update(mode=mode, prior=prior)
    elif prior is not None:
        raise ValueError(f"loss {name!r} does not use a class prior; use pasl with mode=selective")
    options = cls.options()
    unknown = sorted(set(kw) - set(options) - {"mode", "prior", "validate"})
    if unknown:
        raise ValueError(f"loss {name!r} does not take {', '.join(unknown)}; it takes: "
                         f"{', '.join(options) or 'no options'}")
    return cls(**kw)

"""Loss registry: name -> ``PartialLoss`` class, and the ``create_loss`` factory."""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any, Callable

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


def create_loss(name: str, **kw: Any) -> PartialLoss:
    """Build a registered loss.

    ``mode=None`` and ``prior=None`` may be passed to every loss and are dropped where the loss has no
    modes (``cls.has_modes``); a mode or a prior for a loss without modes is an error.

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
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(list_losses())}")
    cls = LOSSES[name]
    params = inspect.signature(cls.__init__).parameters
    kw = dict(kw)
    if "prior" in kw and "prior" not in params:
        if kw["prior"] is not None:
            raise ValueError(f"loss {name!r} does not use a class prior; use pasl with mode=selective")
        del kw["prior"]
    if "mode" in kw and kw["mode"] is None:
        del kw["mode"]  # the loss's default mode
    if "mode" in kw and not cls.has_modes:
        raise ValueError(f"loss {name!r} has no partial-label modes; leave out the mode")
    unknown = sorted(set(kw) - set(params) - {"self"})
    if unknown:
        allowed = ", ".join(p for p in params if p != "self")
        raise ValueError(f"loss {name!r} does not take {', '.join(unknown)}; it takes: {allowed}")
    return cls(**kw)

"""Classification heads: map backbone features (B, D, H, W) or (B, L, D) to logits (B, C).

``create_head(name, in_features, num_classes, **kw)`` builds one from the :data:`HEADS` registry.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from torch import nn

from plbench.choices import Head
from plbench.heads.gap import GAPHead, tokens_from_features
from plbench.heads.ml_decoder import MLDecoderHead, MLDecoderOutput

#: head name -> constructor taking (in_features, num_classes, **kw)
HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a head constructor under ``name`` (a duplicate name warns and replaces)."""

    def add(ctor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in HEADS:
            warnings.warn(f"head {name!r} registered twice; the later one wins", stacklevel=2)
        HEADS[name] = ctor
        return ctor

    return add


register_head(Head.GAP.value)(GAPHead)
register_head(Head.ML_DECODER.value)(MLDecoderHead)


def list_heads() -> list[str]:
    """Sorted registered head names."""
    return sorted(HEADS)


def create_head(name: str, in_features: int, num_classes: int, **kw: Any) -> nn.Module:
    """Build a registered head.

    Args:
        name: one of :func:`list_heads` (``gap``, ``ml-decoder``: the values of :class:`plbench.choices.Head`).
        in_features: D, the backbone's ``num_features``.
        num_classes: C.
        **kw: further constructor arguments (e.g. ``num_groups`` for ``ml-decoder``).
    Raises:
        ValueError: unknown name (lists the available heads) or bad arguments.
    Example:
        >>> create_head("gap", 512, 80).fc.out_features
        80
    """
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; available: {', '.join(list_heads())}")
    try:
        return HEADS[name](in_features, num_classes, **kw)
    except TypeError as e:  # an unknown keyword argument
        raise ValueError(f"bad arguments for head {name!r}: {e}") from None


__all__ = ["HEADS", "GAPHead", "MLDecoderHead", "MLDecoderOutput", "create_head", "list_heads", "register_head",
           "tokens_from_features"]

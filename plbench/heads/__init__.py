"""Classification heads: map backbone features (B, D, H, W) or (B, L, D) to logits (B, C).

A head is any callable ``(in_features, num_classes, **options) -> nn.Module``. The built-in ones are in
:data:`HEADS` (``gap``, ``ml-decoder``, and ``boostlu`` from :mod:`plbench.methods.boostlu`); a head spec may
also name an installed entry point (group ``plbench.heads``) or ``package.module:Name``
(:func:`plbench.methods.registry.resolve_head` resolves all three). ``create_head(spec, in_features,
num_classes, **kw)`` builds one.

A head says whether it needs spatial features with a class attribute ``needs_spatial_features`` (GAP:
False; ML-Decoder, BoostLU: True; a head without it is taken to need them): a linear-protocol run gives such a
head the stored tokens (B, L, D) and refuses a store of pooled features; other heads get pooled (B, 1, D).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from torch import nn

from plbench.choices import Head
from plbench.heads.gap import GAPHead, tokens_from_features
from plbench.heads.ml_decoder import MLDecoderHead, MLDecoderOutput

#: built-in head name -> constructor taking (in_features, num_classes, **kw); use :func:`list_heads`, which
#: also sees the heads registered outside this package (BoostLU's)
HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a built-in head constructor under ``name`` (a duplicate name warns and replaces)."""

    def add(ctor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in HEADS and HEADS[name] is not ctor:
            warnings.warn(f"head {name!r} registered twice; the later one wins", stacklevel=2)
        HEADS[name] = ctor
        return ctor

    return add


register_head(Head.GAP.value)(GAPHead)
register_head(Head.ML_DECODER.value)(MLDecoderHead)


def builtin_heads() -> dict[str, Callable[..., nn.Module]]:
    """Every built-in head: :data:`HEADS`, once the modules that register one outside this package are imported
    (:mod:`plbench.methods.boostlu`, imported here and not above: ``plbench.methods`` imports this package)."""
    import plbench.methods.boostlu  # noqa: F401  (registers "boostlu")

    return dict(HEADS)


def list_heads() -> list[str]:
    """Sorted built-in head names (installed ones: :func:`plbench.methods.registry.list_heads_all`)."""
    return sorted(builtin_heads())


def needs_spatial_features(head: str | Callable[..., nn.Module]) -> bool:
    """Whether head ``head`` (a spec or a constructor) reads spatial features (tokens) rather than pooled ones:
    its ``needs_spatial_features`` attribute, True where it has none.

    Raises:
        InputError: a spec :func:`plbench.methods.registry.resolve_head` refuses.
    """
    if isinstance(head, str):
        from plbench.methods.registry import resolve_head

        head = resolve_head(head)
    return bool(getattr(head, "needs_spatial_features", True))


def create_head(name: str, in_features: int, num_classes: int, **kw: Any) -> nn.Module:
    """Build the head a spec names.

    Args:
        name: a built-in name (:func:`list_heads`: ``boostlu``, ``gap``, ``ml-decoder``), an installed
            entry point of group ``plbench.heads`` or ``package.module:Name``.
        in_features: D, the backbone's ``num_features``.
        num_classes: C.
        **kw: further constructor arguments (e.g. ``num_groups`` for ``ml-decoder``).
    Raises:
        InputError: a spec that names no head (lists the available ones) or cannot be imported.
        ValueError: arguments the head refuses.
    Example:
        >>> create_head("gap", 512, 80).fc.out_features
        80
    """
    from plbench.methods.registry import resolve_head

    ctor = resolve_head(name, field="head")
    try:
        head = ctor(in_features, num_classes, **kw)
    except TypeError as e:  # an unknown keyword argument
        raise ValueError(f"bad arguments for head {name!r}: {e}") from None
    if not isinstance(head, nn.Module):
        raise ValueError(f"head {name!r} returned a {type(head).__name__}, not an nn.Module")
    return head


__all__ = ["HEADS", "GAPHead", "MLDecoderHead", "MLDecoderOutput", "builtin_heads", "create_head", "list_heads",
           "needs_spatial_features", "register_head", "tokens_from_features"]

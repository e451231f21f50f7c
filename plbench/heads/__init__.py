"""Classification heads: map backbone features (B, D, H, W) or (B, L, D) to logits (B, C).

A head is any callable ``(in_features, num_classes, **options) -> nn.Module``. The built-in ones are in
:data:`HEADS` (``gap``, ``ml-decoder`` and ``boostlu``); a head spec may also name an installed entry point
(group ``plbench.heads``, in a package's ``pyproject.toml`` like methods') or ``package.module:Name``
(:func:`resolve_head` resolves all three, through :mod:`plbench.plugins`). ``create_head(spec, in_features,
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
from plbench.errors import InputError
from plbench.heads.boostlu import BoostLUHead
from plbench.heads.gap import GAPHead, tokens_from_features
from plbench.heads.ml_decoder import MLDecoderHead, MLDecoderOutput
from plbench.plugins import distribution, entry_points, import_object, load_entry_point

#: entry-point group of installed heads
HEAD_GROUP = "plbench.heads"

#: built-in head name -> constructor taking (in_features, num_classes, **kw)
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
register_head(Head.BOOSTLU.value)(BoostLUHead)  # e.g. with --method ll_r / ll_ct / ll_cp as its authors train it


def builtin_heads() -> dict[str, Callable[..., nn.Module]]:
    """Every built-in head (a copy of :data:`HEADS`)."""
    return dict(HEADS)


def list_heads() -> list[str]:
    """Sorted built-in head names (installed ones too: :func:`list_heads_all`)."""
    return sorted(builtin_heads())


def needs_spatial_features(head: str | Callable[..., nn.Module]) -> bool:
    """Whether head ``head`` (a spec or a constructor) reads spatial features (tokens) rather than pooled ones:
    its ``needs_spatial_features`` attribute, True where it has none.

    Raises:
        InputError: a spec :func:`resolve_head` refuses.
    """
    if isinstance(head, str):
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
    ctor = resolve_head(name, field="head")
    try:
        head = ctor(in_features, num_classes, **kw)
    except TypeError as e:  # an unknown keyword argument
        raise ValueError(f"bad arguments for head {name!r}: {e}") from None
    if not isinstance(head, nn.Module):
        raise ValueError(f"head {name!r} returned a {type(head).__name__}, not an nn.Module")
    return head


def resolve_head(spec: str, *, field: str = "--head") -> Callable[..., nn.Module]:
    """The head constructor ``spec`` names: ``package.module:Name``, a built-in head (``gap``,
    ``ml-decoder``, ``boostlu``) or an entry point in group ``plbench.heads``.

    Raises:
        InputError: unknown name (lists the available heads), an import failure, or an object that is not
            callable.
    """
    if not isinstance(spec, str) or not spec:
        raise InputError(None, field, f"expected a head name or package.module:Name, but got {spec!r}",
                         "pick a built-in head (gap, ml-decoder, boostlu), or name one as package.module:Name")
    if ":" in spec:
        obj = import_object(spec, field=field, kind="head")
    else:
        builtin, installed = builtin_heads(), entry_points(HEAD_GROUP)
        if spec in builtin:
            return builtin[spec]
        if spec not in installed:
            names = ", ".join(sorted(builtin) + sorted(set(installed) - set(builtin)))
            raise InputError(None, field, f"unknown head {spec!r}; available: {names}",
                             "pick one of those, or name a head as package.module:Name")
        obj = load_entry_point(installed[spec], field=field, kind="head", group=HEAD_GROUP)
    if not callable(obj):
        raise InputError(None, field, f"head {spec!r} is a {type(obj).__name__}, not a callable "
                         "(in_features, num_classes, **options) -> nn.Module", "name an nn.Module class or a factory")
    return obj


def head_spec(spec: str) -> str:
    """``spec`` unchanged when :func:`resolve_head` accepts it; for schemas (the run config, an experiment
    file), whose validators turn a ValueError into an error naming their key.

    Raises:
        ValueError: the problem :func:`resolve_head` found, in one sentence.
    """
    try:
        resolve_head(spec, field="head")
    except InputError as e:
        raise ValueError(e.problem) from None
    return spec


def head_provenance(spec: str) -> dict[str, Any]:
    """The provenance record of head ``spec`` (as a method's: :func:`plbench.methods.provenance.method_provenance`):
    spec, import path, package and version, source file and its sha256."""
    from plbench.methods.provenance import method_provenance  # imports nothing of plbench

    return method_provenance(resolve_head(spec, field="head"), spec)


def list_heads_all() -> list[tuple[str, str]]:
    """(name, origin) of the built-in and installed heads."""
    out = [(n, "built-in") for n in sorted(builtin_heads())]
    out += [(n, distribution(ep)) for n, ep in sorted(entry_points(HEAD_GROUP).items())]
    return out


__all__ = ["HEAD_GROUP", "HEADS", "BoostLUHead", "GAPHead", "MLDecoderHead", "MLDecoderOutput", "builtin_heads",
           "create_head", "head_provenance", "head_spec", "list_heads", "list_heads_all", "needs_spatial_features",
           "register_head", "resolve_head", "tokens_from_features"]

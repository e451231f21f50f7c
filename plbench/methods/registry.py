"""Where methods come from: built-in names, ``package.module:Name`` imports, installed entry points.

A method spec (``--method``, ``loss`` / ``method`` in a config or an experiment file) is resolved by
:func:`resolve_method` in this order:

1. ``package.module:Name`` (a colon): import the module, take the attribute (dotted names allowed);
2. a built-in name (:data:`METHODS`: today's losses and the field's methods);
3. an entry point of an installed distribution in the group ``plbench.methods``, e.g. in its
   ``pyproject.toml``::

       [project.entry-points."plbench.methods"]
       my_method = "my_package.methods:MyMethod"

Heads resolve the same way (:func:`plbench.heads.resolve_head`, group ``plbench.heads``); the imports and
entry points of both are :mod:`plbench.plugins`.

Every failure (nothing under that name, a module that cannot be imported or raises on import, a missing
attribute, an object that is not a well-formed :class:`~plbench.methods.api.Method`) is an
:class:`~plbench.errors.InputError` saying what failed and how to fix it: the CLI exits 2 before any
file is written. Sweep workers and torchrun children resolve the same string in their own process, so a
``module:Name`` must be importable there too (installed, or on ``PYTHONPATH``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

from plbench.errors import InputError
from plbench.methods.api import REQUIRED, Method, check_method_class
from plbench.plugins import distribution, entry_points, import_object, load_entry_point

__all__ = ["METHOD_GROUP", "METHODS", "register_method", "builtin_methods", "resolve_method", "create_method",
           "MethodEntry", "list_methods"]

#: entry-point group of installed methods
METHOD_GROUP = "plbench.methods"

#: built-in method name -> class; filled by :func:`register_method` and :func:`builtin_methods`
METHODS: dict[str, type[Method]] = {}

# (loss name, loss class) -> its method class, so a name re-registered with another class gets a new one
_LOSS_METHODS: dict[tuple[str, type], type[Method]] = {}
_FIELD_METHODS_ADDED: list[bool] = []


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a built-in method under ``name`` (a duplicate name warns and replaces)."""

    def add(cls: type[Method]) -> type[Method]:
        check_method_class(cls, name)
        if name in METHODS and METHODS[name] is not cls:
            warnings.warn(f"method {name!r} registered twice; the later {cls.__name__} wins", stacklevel=2)
        METHODS[name] = cls
        return cls

    return add


def builtin_methods() -> dict[str, type[Method]]:
    """Every built-in method: one per loss registered now (:mod:`plbench.methods.loss_method`; a loss
    added to :data:`plbench.losses.LOSSES` later is seen), the field's methods
    (:mod:`plbench.methods.builtin`) and any added with :func:`register_method` (these win a name clash)."""
    from plbench.losses import LOSSES
    from plbench.methods.loss_method import loss_method_class

    if not _FIELD_METHODS_ADDED:
        from plbench.methods.builtin import BUILTIN_METHODS

        for name, cls in BUILTIN_METHODS.items():
            register_method(name)(cls)
        _FIELD_METHODS_ADDED.append(True)
    out: dict[str, type[Method]] = {}
    for name, loss_cls in LOSSES.items():
        if (name, loss_cls) not in _LOSS_METHODS:
            _LOSS_METHODS[name, loss_cls] = check_method_class(loss_method_class(name), name)
        out[name] = _LOSS_METHODS[name, loss_cls]
    out.update(METHODS)
    return out


# -- methods -----------------------------------------------------------------------------------------
def resolve_method(spec: str, *, field: str = "--method") -> type[Method]:
    """The method class ``spec`` names (see the module docstring for the order).

    Raises:
        InputError: nothing under that name (lists the built-in and installed names) or a broken /
            malformed method (names what failed).
    """
    if not isinstance(spec, str) or not spec:
        raise InputError(None, field, f"expected a method name or package.module:Name, but got {spec!r}",
                         "see `plbench methods list`")
    if ":" in spec:
        return check_method_class(import_object(spec, field=field, kind="method", base=Method), spec, field=field)
    builtin = builtin_methods()
    if spec in builtin:
        return builtin[spec]
    installed = entry_points(METHOD_GROUP)
    if spec in installed:
        obj = load_entry_point(installed[spec], field=field, kind="method", group=METHOD_GROUP)
        return check_method_class(obj, spec, field=field)
    names = ", ".join(sorted(builtin) + sorted(set(installed) - set(builtin)))
    raise InputError(None, field, f"unknown method {spec!r}; available: {names}",
                     "pick one of those (`plbench methods list`), or name a class as package.module:Name")


def create_method(spec: str | type[Method], options: dict[str, Any] | None = None, *,
                  field: str = "--method", options_field: str = "--loss-option") -> Method:
    """An instance of the method ``spec`` names (or of the class given), with hyper-parameters ``options``.

    Raises:
        InputError: the errors of :func:`resolve_method`, an option the method does not take (lists the
            ones it takes), a required option left out, or a value its constructor refuses.
    """
    cls = resolve_method(spec, field=field) if isinstance(spec, str) else check_method_class(spec, spec.__name__)
    name = spec if isinstance(spec, str) else cls.__name__
    options = dict(options or {})
    allowed = cls.options()
    unknown = sorted(set(options) - set(allowed))
    listed = ", ".join(f"{k}={'REQUIRED' if v is REQUIRED else v!r}" for k, v in allowed.items()) or "no options"
    if unknown:
        raise InputError(None, options_field, f"method {name!r} does not take {', '.join(unknown)}; it takes: "
                         f"{listed}", f"see `plbench methods show {name}`")
    missing = [k for k, v in allowed.items() if v is REQUIRED and k not in options]
    if missing:
        raise InputError(None, options_field, f"method {name!r} needs {', '.join(missing)}",
                         f"pass --loss-option {missing[0]}=VALUE (see `plbench methods show {name}`)")
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise InputError(None, options_field, f"method {name!r} refuses its options: {e}",
                         f"see `plbench methods show {name}`") from None


@dataclass(frozen=True)
class MethodEntry:
    """One row of ``plbench methods list``: a method's name, where it comes from, its one-line summary, and
    the error when an installed one cannot be loaded (``cls`` is None then)."""

    name: str
    origin: str  # "built-in" or "<distribution> <version>"
    summary: str
    cls: type[Method] | None = None
    error: str | None = None


def list_methods() -> list[MethodEntry]:
    """The built-in methods (sorted), then the installed ones (sorted); a broken plug-in is listed with its
    error instead of failing the listing; an installed name that a built-in shadows is listed as such."""
    builtin = builtin_methods()
    out = [MethodEntry(n, "built-in", c.one_line(), c) for n, c in sorted(builtin.items())]
    for name, ep in sorted(entry_points(METHOD_GROUP).items()):
        origin = distribution(ep)
        if name in builtin:
            out.append(MethodEntry(name, origin, "", None, f"shadowed by the built-in {name!r}; use {ep.value}"))
            continue
        try:
            cls = resolve_method(name)
        except InputError as e:
            out.append(MethodEntry(name, origin, "", None, e.problem))
            continue
        out.append(MethodEntry(name, origin, cls.one_line(), cls))
    return out

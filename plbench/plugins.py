"""Outside code: ``package.module:Name`` imports and installed entry points, for methods and heads alike.

Every failure (a malformed spec, a module that cannot be found or raises while importing, a missing
attribute, an entry point that cannot be loaded) is an :class:`~plbench.errors.InputError` saying what failed
and how to fix it. Sweep workers and torchrun children resolve the same string in their own process, so a
``module:Name`` must be importable there too (installed, or on ``PYTHONPATH``).
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
from typing import Any

from plbench.errors import InputError

__all__ = ["IMPORT_FIX", "import_object", "entry_points", "distribution", "load_entry_point"]

IMPORT_FIX = ("install the package that provides it (pip install ...), or put its folder on PYTHONPATH; "
              "sweep workers and torchrun processes need it too")


def import_object(spec: str, *, field: str, kind: str, base: type | None = None) -> Any:
    """The object ``package.module:Name`` names (``Name`` may be dotted).

    Args:
        spec: ``package.module:Name``.
        field: the option or key the spec came from (named in errors).
        kind: ``"method"``, ``"head"``: what the error messages call it.
        base: when an attribute is missing, the error lists the module's classes that subclass it (any class
            when None).
    Raises:
        InputError: a malformed spec, a module that cannot be found or raises while importing, or a
            missing attribute (listing the module's public names of that kind when it can).
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or any(not part.isidentifier() for part in (*module_name.split("."),
                                                                                 *attr.split("."))):
        raise InputError(None, field, f"expected a {kind} as package.module:Name, but got {spec!r}",
                         f"write e.g. my_package.methods:MyMethod, or a built-in name (`plbench methods list`)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or module_name
        where = "" if missing == module_name else f" (it imports {missing!r}, which is missing)"
        raise InputError(None, field, f"cannot import module {module_name!r} of {kind} {spec!r}{where}: {e}",
                         IMPORT_FIX) from None
    except Exception as e:  # an error inside the user's module: name it, not a traceback deep in plbench
        raise InputError(None, field, f"importing module {module_name!r} of {kind} {spec!r} raised "
                         f"{type(e).__name__}: {e}", f"fix the error in {module_name}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n, v in vars(module).items() if not n.startswith("_") and isinstance(v, type)
                            and (base is None or issubclass(v, base)) and v.__module__ == module.__name__)
            hint = f"; it defines: {', '.join(public)}" if public else ""
            raise InputError(getattr(module, "__file__", None), field, f"module {module_name!r} has no attribute "
                             f"{attr!r}{hint}", f"check the name after the colon in {spec!r}")
        obj = getattr(obj, part)
    return obj


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """Installed entry points of ``group`` by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def distribution(ep: metadata.EntryPoint) -> str:
    """``"<distribution> <version>"`` of the package that registered ``ep``."""
    dist = getattr(ep, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an installed package"


def load_entry_point(ep: metadata.EntryPoint, *, field: str, kind: str, group: str) -> Any:
    """``ep.load()``; any failure an InputError naming the package and the entry point."""
    try:
        return ep.load()
    except Exception as e:
        raise InputError(None, field, f"the {kind} {ep.name!r} registered by {distribution(ep)} (entry point "
                         f"{ep.value!r} in group {group}) cannot be loaded: {type(e).__name__}: {e}",
                         "reinstall or upgrade that package, or uninstall it") from None

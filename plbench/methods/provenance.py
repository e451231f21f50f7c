"""Which code a method's numbers came from: import path, distribution and version, sha256 of the source.

A run's summary records :func:`method_provenance` of its method, so a report can tell two versions of
one method apart (same name, other source file or package version), and a sweep hashes
:func:`plugin_fingerprint` of a plug-in's code into its training stages, so an edited plug-in is re-run.
plbench's own methods and heads are left out of both: their version is plbench's, and upgrading plbench
does not re-run a finished sweep.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import inspect
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["method_provenance", "source_sha256", "distribution_of", "is_plbench_code", "plugin_fingerprint"]


@lru_cache(maxsize=8)
def _packages(search_path: tuple[str, ...]) -> dict[str, list[str]]:
    # half a second to scan every installed distribution: once per search path
    return metadata.packages_distributions()


def distribution_of(module_name: str) -> tuple[str | None, str | None]:
    """(distribution name, version) that installs top-level package of ``module_name``; (None, None) for a
    module found on ``sys.path`` outside any installed distribution."""
    top = module_name.split(".")[0]
    names = _packages(tuple(sys.path)).get(top) or []
    if not names:
        return None, None
    try:
        return names[0], metadata.version(names[0])
    except metadata.PackageNotFoundError:
        return names[0], None


@lru_cache(maxsize=None)
def _file_sha256(path: str, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_sha256(obj: Any) -> tuple[str | None, str | None]:
    """(source file, sha256 of its bytes) of the module defining ``obj``; (None, None) when it has none
    (a class built in an interactive session)."""
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    try:
        path = inspect.getsourcefile(obj) or getattr(module, "__file__", None)
    except TypeError:
        path = getattr(module, "__file__", None)
    if not path or not Path(path).is_file():
        return None, None
    p = Path(path).resolve()
    return str(p), _file_sha256(str(p), p.stat().st_mtime_ns)


def _record(obj: Any) -> dict[str, Any]:
    package, version = distribution_of(obj.__module__)
    path, digest = source_sha256(obj)
    return {"import_path": f"{obj.__module__}:{obj.__qualname__}", "package": package, "version": version,
            "source_file": path, "source_sha256": digest}


def method_provenance(cls: type, spec: str) -> dict[str, Any]:
    """The provenance record of method class ``cls`` resolved from ``spec``.

    Returns:
        ``{"spec", "import_path", "package", "version", "source_file", "source_sha256"}`` and, for a
        method wrapping another class (``cls.implementation``: today's losses), ``"wraps"``: the same
        record of that class.
    """
    out: dict[str, Any] = {"spec": spec, **_record(cls)}
    wrapped = getattr(cls, "implementation", None)
    if wrapped is not None and wrapped is not cls:
        out["wraps"] = _record(wrapped)
    return out


def is_plbench_code(import_path: str) -> bool:
    """Whether ``module[:Name]`` is code of plbench itself (``plbench`` or a submodule), not a plug-in's."""
    module = import_path.split(":", 1)[0]
    return module == "plbench" or module.startswith("plbench.")


def plugin_fingerprint(cls: type) -> dict[str, Any] | None:
    """What identifies the code of a plug-in class (a method or a head from outside plbench): its import path,
    its distribution's version and its source file's sha256 (None where unknown); None for plbench's own
    classes. A sweep puts it into the hash of every training stage that uses ``cls``."""
    if is_plbench_code(cls.__module__):
        return None
    rec = _record(cls)
    return {k: rec[k] for k in ("import_path", "version", "source_sha256")}

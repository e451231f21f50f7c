"""Crash-safe writes: everything goes to a temp file in the target folder, then ``os.replace``.

JSON is written strict (:func:`to_json`): a number that does not exist (NaN, an infinity) is ``null``,
never the bare ``NaN`` / ``Infinity`` that jq and browsers reject. Readers (``json.loads``) accept both.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class _KeepWriteError:
    """A binary file whose failed writes keep their OSError (in ``.error``) before raising it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.raw.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self.raw.flush()
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:  # tell, seek, fileno, ... of the real file
        return getattr(self.raw, name)


@contextlib.contextmanager
def atomic_file(path: str | Path, fsync: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file open for writing beside ``path``; on success it replaces ``path`` atomically.

    A write that fails (a full disk) raises its OSError even when the library writing through the file
    reports something else (torch's zip writer turns it into ``RuntimeError: ... unexpected pos``), so callers
    and the CLI see ENOSPC. ``fsync``: flush the data to the disk before the rename.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw:
            f = _KeepWriteError(raw)
            try:
                yield f  # type: ignore[misc]
                f.flush()
                if fsync:
                    os.fsync(raw.fileno())
            except Exception as e:
                if f.error is not None and not isinstance(e, OSError):
                    raise f.error from None
                raise


@contextlib.contextmanager
def new_folders(path: str | Path) -> Iterator[Path]:
    """Create folder ``path`` (and missing parents); if the block fails, remove those of them left empty.

    For writers of several files into a folder: each file is atomic, and a failure leaves no empty folder.
    """
    path = Path(path)
    missing = [p for p in [path, *path.parents] if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for folder in missing:  # deepest first; a folder holding anything stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically write bytes."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None (JSON null), numpy scalars and arrays as Python numbers and
    lists, tuples as lists; anything else unchanged (``to_json`` writes it with ``str``)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and type(obj).__module__ == "numpy":  # numpy scalar or array
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``obj`` (:func:`json_safe` first; ``kwargs`` go to ``json.dumps``)."""
    return json.dumps(json_safe(obj), allow_nan=False, default=str, **kwargs)


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented strict JSON (:func:`to_json`)."""
    write_text(path, to_json(obj, indent=2, sort_keys=False) + "\n")

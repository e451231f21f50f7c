"""Small file helpers shared by every artifact reader: JSON that must parse, and content hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def read_json(path: str | Path, fix: str) -> Any:
    """Parse a JSON file, or raise :class:`~plbench.errors.InputError` naming it.

    Args:
        path: the file.
        fix: what the user should do when it is missing or damaged.
    Raises:
        InputError: missing, unreadable, a folder, or not valid JSON.
    """
    from plbench.errors import InputError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, path.name, "the file does not exist", fix) from None
    except IsADirectoryError:
        raise InputError(path, path.name, "expected a file, but got a folder", fix) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, path.name, f"cannot be read ({e})", fix) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, path.name, f"not valid JSON ({e})", fix) from None


def sha256_file(*paths: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest over the bytes of the given files, in order (one file: its usual sha256)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()

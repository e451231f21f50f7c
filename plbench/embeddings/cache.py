"""On-disk cache of class embeddings, one entry per (class list, source, prompt template).

An entry is ``<key>.npy`` (float32 (C, D)) and ``<key>.json`` (what it holds), both written
atomically, the JSON last: an entry without its JSON is incomplete and ignored. The key is the
sha256 of the class names, the source identity (for a file: its resolved path, size and mtime, so
an edited file gets a new entry) and the prompt template.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from plbench.artifacts.atomic import atomic_path, write_json

CACHE_FORMAT = "plbench-class-embeddings"


def cache_key(class_names: Sequence[str], source: str, prompt: str | None) -> str:
    """sha256 hex digest of the class names (in order), the source identity and the prompt template."""
    blob = json.dumps({"classes": list(class_names), "source": source, "prompt": prompt}, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def read_cached(folder: Path, key: str, class_names: Sequence[str]) -> tuple[np.ndarray, dict[str, Any]] | None:
    """``(vectors, metadata)`` of a complete entry for these classes, else ``None``."""
    meta_path, data_path = folder / f"{key}.json", folder / f"{key}.npy"
    if not (meta_path.is_file() and data_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        vectors = np.load(data_path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # damaged entry: recomputed and rewritten
    if meta.get("format") != CACHE_FORMAT or meta.get("classes") != list(class_names) or \
            vectors.shape != (len(class_names), meta.get("dim")) or vectors.dtype != np.float32:
        return None
    return vectors, meta


def write_cached(folder: Path, key: str, vectors: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write an entry (data first, metadata last); returns the ``.npy`` path."""
    data_path = folder / f"{key}.npy"
    with atomic_path(data_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(vectors, dtype=np.float32))
    write_json(folder / f"{key}.json", {"format": CACHE_FORMAT, "dim": int(vectors.shape[1]), **meta})
    return data_path

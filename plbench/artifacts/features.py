"""Feature stores: a backbone's outputs over one dataset split, computed once, read row by row at training time.

The "linear" protocol (Cole et al., CVPR 2021) trains only the classifier on fixed features. A feature
store holds them for one split, in dataset order, so that many head-only trainings (losses x label
settings x seeds) share one pass of the backbone. Layout of a store folder::

    STORE/
      features.json   {"format": "plbench-features", "version": 1, "dataset", "split", "fingerprint",
                       "num_images": N, "num_features": D, "num_tokens": L or null, "backbone",
                       "weights": {"pretrained", "source", "checkpoint", "checkpoint_sha256"},
                       "image_size": S, "preprocessing": {"image_size", "mean", "std"},
                       "failed": [rows whose image did not decode], "image_ids_sha256",
                       "files": {name: {"bytes", "mtime_ns", "sha256"}}, "seconds", "plbench_version", ...}
      pooled.f16      raw float16 (N, D), C order: the tokens averaged (what the GAP head sees)
      tokens.f16      raw float16 (N, L, D), C order, only when tokens were asked for (ML-Decoder)
      image_ids.npy   (N,) the split's image ids, in row order

``plbench features extract --out DIR`` writes one store per split, ``DIR/<split>/``; ``DIR`` is what
``plbench train --features DIR`` takes (see :func:`store_folder`).

Writes are crash-safe in the same way as the image cache: any old ``features.json`` is removed first,
the data files are written to temp files and moved into place, and ``features.json`` comes last, so an
interrupted extraction leaves no index and is rejected on open. On open each data file must have the
recorded size and either the recorded mtime or, when that differs (a copy), the recorded sha256.

The data files are raw float16 arrays: :attr:`FeatureStore.pooled` / :attr:`FeatureStore.tokens` map
them (``np.memmap``) for analysis; training reads batches with :meth:`FeatureStore.read_rows` (positioned
reads: a memory map keeps every page it touched mapped and reads ahead around each random row, which on a
23 GB store grows the process's resident size by gigabytes of page cache).

Disk use is ``N * D * 2`` bytes pooled plus ``N * L * D * 2`` with tokens (OpenImages V6 train,
9M images, D = 1280: 23 GB pooled; tokens at 7 x 7 are 49 times that).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from plbench.artifacts.files import read_json, sha256_file
from plbench.artifacts.atomic import atomic_path, new_folders, write_json
from plbench.errors import InputError

log = logging.getLogger(__name__)

FORMAT = "plbench-features"
VERSION = 1
META_FILE = "features.json"
POOLED_FILE = "pooled.f16"
TOKENS_FILE = "tokens.f16"
IDS_FILE = "image_ids.npy"
FEATURE_DTYPE = np.float16
#: bytes kept free beyond the store itself when checking the disk (metadata, temp files, other writers)
DISK_MARGIN = 64 << 20
_REBUILD = "re-extract it with `plbench features extract`"

#: a batch for :func:`write_feature_store`: rows int (B,), pooled float (B, D), tokens float (B, L, D) or None
FeatureBatch = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def store_folder(features_dir: str | Path, split: str) -> Path:
    """The store of one split inside a features folder: ``FEATURES_DIR/<split>``."""
    return Path(features_dir) / split


def feature_bytes(num_images: int, num_features: int, num_tokens: int | None = None) -> int:
    """Bytes of the data files of a store: pooled (N, D) plus tokens (N, L, D) when ``num_tokens`` is set."""
    per_image = num_features * (1 + (num_tokens or 0))
    return int(num_images) * per_image * np.dtype(FEATURE_DTYPE).itemsize


def format_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KB"`` (powers of 1000, as disk sizes are sold)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def check_free_space(folder: str | Path, needed: int) -> None:
    """Refuse to start a write of ``needed`` bytes that the disk under ``folder`` cannot hold.

    Raises:
        InputError: free space < ``needed`` + :data:`DISK_MARGIN`.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed + DISK_MARGIN:
        raise InputError(folder, "disk space", f"the features need {format_bytes(needed)}, but only "
                         f"{format_bytes(free)} are free on that disk",
                         "free some space, pass another --out, or leave out --tokens (pooled features are "
                         "L times smaller)")


def _ids_digest(image_ids: np.ndarray) -> str:
    """sha256 of the image ids as text, one per line (independent of the array's dtype)."""
    h = hashlib.sha256()
    for start in range(0, len(image_ids), 1 << 16):
        h.update(("\n".join(str(x) for x in image_ids[start:start + (1 << 16)]) + "\n").encode())
    return h.hexdigest()


def _plain_ids(image_ids: Sequence | np.ndarray) -> np.ndarray:
    ids = np.asarray(image_ids)
    return ids.astype(str) if ids.dtype == object else ids


def _runs(sorted_rows: np.ndarray) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` positions of the runs of consecutive values in sorted int (B,) rows."""
    breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    bounds = [0, *breaks.tolist(), len(sorted_rows)]
    return zip(bounds[:-1], bounds[1:])


class _RowFile:
    """Rows of a raw float16 file read and written with positioned I/O (``os.preadv``/``os.pwrite``).

    Neither direction maps the file: a process's memory holds one batch, never pages of the file (a
    memory map keeps every page it touched mapped, and reads ahead around each random row).
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...], writable: bool = False) -> None:
        self.path, self.row_shape = path, tuple(row_shape)
        self.row_bytes = int(np.prod(row_shape)) * np.dtype(FEATURE_DTYPE).itemsize
        self.fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Store float16 (B, *row_shape) ``values`` at ``rows``; consecutive rows go in one call."""
        if len(rows) > 1 and not (np.diff(rows) > 0).all():  # extraction hands rows in order: no copy then
            order = np.argsort(rows, kind="stable")
            rows, values = rows[order], values[order]
        values = np.ascontiguousarray(values)
        for a, b in _runs(rows):
            data = memoryview(values[a:b]).cast("B")
            offset = int(rows[a]) * self.row_bytes
            while data:  # pwrite may write less than asked
                n = os.pwrite(self.fd, data, offset)
                data, offset = data[n:], offset + n

    def read(self, rows: np.ndarray) -> np.ndarray:
        """float16 (B, *row_shape) at ``rows`` (any order, repeats allowed); consecutive rows in one call."""
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        buf = np.empty((len(rows),) + self.row_shape, dtype=FEATURE_DTYPE)
        for a, b in _runs(sorted_rows):
            view = memoryview(buf[a:b]).cast("B")
            offset = int(sorted_rows[a]) * self.row_bytes
            while view:
                n = os.preadv(self.fd, [view], offset)
                if n == 0:
                    raise InputError(self.path, "size", "the data file ended early", _REBUILD)
                view, offset = view[n:], offset + n
        out = np.empty_like(buf)
        out[order] = buf
        return out


@contextlib.contextmanager
def _data_file(path: Path, shape: tuple[int, ...]) -> Iterator[tuple[Path, _RowFile]]:
    """A zero-filled float16 temp file of ``shape`` beside ``path``, open for positioned writes; moved
    into place on success, removed on error."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.truncate(int(np.prod(shape)) * np.dtype(FEATURE_DTYPE).itemsize)  # sparse: no zeros written
        out = _RowFile(tmp, shape[1:], writable=True)
        try:
            yield tmp, out
            os.fsync(out.fd)
        finally:
            out.close()


def write_feature_store(
    root: str | Path,
    batches: Iterable[FeatureBatch],
    *,
    num_images: int,
    num_features: int,
    num_tokens: int | None,
    image_ids: Sequence | np.ndarray,
    meta: dict[str, Any],
) -> "FeatureStore":
    """Write a store folder from batches of features (any order; rows never given are recorded as failed).

    Args:
        root: the store folder (created); an existing store there is replaced.
        batches: ``(rows int (B,), pooled float (B, D), tokens float (B, L, D) or None)``; values are
            stored as float16.
        num_images: N, rows of the store (the split's images, in dataset order).
        num_features: D.
        num_tokens: L, or None for a pooled-only store (then every batch's tokens must be None).
        image_ids: (N,) the split's image ids in row order.
        meta: provenance merged into ``features.json``: dataset, split, fingerprint, backbone, weights,
            image_size, preprocessing, plbench_version, and anything else JSON-able.
    Returns:
        The opened :class:`FeatureStore`.
    Raises:
        InputError: the disk cannot hold the store (checked before anything is written).
        ValueError: inconsistent shapes, rows out of range, or values outside the float16 range
            (the message names the row); nothing is left behind.
    """
    root = Path(root)
    ids = _plain_ids(image_ids)
    if len(ids) != num_images:
        raise ValueError(f"expected {num_images} image ids, but got {len(ids)}")
    needed = feature_bytes(num_images, num_features, num_tokens)
    log.info("writing %s of features (%d images x %d%s) to %s", format_bytes(needed), num_images, num_features,
             f" x {num_tokens} tokens" if num_tokens else "", root)
    check_free_space(root, needed)
    (root / META_FILE).unlink(missing_ok=True)  # the old index must never describe the new data files
    if num_tokens is None:
        (root / TOKENS_FILE).unlink(missing_ok=True)
    written = np.zeros(num_images, dtype=bool)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(new_folders(root))  # created here; removed again if the extraction fails
        pooled_tmp, pooled = stack.enter_context(_data_file(root / POOLED_FILE, (num_images, num_features)))
        tokens_tmp = tokens = None
        if num_tokens is not None:
            tokens_tmp, tokens = stack.enter_context(
                _data_file(root / TOKENS_FILE, (num_images, num_tokens, num_features)))
        for rows, pooled_batch, tokens_batch in batches:
            rows = np.asarray(rows, dtype=np.int64)
            _check_batch(rows, pooled_batch, tokens_batch, num_images, num_features, num_tokens)
            with np.errstate(over="ignore"):  # overflow becomes inf, reported by _check_finite
                p16 = np.asarray(pooled_batch).astype(FEATURE_DTYPE)
                t16 = None if tokens is None else np.asarray(tokens_batch).astype(FEATURE_DTYPE)
            _check_finite(p16, rows)
            pooled.write(rows, p16)
            if tokens is not None:
                _check_finite(t16, rows)
                tokens.write(rows, t16)
            written[rows] = True
        files = {POOLED_FILE: _record(pooled_tmp)}
        if tokens_tmp is not None:
            files[TOKENS_FILE] = _record(tokens_tmp)
    for name in files:  # os.replace keeps the mtime; record it from the final path to be safe
        files[name]["mtime_ns"] = (root / name).stat().st_mtime_ns
    with atomic_path(root / IDS_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, ids, allow_pickle=False)
    failed = np.flatnonzero(~written).tolist()
    if failed:
        log.warning("%d of %d images have no features (undecodable; first row %d): they are skipped in training",
                    len(failed), num_images, failed[0])
    index = {
        "format": FORMAT, "version": VERSION, **meta,
        "num_images": int(num_images), "num_features": int(num_features),
        "num_tokens": None if num_tokens is None else int(num_tokens), "dtype": "float16",
        "failed": failed, "image_ids_sha256": _ids_digest(ids), "files": files,
        "seconds": round(time.perf_counter() - t0, 3),  # producing and writing the batches (the extraction)
    }
    write_json(root / META_FILE, index)
    return FeatureStore.open(root)


def _record(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}


def _check_batch(rows: np.ndarray, pooled: np.ndarray, tokens: np.ndarray | None, n: int, d: int,
                 num_tokens: int | None) -> None:
    b = len(rows)
    if rows.ndim != 1 or (b and (rows.min() < 0 or rows.max() >= n)):
        raise ValueError(f"expected rows in [0, {n}), but got {rows.min() if b else ''}..{rows.max() if b else ''}")
    if tuple(np.shape(pooled)) != (b, d):
        raise ValueError(f"expected pooled features ({b}, {d}), but got {tuple(np.shape(pooled))}")
    if num_tokens is None:
        if tokens is not None:
            raise ValueError("got tokens for a pooled-only store (num_tokens=None)")
    elif tokens is None or tuple(np.shape(tokens)) != (b, num_tokens, d):
        raise ValueError(f"expected tokens ({b}, {num_tokens}, {d}), but got "
                         f"{None if tokens is None else tuple(np.shape(tokens))}")


def _check_finite(values: np.ndarray, rows: np.ndarray) -> None:
    bad = ~np.isfinite(values.reshape(len(rows), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"features of row {int(rows[np.argmax(bad)])} are not finite in float16 (|x| > 65504 "
                         "or NaN): this backbone's features do not fit the store's dtype")


@dataclass
class FeatureStore:
    """An opened store folder (module docstring). Open with :meth:`open`; arrays map lazily, per process.

    Attributes:
        root: the store folder.
        meta: the parsed ``features.json``.
    """

    root: Path
    meta: dict[str, Any]
    _pooled: np.ndarray | None = field(default=None, repr=False)
    _tokens: np.ndarray | None = field(default=None, repr=False)
    _ok: np.ndarray | None = field(default=None, repr=False)
    _files: dict[str, _RowFile] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: str | Path) -> "FeatureStore":
        """Open and validate a store folder.

        Raises:
            InputError: no ``features.json`` (never written, or an interrupted extraction), another format,
                or a data file that is not the one the index describes (size, then mtime or sha256).
        """
        root = Path(root)
        index_path = root / META_FILE
        if not index_path.is_file():
            raise InputError(root, META_FILE, "expected a feature store, but found no features.json (not "
                             "extracted, or the extraction was interrupted)", _REBUILD)
        meta = read_json(index_path, _REBUILD)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise InputError(index_path, "format", f"expected {FORMAT} version {VERSION}, but got "
                             f"{meta.get('format')!r} version {meta.get('version')!r}", _REBUILD)
        n, d, nt = meta["num_images"], meta["num_features"], meta["num_tokens"]
        expected = {POOLED_FILE: feature_bytes(n, d)}
        if nt is not None:
            expected[TOKENS_FILE] = feature_bytes(n, d, nt) - feature_bytes(n, d)
        for name, want in expected.items():
            _check_data_file(root / name, (meta.get("files") or {}).get(name) or {}, want)
        if not (root / IDS_FILE).is_file():
            raise InputError(root / IDS_FILE, IDS_FILE, "the file does not exist", _REBUILD)
        return cls(root=root, meta=meta)

    # -- shape and provenance -------------------------------------------------------------------
    @property
    def num_images(self) -> int:
        return int(self.meta["num_images"])

    @property
    def num_features(self) -> int:
        return int(self.meta["num_features"])

    @property
    def num_tokens(self) -> int | None:
        nt = self.meta["num_tokens"]
        return None if nt is None else int(nt)

    @property
    def has_tokens(self) -> bool:
        return self.num_tokens is not None

    @property
    def backbone(self) -> str:
        return str(self.meta["backbone"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def nbytes(self) -> int:
        return feature_bytes(self.num_images, self.num_features, self.num_tokens)

    # -- data -----------------------------------------------------------------------------------
    @property
    def pooled(self) -> np.ndarray:
        """Read-only float16 memmap (N, D)."""
        if self._pooled is None:
            self._pooled = np.memmap(self.root / POOLED_FILE, dtype=FEATURE_DTYPE, mode="r",
                                     shape=(self.num_images, self.num_features))
        return self._pooled

    @property
    def tokens(self) -> np.ndarray:
        """Read-only float16 memmap (N, L, D).

        Raises:
            InputError: the store was extracted without tokens.
        """
        self.require_tokens()
        if self._tokens is None:
            self._tokens = np.memmap(self.root / TOKENS_FILE, dtype=FEATURE_DTYPE, mode="r",
                                     shape=(self.num_images, self.num_tokens, self.num_features))
        return self._tokens

    def require_tokens(self) -> None:
        """Raise unless the store holds the spatial tokens.

        Raises:
            InputError: the store was extracted without tokens (the fix says how to get them).
        """
        if self.num_tokens is None:
            raise InputError(self.root, "tokens", "this store holds pooled features only",
                             "re-extract with `plbench features extract --tokens` (needed by the ml-decoder head)")

    @property
    def ok(self) -> np.ndarray:
        """Read-only bool (N,): True where the image decoded and has features."""
        if self._ok is None:
            mask = np.ones(self.num_images, dtype=bool)
            mask[np.asarray(self.meta.get("failed", []), dtype=np.int64)] = False
            mask.flags.writeable = False
            self._ok = mask
        return self._ok

    def read_rows(self, rows: Sequence[int] | np.ndarray, *, tokens: bool = False) -> np.ndarray:
        """float16 (B, D) pooled rows, or (B, L, D) token rows, in the order of ``rows`` (positioned reads:
        memory holds the batch only, whatever the store's size; use this in training loops).

        Raises:
            InputError: ``tokens`` on a pooled-only store.
        """
        if tokens:
            self.require_tokens()
        name = TOKENS_FILE if tokens else POOLED_FILE
        if name not in self._files:  # opened lazily, in each DataLoader worker
            shape = (self.num_tokens, self.num_features) if tokens else (self.num_features,)
            self._files[name] = _RowFile(self.root / name, shape)
        index = np.asarray(rows, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.num_images):
            raise IndexError(f"expected rows in [0, {self.num_images}), but got {index.min()}..{index.max()}")
        return self._files[name].read(index)

    def close(self) -> None:
        """Close the files :meth:`read_rows` opened (memory maps close with the object)."""
        for f in self._files.values():
            f.close()
        self._files.clear()

    def image_ids(self) -> np.ndarray:
        """(N,) image ids in row order (read from ``image_ids.npy``)."""
        return np.load(self.root / IDS_FILE, allow_pickle=False)

    # -- checks ---------------------------------------------------------------------------------
    def check(
        self,
        *,
        dataset: str | None = None,
        split: str | None = None,
        fingerprint: str | None = None,
        image_ids: Sequence | np.ndarray | None = None,
        backbone: str | None = None,
        image_size: int | None = None,
        pretrained: bool | None = None,
        checkpoint_sha256: str | None = None,
    ) -> None:
        """Raise if the store was not made from what the caller is about to use it for (None: not checked).

        ``image_ids`` may be a prefix of the store's ids (a run on the first N training images).

        Raises:
            InputError: naming the first field that differs, with both values.
        """
        m = self.meta
        weights = m.get("weights") or {}
        pairs = [("dataset", dataset, m.get("dataset")), ("split", split, m.get("split")),
                 ("fingerprint", fingerprint, m.get("fingerprint")), ("backbone", backbone, m.get("backbone")),
                 ("image_size", image_size, m.get("image_size")),
                 ("pretrained", pretrained, weights.get("pretrained")),
                 ("checkpoint_sha256", checkpoint_sha256, weights.get("checkpoint_sha256"))]
        for name, want, got in pairs:
            if want is not None and want != got:
                what = "the dataset's annotation files changed since" if name == "fingerprint" else "it differs from"
                raise InputError(self.root / META_FILE, name, f"the features were extracted with {name} {got!r}, "
                                 f"but this run uses {want!r} ({what} the extraction)",
                                 f"pass --{name.replace('_', '-')} {got} to match the features, or {_REBUILD}"
                                 if name in ("backbone", "image_size") else _REBUILD + " for this data and weights")
        if image_ids is not None:
            ids = _plain_ids(image_ids)
            stored = self.image_ids()
            if len(ids) > len(stored):
                raise InputError(self.root / IDS_FILE, "image_ids", f"expected at most {len(stored)} images, but the "
                                 f"run has {len(ids)}", _REBUILD)
            head = stored[: len(ids)]
            if head.dtype != ids.dtype:  # e.g. int ids stored, str ids given: compare as text
                head, ids = head.astype(str), ids.astype(str)
            differ = np.flatnonzero(head != ids)
            if differ.size:
                first = int(differ[0])
                raise InputError(self.root / IDS_FILE, "image_ids", f"row {first} holds image {str(head[first])!r} in "
                                 f"the features, but {str(ids[first])!r} in the run's labels (images added or removed?)",
                                 _REBUILD)

    def __getstate__(self) -> dict:
        # DataLoader workers receive the dataset by pickling: never ship mapped bytes
        state = dict(self.__dict__)
        state["_pooled"] = state["_tokens"] = None
        state["_files"] = {}
        return state


def _check_data_file(path: Path, recorded: dict[str, Any], want: int) -> None:
    st = path.stat() if path.is_file() else None
    if st is None or st.st_size != want:
        got = "no file" if st is None else f"{st.st_size} bytes"
        raise InputError(path, "size", f"expected {want} bytes, but got {got}", _REBUILD)
    if recorded.get("bytes") != want:
        raise InputError(path, "files", "features.json does not describe this data file", _REBUILD)
    if recorded.get("mtime_ns") == st.st_mtime_ns:
        return
    # a copy that did not keep times, or a file written after the index: the content decides
    if recorded.get("sha256") != sha256_file(path):
        raise InputError(path, "sha256", "the data file is not the one features.json describes (replaced, "
                         "edited or half-written)", _REBUILD)


__all__ = ["FeatureStore", "check_free_space", "feature_bytes", "format_bytes", "store_folder",
           "write_feature_store"]

"""Image decoding and the optional pre-resized image cache.

Decoding (:func:`load_image`) opens a file with PIL, applies the EXIF orientation and converts any
mode (grayscale, CMYK, palette, alpha) to RGB. A corrupt or truncated file raises
:class:`~plbench.errors.InputError` naming the file (``strict=True``) or returns ``None``
(``strict=False``; the caller counts it).

The cache (``plbench data cache --size 224``) stores every image of a split decoded and resized to
``size x size`` (aspect ratio not kept, as ``Resize((size, size))`` in the CSL/ASL training recipes)
in one uint8 file that is memory-mapped at read time, so training is not bound by JPEG decoding.
Layout of a cache folder::

    OUT/
      index.json   {"format": "plbench-image-cache", "version": 2, "size": S, "count": N,
                    "paths": [N image paths, in dataset order], "failed": [indices that did not decode],
                    "data": {"bytes": B, "mtime_ns": T, "sha256": H}}   (what images.u8 must be)
      images.u8    raw uint8 array (N, S, S, 3), C order; rows of failed images are zeros

``images.u8`` is written first (temp file, then ``os.replace``) and ``index.json`` last, after any
older index was removed, so an interrupted build leaves no index and is rejected. On open, the data
file must have the recorded size and either the recorded mtime (fast path) or, when it differs
(a copy that did not keep times), the recorded sha256: a data file that was replaced, edited or
half-written is rejected with an :class:`~plbench.errors.InputError`.

Use it from a torch ``DataLoader`` through :class:`plbench.engine.data.ImageLabelDataset` (the one torch
dataset of images; pass ``cache=ImageCache.open(OUT)``);
the memory map is re-opened lazily in each worker process, never pickled.
"""

from __future__ import annotations

import errno
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps

from plbench.artifacts.files import read_json, sha256_file
from plbench.artifacts.atomic import atomic_path, new_folders, write_json
from plbench.errors import InputError
from plbench.progress import Progress
from plbench.progress import progress as show_progress  # the name `progress` is the caller's on/off flag

log = logging.getLogger(__name__)

CACHE_FORMAT = "plbench-image-cache"
CACHE_VERSION = 2
INDEX_FILE = "index.json"
DATA_FILE = "images.u8"
# Errors PIL raises for unreadable, truncated or hostile files (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # direct P -> RGB would warn about the transparency key
    return img.convert("RGB")


def load_image(path: str | Path, strict: bool = True, draft_size: int | None = None) -> Image.Image | None:
    """Decode one image to RGB with its EXIF orientation applied.

    Args:
        path: image file (any format PIL reads; JPEG in practice).
        strict: on a corrupt, truncated or missing file raise instead of returning ``None``.
        draft_size: when set, let the JPEG decoder downscale by a power of two while keeping both
            sides >= this many pixels (much faster when the result is resized to that size anyway).

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``RGB`` (width, height after orientation), or
        ``None`` when ``strict=False`` and the file cannot be decoded (a warning is logged).

    Raises:
        InputError: ``strict=True`` and the file is missing or cannot be decoded.
    """
    try:
        with Image.open(path) as img:
            if draft_size is not None and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except _DECODE_ERRORS as e:
        problem = f"expected a decodable image, but got {type(e).__name__}: {e}"
        if strict:
            raise InputError(path, "image", problem,
                             "re-download the file, or run without --strict to skip and count it") from None
        log.warning("skipping %s: %s", path, problem)
        return None


def resize_square(img: Image.Image, size: int) -> np.ndarray:
    """Resize to ``size x size`` (bilinear, antialiased) and return uint8 (size, size, 3) HWC."""
    out = img.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.asarray(out, dtype=np.uint8)


# -- cache --------------------------------------------------------------------------------------------


def cache_folder(cache_root: str | Path, dataset: str, split: str, size: int) -> Path:
    """The cache of one split at one size: ``CACHE_ROOT/<dataset>-<split>-<size>``."""
    return Path(cache_root) / f"{dataset}-{split}-{size}"



def _decode_chunk(args: tuple[str, int, int, Sequence[str], int]) -> list[int]:
    """Worker: decode images ``start..start+len(paths)`` into the memmap; return failed indices."""
    data_path, count, size, paths, start = args
    arr = np.memmap(data_path, dtype=np.uint8, mode="r+", shape=(count, size, size, 3))
    failed = []
    for k, p in enumerate(paths):
        img = load_image(p, strict=False, draft_size=size)
        if img is None:
            failed.append(start + k)
            continue
        arr[start + k] = resize_square(img, size)
    arr.flush()
    del arr
    return failed


def build_image_cache(
    paths: Sequence[str | Path],
    size: int,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    chunk: int = 64,
    strict: bool = False,
    progress: bool = False,
) -> "ImageCache":
    """Decode and resize every image once into a memory-mappable cache folder.

    Args:
        paths: (N,) image files, in the order the dataset uses (cache row i = paths[i]).
        size: side of the square images, pixels (e.g. 224).
        out_dir: cache folder (created; an existing cache there is replaced atomically).
        workers: decoding processes (default: all CPUs; 0 or 1 decodes in this process).
        chunk: images per task.
        strict: raise for an undecodable image (after the pass, naming the first) instead of
            recording it in ``failed``.
        progress: show progress on stderr (:func:`plbench.progress.progress`: a bar on a terminal,
            plain lines otherwise).

    Returns:
        The opened :class:`ImageCache`. Disk use is N * size * size * 3 bytes
        (224 px: 150 KB per image, COCO train2017 ~18 GB).

    Raises:
        ValueError: ``size`` < 1.
        InputError: empty ``paths`` (a split without images), or ``strict=True`` and an image does
            not decode.
    """
    if size < 1:
        raise ValueError(f"expected size >= 1, but got {size}")
    paths = [str(p) for p in paths]
    if not paths:
        raise InputError(out_dir, "images", "expected at least one image to cache, but the list is empty",
                         "cache a split that lists images (check --split and --data-root)")
    out_dir = Path(out_dir)
    n = len(paths)
    if workers is None:
        workers = os.cpu_count() or 1
    failed: list[int] = []
    with new_folders(out_dir), atomic_path(out_dir / DATA_FILE) as tmp:
        # File of the final size: workers write their rows in place. The blocks are reserved first: a sparse
        # file on a disk without room for it would kill the workers with SIGBUS when they touch the mapping.
        with open(tmp, "wb") as f:
            f.truncate(n * size * size * 3)
            if n and hasattr(os, "posix_fallocate"):
                try:
                    os.posix_fallocate(f.fileno(), 0, n * size * size * 3)
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without it: stay sparse
                        raise OSError(e.errno, e.strerror, str(out_dir / DATA_FILE)) from None
        tasks = [(str(tmp), n, size, paths[i:i + chunk], i) for i in range(0, n, chunk)]
        with show_progress(total=n, desc="caching images", unit="img", enabled=progress, leave=True) as bar:
            if workers <= 1:
                failed = _collect(map(_decode_chunk, tasks), tasks, bar)
            else:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    failed = _collect(pool.map(_decode_chunk, tasks), tasks, bar)
        if failed and strict:  # raising here also discards the partial data file
            load_image(paths[min(failed)], strict=True)
        digest = sha256_file(tmp)
        # The old index must not survive to describe the new data file if we stop before the end.
        (out_dir / INDEX_FILE).unlink(missing_ok=True)
    if failed:
        log.warning("%d of %d images could not be decoded (first: %s); their cache rows are zeros",
                    len(failed), n, paths[failed[0]])
    st = (out_dir / DATA_FILE).stat()
    write_json(out_dir / INDEX_FILE, {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "size": size, "count": n,
        "paths": paths, "failed": sorted(failed),
        "data": {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest},
    })
    return ImageCache.open(out_dir)


def _collect(results: Any, tasks: list, bar: Progress) -> list[int]:
    failed: list[int] = []
    for task, f in zip(tasks, results):
        failed.extend(f)
        bar.update(len(task[3]))
    return failed


@dataclass
class ImageCache:
    """A built cache folder (see module docstring). Open with :meth:`open`.

    Attributes:
        root: the cache folder.
        size: side of the cached square images, pixels.
        paths: (N,) source image paths, row order.
        failed: indices of images that did not decode (their rows are zeros).
    """

    root: Path
    size: int
    paths: list[str]
    failed: list[int]
    _array: np.ndarray | None = field(default=None, repr=False)
    _lookup: dict[str, int] | None = field(default=None, repr=False)
    _ok: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def open(cls, root: str | Path, expected_paths: Sequence[str | Path] | None = None) -> "ImageCache":
        """Open a cache folder written by :func:`build_image_cache`.

        Args:
            expected_paths: when given, the cache must hold exactly these paths in this order.

        Raises:
            InputError: missing or foreign files, a data file that is not the one the index
                describes (truncated, replaced, half-written), or other paths than expected.
        """
        root = Path(root)
        index_path = root / INDEX_FILE
        fix = "rebuild it with `plbench data cache`"
        if not index_path.is_file():
            raise InputError(root, INDEX_FILE, "expected an image cache folder, but found no index.json", fix)
        index = read_json(index_path, fix)
        if index.get("format") != CACHE_FORMAT or index.get("version") != CACHE_VERSION:
            raise InputError(index_path, "format", f"expected {CACHE_FORMAT} version {CACHE_VERSION}, but got "
                             f"{index.get('format')!r} version {index.get('version')!r}", fix)
        size, n = int(index["size"]), int(index["count"])
        data = root / DATA_FILE
        want = n * size * size * 3
        if not data.is_file() or data.stat().st_size != want:
            got = data.stat().st_size if data.is_file() else "no file"
            raise InputError(data, "size", f"expected {want} bytes for {n} images of {size}px, but got {got}", fix)
        _check_data_file(data, index.get("data") or {}, want, fix)
        paths = [str(p) for p in index["paths"]]
        if expected_paths is not None and [str(p) for p in expected_paths] != paths:
            raise InputError(root, "paths", f"expected the {len(expected_paths)} images the dataset lists, in "
                             f"order, but the cache holds {n} other ones (another split, or the dataset changed)", fix)
        return cls(root=root, size=size, paths=paths, failed=[int(i) for i in index["failed"]])

    @property
    def array(self) -> np.ndarray:
        """Read-only uint8 memmap (N, S, S, 3), opened on first use in each process."""
        if self._array is None:
            self._array = np.memmap(self.root / DATA_FILE, dtype=np.uint8, mode="r",
                                    shape=(len(self.paths), self.size, self.size, 3))
        return self._array

    @property
    def ok(self) -> np.ndarray:
        """Read-only bool (N,): True where the image decoded (built once, then reused)."""
        if self._ok is None:
            mask = np.ones(len(self.paths), dtype=bool)
            mask[self.failed] = False
            mask.flags.writeable = False
            self._ok = mask
        return self._ok

    def __len__(self) -> int:
        return len(self.paths)

    def index_of(self, path: str | Path) -> int:
        """Row of ``path``; raises ``KeyError`` when the cache does not hold it."""
        if self._lookup is None:
            self._lookup = {p: i for i, p in enumerate(self.paths)}
        return self._lookup[str(path)]

    def get(self, key: int | str | Path) -> np.ndarray:
        """uint8 (S, S, 3) HWC copy of one image, by row index or source path."""
        i = key if isinstance(key, (int, np.integer)) else self.index_of(key)
        return np.array(self.array[i])

    def get_image(self, key: int | str | Path) -> Image.Image:
        """One cached image as an RGB ``PIL.Image`` (for torchvision/timm transforms)."""
        return Image.fromarray(self.get(key), mode="RGB")

    def __getstate__(self) -> dict:
        # DataLoader workers receive the dataset by pickling: never ship the mapped bytes.
        state = dict(self.__dict__)
        state["_array"] = None
        return state


def _check_data_file(data: Path, recorded: dict, want: int, fix: str) -> None:
    """Raise unless ``data`` is the file ``index.json`` describes (size, then mtime or sha256)."""
    if recorded.get("bytes") != want or not isinstance(recorded.get("sha256"), str):
        raise InputError(data.parent / INDEX_FILE, "data", f"expected the size ({want}) and sha256 of {DATA_FILE}, "
                         f"but got {recorded!r}", fix)
    if data.stat().st_mtime_ns == recorded.get("mtime_ns"):
        return
    # Times differ (a copy, or a rewrite): only the content can tell.
    log.info("%s: modification time differs from index.json; checking its sha256", data)
    got = sha256_file(data)
    if got != recorded["sha256"]:
        raise InputError(data, "sha256", f"expected the data file index.json describes (sha256 "
                         f"{recorded['sha256'][:12]}...), but got {got[:12]}... (replaced, edited or half-written)",
                         fix)


def collate_skip_none(batch: list) -> Any:
    """``collate_fn`` dropping the ``None`` items of undecodable images, then torch's default collate.

    Returns:
        The collated batch, or ``None`` when every item is ``None`` (the caller skips the batch).
    """
    from torch.utils.data import default_collate

    kept = [b for b in batch if b is not None]
    return default_collate(kept) if kept else None

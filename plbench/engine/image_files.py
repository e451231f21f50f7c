"""Image files given to ``plbench predict``: finding them, decoding them as the engine does, batching them.

Images get the run's own preprocessing: decoded to RGB with the EXIF orientation applied, resized to
S x S (bilinear, aspect ratio not kept) exactly as the training engine did, then ``(uint8 / 255 - mean) / std``.
An image that cannot be decoded is reported by position, never an exception (unless asked for).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from plbench.engine.data import decode_resized, normalize, to_chw
from plbench.engine.forward import LoaderBatch
from plbench.errors import InputError

#: file suffixes a folder given to :func:`list_images` is searched for (case-insensitive)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named by ``inputs``: a file is taken as is, a folder is searched recursively.

    Folders contribute files whose suffix is in :data:`IMAGE_SUFFIXES`, sorted by path; the order of
    ``inputs`` is kept, and a file named twice is listed once.

    Raises:
        InputError: a path that does not exist, or no image at all.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.exists():
            found = [item]
        else:
            raise InputError(item, "IMAGE_OR_FOLDER", "no such file or folder", "pass image files or folders of images")
        for p in found:
            if p not in seen:
                seen.add(p)
                out.append(p)
    if not out:
        raise InputError(None, "IMAGE_OR_FOLDER", f"no image file ({', '.join(IMAGE_SUFFIXES)}) under "
                         f"{', '.join(map(str, inputs))}", "pass image files or folders holding images")
    return out


def load_pixels(path: str | Path, image_size: int, strict: bool = True) -> torch.Tensor | None:
    """One image file decoded and resized as the engine does: uint8 (3, S, S); None for an undecodable
    file when not ``strict``."""
    pixels = decode_resized(str(path), int(image_size), strict=strict)
    return None if pixels is None else to_chw(pixels)


def preprocess(images: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """Model input from uint8 images (B, 3, S, S): float32 ``(x / 255 - mean) / std`` (the engine's own code)."""
    return normalize(images, preprocessing["mean"], preprocessing["std"])


class ImageFiles(Dataset):
    """Items ``(image uint8 (3, S, S) or None, index)``: undecodable files give None, never an exception."""

    def __init__(self, paths: Sequence[str | Path], image_size: int) -> None:
        self.paths = [str(p) for p in paths]
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int]:
        return load_pixels(self.paths[index], self.image_size, strict=False), index


def collate_images(items: list[tuple[torch.Tensor | None, int]]) -> LoaderBatch:
    """``collate_fn`` of :class:`ImageFiles`: the decoded images uint8 (b, 3, S, S) (None when none decoded),
    their int64 (b,) positions, and the positions of the undecodable ones in ``failed``."""
    ok = [(x, i) for x, i in items if x is not None]
    images = torch.stack([x for x, _ in ok]) if ok else None
    return LoaderBatch(images, np.asarray([i for _, i in ok], np.int64), None, [i for x, i in items if x is None])

"""Torch datasets over a split's image paths and a ``PartialLabels`` store.

Augmentation randomness is derived from (seed, epoch, index), never from global RNG state, so a
resumed run sees exactly the samples an uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from plbench.labels import PartialLabels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode_resized(path: str, size: int) -> np.ndarray:
    """Decode an image (EXIF orientation applied, RGB) and resize it to uint8 (size, size, 3)."""
    from plbench.datasets.images import load_image

    image = load_image(path)
    return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> normalised float32 (3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


class ImageLabelDataset(Dataset):
    """Items are ``(image float32 (3, S, S), labels int8 (C,), index int)``.

    Args:
        paths: (N,) image paths aligned with ``labels`` rows.
        labels: the label store (dense or sparse); rows are fetched per item.
        image_size: square side S in pixels.
        train: apply augmentation (random horizontal flip) when true.
        seed: base seed of the augmentation.
        preload: decode and resize every image once into a uint8 (N, S, S, 3) array.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: PartialLabels,
        image_size: int,
        *,
        train: bool,
        seed: int = 0,
        preload: bool = False,
    ) -> None:
        if len(paths) != labels.num_images:
            raise ValueError(f"{len(paths)} image paths but {labels.num_images} label rows")
        self.paths = list(paths)
        self.labels = labels
        self.image_size = image_size
        self.train = train
        self.seed = seed
        self.epoch = 0
        self._pixels: np.ndarray | None = None
        if preload:
            self._pixels = np.stack([decode_resized(p, image_size) for p in self.paths]) if self.paths else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def pixels(self, index: int) -> np.ndarray:
        if self._pixels is not None:
            return self._pixels[index]
        return decode_resized(self.paths[index], self.image_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        pixels = self.pixels(index)
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            if rng.random() < 0.5:
                pixels = pixels[:, ::-1]
        labels = torch.from_numpy(self.labels.batch([index])[0])
        return to_tensor(pixels), labels, index


def epoch_order(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of an epoch: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng((seed, epoch, 0x5EED)).permutation(num_items)

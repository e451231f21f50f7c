"""The torch dataset of training and validation images, and the batch preparation on the device.

Items leave the loader as uint8 images (3, S, S); :func:`normalize` turns a batch into the model's
input on the device (cheaper to move, and the normalisation runs where the model runs). Augmentation
randomness is derived from (seed, epoch, index), never from global RNG state, so a resumed run sees
exactly the samples an uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from plbench.engine.transforms import train_augment
from plbench.errors import InputError
from plbench.labels import PartialLabels

if TYPE_CHECKING:
    from plbench.datasets.images import ImageCache

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the item of :class:`ImageLabelDataset`: image uint8 (3, S, S), labels int8 (C,), dataset index
Item = tuple[torch.Tensor, torch.Tensor, int]


def decode_resized(path: str, size: int, strict: bool = True) -> np.ndarray | None:
    """Decode an image (EXIF orientation applied, RGB) and resize it to uint8 (size, size, 3).

    Returns None for an undecodable file when ``strict`` is false (the loader logs it).
    """
    from plbench.datasets.images import load_image, resize_square

    image = load_image(path, strict=strict, draft_size=size)
    return None if image is None else resize_square(image, size)


def to_chw(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> uint8 (3, H, W), contiguous."""
    # the transposed copy is always a new, writable array (cache rows are read-only memory maps)
    return torch.from_numpy(np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8).transpose(2, 0, 1)))


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Model input from a batch: uint8 (B, 3, S, S) -> float32 ((x / 255) - mean) / std.

    Float batches (cached features) pass through as float32 unchanged.
    """
    if images.dtype != torch.uint8:
        return images.float()
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255.0) - m) / s


class ImageLabelDataset(Dataset):
    """Items are ``(image uint8 (3, S, S), labels int8 (C,), index int)``, or None for an image that
    cannot be decoded when ``strict`` is false (use :func:`plbench.datasets.images.collate_skip_none`).

    Args:
        paths: (N,) image paths aligned with ``labels`` rows.
        labels: the label store (dense or sparse); rows are fetched per item.
        image_size: square side S in pixels.
        train: apply the ``augment`` augmentation when true.
        augment: a :class:`plbench.choices.Augment` value.
        seed: base seed of the augmentation.
        preload: decode and resize every image once into memory (small datasets).
        cache: a pre-resized :class:`plbench.datasets.images.ImageCache` of exactly these paths at size S.
        strict: an undecodable image raises instead of being skipped.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: PartialLabels,
        image_size: int,
        *,
        train: bool,
        augment: str = "flip",
        seed: int = 0,
        preload: bool = False,
        cache: "ImageCache | None" = None,
        strict: bool = False,
    ) -> None:
        if len(paths) != labels.num_images:
            raise ValueError(f"{len(paths)} image paths but {labels.num_images} label rows")
        self.paths = [str(p) for p in paths]
        self.labels = labels
        self.image_size = image_size
        self.train = train
        self.augment = augment
        self.seed = seed
        self.strict = strict
        self.epoch = 0
        self.cache = cache
        self._cache_ok: np.ndarray | None = None
        if cache is not None:
            # a prefix is fine: --max-train-images keeps the first N images of the cached split
            if cache.paths[: len(self.paths)] != self.paths or cache.size != image_size:
                raise InputError(
                    cache.root, "index.json", f"the image cache holds other images or another size than the "
                    f"{len(self.paths)} images at {image_size} px asked for",
                    "rebuild it with `plbench data cache` for this split and --image-size",
                )
            self._cache_ok = np.asarray(cache.ok, dtype=bool)
        self._pixels: list[np.ndarray | None] | None = None
        if preload and cache is None:
            self._pixels = [decode_resized(p, image_size, strict) for p in self.paths]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def empty_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of no images: uint8 (0, 3, S, S), labels int8 (0, C) (a process's empty share of a global
        batch under torchrun)."""
        s = self.image_size
        return torch.zeros(0, 3, s, s, dtype=torch.uint8), torch.zeros(0, self.labels.num_classes, dtype=torch.int8)

    def __len__(self) -> int:
        return len(self.paths)

    def pixels(self, index: int) -> np.ndarray | None:
        if self.cache is not None:
            if self._cache_ok[index]:  # type: ignore[index]
                return self.cache.get(index)
            if self.strict:
                raise InputError(self.paths[index], "image", "the image cache recorded this file as undecodable",
                                 "re-download the file and rebuild the cache, or run without --strict")
            return None
        if self._pixels is not None:
            return self._pixels[index]
        return decode_resized(self.paths[index], self.image_size, self.strict)

    def __getitem__(self, key: int | tuple[int, int]) -> Item | None:
        """``key``: an index, or ``(epoch, index)`` from :class:`EpochBatchSampler` (so persistent loader
        workers know the epoch without shared state)."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        pixels = self.pixels(index)
        if pixels is None:
            return None
        if self.train:
            pixels = train_augment(pixels, np.random.default_rng((self.seed, epoch, index)), self.augment)
        labels = torch.from_numpy(self.labels.batch([index])[0])
        return to_chw(pixels), labels, index


def epoch_order(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of an epoch: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng((seed, epoch, 0x5EED)).permutation(num_items)


def train_batch_count(num_items: int, batch_size: int) -> tuple[int, int]:
    """(images used per epoch, optimizer steps per epoch).

    A last batch of a single image is dropped: BatchNorm cannot train on it.
    """
    used = num_items - 1 if num_items > 1 and num_items % batch_size == 1 else num_items
    return used, max(1, -(-used // batch_size))


def iter_epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int, *, start_batch: int = 0,
                       rank: int = 0, world_size: int = 1) -> Iterator[list[int]]:
    """The batches of dataset indices one process reads in an epoch, in order, one at a time.

    The global batch sequence is that of a single process: global batch ``b`` is
    ``order[b * batch_size:(b + 1) * batch_size]`` of :func:`epoch_order`. With ``world_size`` processes,
    ``batch_size`` is the global batch and rank ``r`` reads the ``r``-th of ``world_size`` contiguous
    slices of every global batch (split as evenly as possible, as ``np.array_split``). ``start_batch`` skips
    the global batches already done (resume inside an epoch). Lazy: a 9M-image epoch is never held as
    Python lists.
    """
    used, steps = train_batch_count(num_items, batch_size)
    order = epoch_order(num_items, seed, epoch)[:used]
    for b in range(start_batch, steps):
        yield np.array_split(order[b * batch_size:(b + 1) * batch_size], world_size)[rank].tolist()


def epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int, *, start_batch: int = 0,
                  rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """:func:`iter_epoch_batches` as a list."""
    return list(iter_epoch_batches(num_items, batch_size, seed, epoch, start_batch=start_batch, rank=rank,
                                   world_size=world_size))


class EpochBatchSampler(Sampler[list]):
    """Batch sampler of the training loader: :func:`iter_epoch_batches` of the epoch set by :meth:`set_epoch`.

    One loader (with persistent workers) serves every epoch. With ``with_epoch`` the batches hold
    ``(epoch, index)`` keys, which datasets that augment (:class:`ImageLabelDataset`) read the epoch from.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1,
                 with_epoch: bool = False) -> None:
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size, self.with_epoch = rank, world_size, with_epoch
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[list]:
        for batch in iter_epoch_batches(self.num_items, self.batch_size, self.seed, self.epoch,
                                        start_batch=self.start_batch, rank=self.rank, world_size=self.world_size):
            yield [(self.epoch, i) for i in batch] if self.with_epoch else batch

    def batch_sizes(self) -> list[int]:
        """The sizes of this process's remaining batches of the epoch, without drawing the order."""
        used, steps = train_batch_count(self.num_items, self.batch_size)
        sizes = []
        for b in range(self.start_batch, steps):
            n = min(self.batch_size, used - b * self.batch_size)
            sizes.append(n // self.world_size + (1 if self.rank < n % self.world_size else 0))
        return sizes

    def __len__(self) -> int:
        return train_batch_count(self.num_items, self.batch_size)[1] - self.start_batch

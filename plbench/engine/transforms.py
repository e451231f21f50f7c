"""Training-image augmentation: pure functions of uint8 (H, W, 3) arrays and a numpy Generator.

Every random choice comes from the ``numpy.random.Generator`` passed in (the engine derives one per
(run seed, epoch, image index)), so a resumed run augments exactly as an uninterrupted one. Outputs stay
uint8 (H, W, 3): the loader ships uint8 batches and normalisation happens on the device.

Two augmentations (:class:`plbench.choices.Augment`):

- ``flip``: a horizontal flip with probability 0.5 (plbench's original behaviour, unchanged).
- ``cutout-randaugment``: the CSL authors' training transforms after the square resize (their
  ``get_data.py``: ``Resize``, ``CutoutPIL(cutout_factor=0.5)``, ``RandAugment()``, ``ToTensor``; no flip):
  :func:`cutout`, then torchvision's ``RandAugment`` with its default parameters (2 operations, magnitude 9
  of 31 bins, nearest interpolation). The authors used the ``randaugment`` pip package; its operation list
  differs slightly from torchvision's, which plbench uses as the issue asks.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import RandAugment

from plbench.choices import Augment

#: Cutout's rectangle side as a fraction of the image side (the CSL authors' ``cutout_factor``)
CUTOUT_FACTOR = 0.5

# stateless: its parameters are fixed and each call draws from torch's RNG, seeded per image below
_RAND_AUGMENT = RandAugment()


def _check_image(pixels: np.ndarray) -> None:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, but got {pixels.dtype} {pixels.shape}")


def cutout(pixels: np.ndarray, rng: np.random.Generator, factor: float = CUTOUT_FACTOR) -> np.ndarray:
    """Fill one rectangle of random RGB colour, centred at a uniformly random pixel, clipped to the image.

    The rectangle has sides ``h = round(factor * H)`` and ``w = round(factor * W)`` (halves rounded up).
    Centred at pixel (cy, cx), it covers rows ``cy - h // 2 .. cy - h // 2 + h - 1`` and columns likewise
    (for an even side the centre is the pixel just after the middle), intersected with the image: near a
    border only the part inside the image is filled.

    Args:
        pixels: uint8 (H, W, 3); not modified (it may be a read-only cache).
        rng: draws, in this order, cy in [0, H), cx in [0, W), then the colour: 3 integers in [0, 255].
        factor: side as a fraction of the image side, in (0, 1].
    Returns:
        uint8 (H, W, 3), a new array.
    Raises:
        ValueError: not a uint8 (H, W, 3) image, or ``factor`` outside (0, 1].
    """
    _check_image(pixels)
    if not 0 < factor <= 1:
        raise ValueError(f"expected a cutout factor in (0, 1], but got {factor}")
    height, width = pixels.shape[:2]
    side_h, side_w = int(factor * height + 0.5), int(factor * width + 0.5)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    colour = rng.integers(0, 256, size=3).astype(np.uint8)
    top, left = cy - side_h // 2, cx - side_w // 2
    out = pixels.copy()
    out[max(top, 0):max(top + side_h, 0), max(left, 0):max(left + side_w, 0)] = colour
    return out


def rand_augment(pixels: np.ndarray, seed: int) -> np.ndarray:
    """torchvision's ``RandAugment()`` (default parameters) with its randomness from ``seed`` only.

    RandAugment draws from torch's global RNG; it runs here inside ``torch.random.fork_rng`` seeded with
    ``seed``, so the caller's global RNG state is left as it was. Runs on a PIL image, as the CSL authors'
    pipeline does (about twice as fast as the tensor path on CPU).

    Args:
        pixels: uint8 (H, W, 3); not modified.
        seed: in [0, 2**63).
    Returns:
        uint8 (H, W, 3), a new array.
    """
    _check_image(pixels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        image = _RAND_AUGMENT(Image.fromarray(pixels))
    return np.asarray(image, dtype=np.uint8).copy()


def train_augment(pixels: np.ndarray, rng: np.random.Generator, augment: Augment | str) -> np.ndarray:
    """Augment one training image.

    Args:
        pixels: uint8 (S, S, 3) (any H, W works), already resized; not modified.
        rng: the only source of randomness (e.g. ``np.random.default_rng((seed, epoch, index))``).
        augment: an :class:`~plbench.choices.Augment` member or value:
            ``flip``: ``rng.random() < 0.5`` flips left-right (one draw; the result may be a view of ``pixels``);
            ``cutout-randaugment``: :func:`cutout`, then :func:`rand_augment` seeded by the next draw
            ``rng.integers(2**63)``.
    Returns:
        uint8 array of the input's shape. Same rng state, same output.
    Raises:
        ValueError: an unknown augmentation (lists the allowed values) or not a uint8 (H, W, 3) image.
    """
    augment = Augment.parse(augment)
    if augment is Augment.FLIP:
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        return pixels
    if augment is Augment.CUTOUT_RANDAUGMENT:
        pixels = cutout(pixels, rng)
        return rand_augment(pixels, int(rng.integers(2**63 - 1)))
    raise ValueError(f"augmentation {augment.value!r} is not implemented")  # a new Augment member

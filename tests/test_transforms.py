"""Training augmentation: Cutout against its definition, seeding, and the unchanged flip rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import RandAugment

from plbench.choices import Augment
from plbench.engine.transforms import cutout, rand_augment, train_augment


class FixedRng:
    """Stands in for a Generator: integers() returns the queued values (cy, cx, then the colour)."""

    def __init__(self, *values):
        self.values = list(values)

    def integers(self, low, high=None, size=None):
        v = self.values.pop(0)
        return np.asarray(v) if size is not None else v


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    # values 0..199 only, so a fill colour drawn above 200 can never be mistaken for untouched pixels
    return np.random.default_rng(seed).integers(0, 200, size=(h, w, 3), dtype=np.uint8)


def _filled(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return (before != after).any(axis=2)


@pytest.mark.parametrize("cy,cx,rows,cols", [
    (100, 80, (44, 156), (24, 136)),  # inside: 112 x 112 from centre - 56 to centre + 55
    (0, 0, (0, 56), (0, 56)),  # top-left corner: clipped to the lower-right quarter
    (223, 223, (167, 224), (167, 224)),  # bottom-right corner: 57 rows and columns remain
    (5, 220, (0, 61), (164, 224)),
])
def test_cutout_is_one_rectangle_of_one_colour(cy, cx, rows, cols):
    x = _image(224, 224)
    y = cutout(x, FixedRng(cy, cx, [201, 230, 255]))
    expected = np.zeros((224, 224), bool)
    expected[rows[0]:rows[1], cols[0]:cols[1]] = True
    assert np.array_equal(_filled(x, y), expected)
    assert (y[expected] == [201, 230, 255]).all()
    assert np.array_equal(y[~expected], x[~expected])  # the rest untouched
    assert y.dtype == np.uint8 and y.shape == x.shape


@pytest.mark.parametrize("h,w,side_h,side_w", [(224, 224, 112, 112), (64, 64, 32, 32), (7, 9, 4, 5), (448, 300, 224, 150)])
def test_cutout_side_is_half_the_image_side(h, w, side_h, side_w):
    x = _image(h, w)
    y = cutout(x, FixedRng(h // 2, w // 2, [250, 250, 250]))  # centred: nothing clipped
    r, c = np.nonzero(_filled(x, y))
    assert r.max() - r.min() + 1 == side_h and c.max() - c.min() + 1 == side_w
    assert len(r) == side_h * side_w  # a full rectangle


def test_cutout_with_a_real_generator_matches_the_definition():
    """Random centres and colours: the filled set is always a clipped rectangle of half side, one colour."""
    x = _image(32, 32)
    for seed in range(200):
        y = cutout(x, np.random.default_rng(seed))
        mask = _filled(x, y)
        r, c = np.nonzero(mask)
        r0, r1, c0, c1 = r.min(), r.max() + 1, c.min(), c.max() + 1
        assert mask[r0:r1, c0:c1].all() and mask.sum() == (r1 - r0) * (c1 - c0)
        assert len(np.unique(y[mask], axis=0)) == 1
        assert 8 <= r1 - r0 <= 16 and 8 <= c1 - c0 <= 16  # half side, at least half of it inside
        # a clipped side touches the border
        assert r1 - r0 == 16 or r0 == 0 or r1 == 32
        assert c1 - c0 == 16 or c0 == 0 or c1 == 32


def test_cutout_centre_is_uniform_over_the_image():
    """Recover each centre from the rectangle: the rows where the fill starts follow the uniform law of
    cy: start = max(cy - 4, 0) for a 16-px image (side 8), so start 0 has probability 5/16, 1..11 each 1/16."""
    x = np.zeros((16, 16, 3), np.uint8)
    rng = np.random.default_rng(123)
    n = 8000
    starts, ends = np.zeros(n, int), np.zeros(n, int)
    for i in range(n):
        mask = (cutout(x, rng) != 0).any(axis=2)
        r = np.nonzero(mask.any(axis=1))[0]
        if len(r) == 0:  # the colour drawn was exactly black (probability 2**-24)
            continue
        starts[i], ends[i] = r.min(), r.max() + 1
    freq = np.bincount(starts, minlength=16) / n
    expected = np.array([5] + [1] * 11 + [0] * 4) / 16
    assert np.abs(freq - expected).max() < 0.02, freq
    assert ends.min() == 4 and ends.max() == 16  # centres reach both borders


def test_cutout_leaves_a_read_only_input_alone():
    x = _image(20, 20)
    x.setflags(write=False)
    before = x.copy()
    y = cutout(x, np.random.default_rng(0))
    assert np.array_equal(x, before) and not np.array_equal(y, x)


def test_cutout_refuses_bad_input():
    with pytest.raises(ValueError, match="expected a uint8 \\(H, W, 3\\) image, but got float32"):
        cutout(np.zeros((4, 4, 3), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="cutout factor"):
        cutout(_image(4, 4), np.random.default_rng(0), factor=0)


def test_flip_is_the_original_rule():
    """The engine's original code: rng = default_rng((seed, epoch, index)); flip when rng.random() < 0.5."""
    x = _image(12, 10)
    flips = 0
    for seed, epoch, index in [(s, e, i) for s in (0, 7) for e in range(3) for i in range(20)]:
        rng = np.random.default_rng((seed, epoch, index))
        old = x[:, ::-1] if rng.random() < 0.5 else x
        new = train_augment(x, np.random.default_rng((seed, epoch, index)), "flip")
        assert np.array_equal(new, old)
        flips += not np.array_equal(new, x)
    assert 0 < flips < 120


def test_csl_same_seed_same_output_and_global_rng_untouched():
    x = _image(64, 64)
    state = torch.get_rng_state()
    a = train_augment(x, np.random.default_rng((3, 1, 17)), Augment.CUTOUT_RANDAUGMENT)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # the global torch seed must not matter
    b = train_augment(x, np.random.default_rng((3, 1, 17)), "cutout-randaugment")
    assert np.array_equal(a, b) and a.dtype == np.uint8 and a.shape == x.shape
    others = [train_augment(x, np.random.default_rng((3, 1, i)), "cutout-randaugment") for i in range(5)]
    assert all(not np.array_equal(a, o) for o in others)


def test_csl_is_cutout_then_torchvision_randaugment():
    x = _image(48, 48)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        cut = cutout(x, rng)
        s = int(rng.integers(2**63 - 1))
        torch.manual_seed(s)
        reference = np.asarray(RandAugment()(Image.fromarray(cut)))
        assert np.array_equal(train_augment(x, np.random.default_rng(seed), "cutout-randaugment"), reference)
        assert np.array_equal(rand_augment(cut, s), reference)


def test_randaugment_changes_images():
    x = _image(48, 48)
    changed = sum(not np.array_equal(rand_augment(x, s), x) for s in range(20))
    assert changed >= 15  # identity is one of 14 operations, drawn twice


def test_unknown_augment_lists_the_choices():
    with pytest.raises(ValueError, match="flip, cutout-randaugment"):
        train_augment(_image(4, 4), np.random.default_rng(0), "mixup")

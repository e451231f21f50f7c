"""Image decoding (real JPEGs, EXIF orientation, modes, corrupt files) and the pre-resized cache."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plbench.datasets.images import (ImageCache, build_image_cache, collate_skip_none, load_image,
                                     resize_square)
from plbench.errors import InputError

REAL_SIZES = {  # (width, height) of the real fixtures, checked with an independent reader below
    "000000000885.jpg": (640, 427),
    "10034691073_694cc95540_o.jpg": (256, 171),
    "1005659248_1eef7eaf8c_o.jpg": (256, 192),
    "1028564844_1716c46263_o.jpg": (255, 116),
    "10307608844_4c4c364af3_o.jpg": (256, 144),
}


def _jpeg_size(path: Path) -> tuple[int, int]:
    """Width and height from the JPEG SOF marker, without PIL (an independent reference)."""
    data = path.read_bytes()
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    raise AssertionError("no SOF marker")


@pytest.fixture(scope="module")
def real_images(real_fixtures) -> list[Path]:
    return sorted((real_fixtures / "images").glob("*.jpg"))


def test_real_jpegs_decode_to_rgb_with_their_sizes(real_images):
    assert len(real_images) == 9
    for p in real_images:
        img = load_image(p)
        assert img.mode == "RGB"
        assert img.size == _jpeg_size(p)
        if p.name in REAL_SIZES:
            assert img.size == REAL_SIZES[p.name]
        arr = np.asarray(img)
        assert arr.dtype == np.uint8 and arr.shape == (img.size[1], img.size[0], 3) and arr.std() > 10


@pytest.mark.parametrize("orientation, transpose", [
    (3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90),
])
def test_exif_orientation_applied(real_images, tmp_path, orientation, transpose):
    src = Image.open(real_images[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "oriented.png"  # lossless, so pixels compare exactly
    src.save(path, exif=exif)
    img = load_image(path)
    expected = src.transpose(transpose)
    assert img.size == expected.size
    np.testing.assert_array_equal(np.asarray(img), np.asarray(expected))


def test_grayscale_cmyk_palette_become_rgb(tmp_path):
    gray = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8))
    gray.save(tmp_path / "g.jpg", quality=100)
    g = load_image(tmp_path / "g.jpg")
    assert g.mode == "RGB" and g.size == (8, 6)
    a = np.asarray(g).astype(int)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    Image.new("CMYK", (5, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # pure red in CMYK
    c = np.asarray(load_image(tmp_path / "c.jpg")).astype(int)
    assert c.shape == (4, 5, 3) and (c[..., 0] > 240).all() and (c[..., 1:] < 15).all()
    pal = Image.new("P", (3, 3), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    p = load_image(tmp_path / "p.png")
    assert p.mode == "RGB" and p.getpixel((1, 1)) == (10, 200, 30)


def test_corrupt_and_truncated_files(real_images, tmp_path, caplog):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(real_images[0].read_bytes()[:2000])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    for bad in (truncated, garbage, tmp_path / "absent.jpg"):
        with pytest.raises(InputError) as e:
            load_image(bad)
        assert str(bad) in e.value.message and "expected a decodable image" in e.value.message
        assert load_image(bad, strict=False) is None
    assert caplog.text.count("skipping") == 3


def test_cache_round_trip_and_failed_images(real_fixtures, tmp_path):
    paths = sorted((real_fixtures / "coco2017_sample" / "val2017").glob("*.jpg")) + sorted(
        (real_fixtures / "images").glob("*.jpg"))[:3]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(paths[0].read_bytes()[:1500])
    all_paths = [str(p) for p in paths] + [str(bad)]
    cache = build_image_cache(all_paths, 48, tmp_path / "cache", workers=2, chunk=3)
    assert len(cache) == len(all_paths) and cache.size == 48
    assert cache.failed == [len(all_paths) - 1]
    assert cache.ok.tolist() == [True] * len(paths) + [False]
    assert (cache.get(len(all_paths) - 1) == 0).all()
    for i, p in enumerate(paths):
        got = cache.get(i)
        assert got.shape == (48, 48, 3) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, resize_square(load_image(p, draft_size=48), 48))
        # Draft decoding changes pixels only slightly against a full decode.
        full = resize_square(load_image(p), 48).astype(float)
        assert np.abs(got.astype(float) - full).mean() < 6
    np.testing.assert_array_equal(cache.get(str(paths[2])), cache.get(2))
    assert (tmp_path / "cache" / "images.u8").stat().st_size == len(all_paths) * 48 * 48 * 3
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["paths"] == all_paths and index["failed"] == [len(all_paths) - 1]
    reopened = ImageCache.open(tmp_path / "cache", expected_paths=all_paths)
    np.testing.assert_array_equal(reopened.get(1), cache.get(1))
    _ = reopened.array
    assert len(pickle.dumps(reopened)) < 10_000  # the memmap is never pickled
    with pytest.raises(InputError, match="expected the 9 images the dataset lists, in order, but the cache holds 10"):
        ImageCache.open(tmp_path / "cache", expected_paths=all_paths[:-1])
    with pytest.raises(InputError, match=r"bad.jpg, image: expected a decodable image"):
        build_image_cache(all_paths, 48, tmp_path / "strict", workers=1, strict=True)
    assert not (tmp_path / "strict" / "images.u8").exists()
    with open(tmp_path / "cache" / "images.u8", "ab") as f:
        f.write(b"x")
    with pytest.raises(InputError, match="expected 69120 bytes for 10 images of 48px"):
        ImageCache.open(tmp_path / "cache")


def test_image_dataset_with_and_without_cache(real_fixtures, tmp_path):
    """The engine's one image dataset reads decoded or cached images alike; undecodable ones are None or errors."""
    torch = pytest.importorskip("torch")
    from plbench.engine.data import ImageLabelDataset
    from plbench.labels import PartialLabels

    paths = [str(p) for p in sorted((real_fixtures / "images").glob("*.jpg"))]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    paths.append(str(bad))
    rows = (np.arange(len(paths) * 2).reshape(-1, 2) % 3 - 1).astype(np.int8)
    labels = PartialLabels.from_dense(rows, np.arange(len(paths)), ["a", "b"])
    cache = build_image_cache(paths, 32, tmp_path / "c", workers=1)
    decoded = []
    for c in (None, cache):
        ds = ImageLabelDataset(paths, labels, 32, train=False, cache=c, strict=False)
        assert ds[len(paths) - 1] is None
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2 if c is not None else 0,
                                             collate_fn=collate_skip_none)
        xs, ys, idx = zip(*loader)
        x, y, i = torch.cat(xs), torch.cat(ys), torch.cat(idx)
        assert x.shape == (len(paths) - 1, 3, 32, 32) and x.dtype == torch.uint8
        np.testing.assert_array_equal(y.numpy(), rows[:-1])
        assert i.tolist() == list(range(len(paths) - 1))
        decoded.append(x)
        strict = ImageLabelDataset(paths, labels, 32, train=False, cache=c, strict=True)
        with pytest.raises(InputError, match="bad.jpg"):
            strict[len(paths) - 1]
    # the cache holds the same pixels as decoding (both resize with the same function)
    assert torch.equal(decoded[0], decoded[1])
    with pytest.raises(InputError, match="holds other images"):
        ImageLabelDataset(paths[1:], labels.subset(np.arange(1, len(paths))), 32, train=False, cache=cache)


def _pngs(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_collate_skip_none_all_none_batch_is_none():
    torch = pytest.importorskip("torch")
    assert collate_skip_none([None, None]) is None
    assert collate_skip_none([]) is None
    x, y = collate_skip_none([None, (torch.ones(2), 3), (torch.zeros(2), 4)])
    assert x.tolist() == [[1.0, 1.0], [0.0, 0.0]] and y.tolist() == [3, 4]


def test_cache_ok_mask_is_built_once(tmp_path):
    paths = _pngs(tmp_path / "img", 3)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    cache = build_image_cache(paths + [str(tmp_path / "bad.png")], 8, tmp_path / "c", workers=1)
    ok = cache.ok
    assert ok.tolist() == [True, True, True, False] and cache.ok is ok
    with pytest.raises(ValueError):
        ok[0] = False  # shared by every caller: read-only
    assert pickle.loads(pickle.dumps(cache)).ok.tolist() == ok.tolist()


def test_cache_rejects_a_data_file_that_is_not_the_indexed_one(tmp_path):
    paths = _pngs(tmp_path / "img", 3)
    folder = tmp_path / "c"
    build_image_cache(paths, 8, folder, workers=1)
    index = json.loads((folder / "index.json").read_text())
    data = folder / "images.u8"
    assert index["version"] == 2 and index["data"]["bytes"] == 3 * 8 * 8 * 3 == data.stat().st_size
    assert index["data"]["mtime_ns"] == data.stat().st_mtime_ns
    assert index["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()

    # A copy that does not keep times still opens: the content is checked instead.
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copyfile(data, copy / "images.u8")
    shutil.copyfile(folder / "index.json", copy / "index.json")
    os.utime(copy / "images.u8", ns=(1, 1))
    np.testing.assert_array_equal(ImageCache.open(copy).get(2), ImageCache.open(folder).get(2))

    # Same size, other bytes (replaced or half-written): rejected, naming the folder and the fix.
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        ImageCache.open(folder)
    assert str(folder) in e.value.message and "plbench data cache" in e.value.message
    assert "expected the data file index.json describes" in e.value.message

    # An index without the data record (older version or hand-edited) is rejected as well.
    index["data"] = {}
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="expected the size .* and sha256 of images.u8"):
        ImageCache.open(folder)
    index["version"] = 1
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="expected plbench-image-cache version 2, but got 'plbench-image-cache' version 1"):
        ImageCache.open(folder)


def test_interrupted_rebuild_leaves_no_stale_index(tmp_path, monkeypatch):
    import plbench.datasets.images as images

    paths = _pngs(tmp_path / "img", 3)
    folder = tmp_path / "c"
    build_image_cache(paths, 8, folder, workers=1)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    # The new data file is in place but the process dies before index.json is written.
    monkeypatch.setattr(images, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(paths[::-1], 8, folder, workers=1)
    with pytest.raises(InputError, match="found no index.json.*plbench data cache"):
        ImageCache.open(folder)
    # A strict build that fails keeps the previous cache usable (nothing is replaced).
    monkeypatch.undo()
    build_image_cache(paths, 8, folder, workers=1)
    (tmp_path / "bad.png").write_bytes(b"broken")
    with pytest.raises(InputError, match="bad.png"):
        build_image_cache(paths + [str(tmp_path / "bad.png")], 8, folder, workers=1, strict=True)
    assert ImageCache.open(folder, expected_paths=paths).paths == paths


def test_empty_path_list_is_input_error(tmp_path):
    with pytest.raises(InputError, match="expected at least one image to cache, but the list is empty"):
        build_image_cache([], 8, tmp_path / "c")

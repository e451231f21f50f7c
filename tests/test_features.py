"""Feature stores and extraction: round trips, integrity checks, disk-space refusal, the training dataset,
and extraction compared with the backbone run by hand (synthetic data and the real COCO 2017 sample)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from plbench.artifacts import features as fs
from plbench.artifacts.features import FeatureStore, write_feature_store
from plbench.errors import InputError
from plbench.labels import PartialLabels

COCO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "coco2017_sample"


def _write(root, pooled, tokens=None, rows=None, ids=None, **meta):
    n, d = pooled.shape
    rows = np.arange(n) if rows is None else np.asarray(rows)
    batches = [(rows[i:i + 3], pooled[rows[i:i + 3]], None if tokens is None else tokens[rows[i:i + 3]])
               for i in range(0, len(rows), 3)]
    base = {"dataset": "synthetic", "split": "train", "fingerprint": "f" * 64, "backbone": "resnet10t",
            "image_size": 32, "weights": {"pretrained": False, "source": None}}
    base.update(meta)
    return write_feature_store(root, batches, num_images=n, num_features=d,
                               num_tokens=None if tokens is None else tokens.shape[1],
                               image_ids=np.arange(100, 100 + n) if ids is None else ids, meta=base)


def test_round_trip_float16_and_failed_rows(tmp_path):
    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(7, 5)).astype(np.float32)
    tokens = rng.normal(size=(7, 4, 5)).astype(np.float32)
    store = _write(tmp_path / "s", pooled, tokens, rows=[6, 0, 1, 2, 4, 5])  # row 3 never written
    assert store.pooled.dtype == np.float16 and store.pooled.shape == (7, 5)
    assert store.tokens.shape == (7, 4, 5)
    keep = [0, 1, 2, 4, 5, 6]
    np.testing.assert_array_equal(store.pooled[keep], pooled[keep].astype(np.float16))
    np.testing.assert_array_equal(store.tokens[keep], tokens[keep].astype(np.float16))
    assert store.meta["failed"] == [3] and store.ok.tolist() == [True] * 3 + [False] + [True] * 3
    # positioned reads: any order, repeats, runs of consecutive rows
    rows = [5, 0, 1, 1, 6, 2]
    np.testing.assert_array_equal(store.read_rows(rows), pooled[rows].astype(np.float16))
    np.testing.assert_array_equal(store.read_rows(rows, tokens=True), tokens[rows].astype(np.float16))
    with pytest.raises(IndexError, match=r"rows in \[0, 7\)"):
        store.read_rows([7])
    assert store.image_ids().tolist() == list(range(100, 107))
    assert (tmp_path / "s" / fs.POOLED_FILE).stat().st_size == 7 * 5 * 2
    assert store.nbytes == 7 * 5 * 2 + 7 * 4 * 5 * 2
    # the sha256 recorded is that of the bytes on disk (independent hash)
    digest = hashlib.sha256((tmp_path / "s" / fs.POOLED_FILE).read_bytes()).hexdigest()
    assert store.meta["files"][fs.POOLED_FILE]["sha256"] == digest


def test_pooled_only_store_refuses_tokens(tmp_path):
    store = _write(tmp_path / "s", np.ones((3, 2), np.float32))
    assert not store.has_tokens and not (tmp_path / "s" / fs.TOKENS_FILE).exists()
    with pytest.raises(InputError, match="--tokens"):
        store.tokens


def test_interrupted_or_tampered_store_is_rejected(tmp_path):
    root = tmp_path / "s"
    _write(root, np.ones((4, 3), np.float32))
    data = root / fs.POOLED_FILE
    # same size, new content and mtime: caught by the sha256
    data.write_bytes(np.zeros((4, 3), np.float16).tobytes())
    with pytest.raises(InputError, match="sha256"):
        FeatureStore.open(root)
    # a copy with other times but the same bytes is accepted
    _write(root, np.ones((4, 3), np.float32))
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # copytree keeps times; change them explicitly
    os.utime(copy / fs.POOLED_FILE, ns=(1, 1))
    FeatureStore.open(copy)
    data.write_bytes(b"\0" * 5)
    with pytest.raises(InputError, match="expected 24 bytes"):
        FeatureStore.open(root)
    (root / fs.META_FILE).unlink()
    with pytest.raises(InputError, match="no features.json"):
        FeatureStore.open(root)


def test_failed_write_leaves_no_index(tmp_path):
    root = tmp_path / "s"
    _write(root, np.ones((4, 3), np.float32))
    bad = np.full((4, 3), 1e6, np.float32)  # beyond float16
    with pytest.raises(ValueError, match="not finite in float16"):
        _write(root, bad)
    assert not (root / fs.META_FILE).exists()
    assert not any(p.name.endswith(".tmp") for p in root.iterdir())
    with pytest.raises(ValueError, match=r"expected pooled features \(2, 3\)"):
        write_feature_store(root, [(np.array([0, 1]), np.ones((2, 4)), None)], num_images=2, num_features=3,
                            num_tokens=None, image_ids=[1, 2], meta={})


def test_disk_space_is_checked_before_writing(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(fs.shutil, "disk_usage", lambda p: usage._replace(free=999))
    with pytest.raises(InputError, match=r"need 12\.0 KB.*only 999 B are free"):
        _write(tmp_path / "s", np.ones((2000, 3), np.float32))
    assert not (tmp_path / "s").exists()
    assert fs.feature_bytes(9_000_000, 1280) == 23_040_000_000
    assert fs.format_bytes(23_040_000_000) == "23.0 GB"


def test_check_names_the_field(tmp_path):
    store = _write(tmp_path / "s", np.ones((4, 3), np.float32), ids=np.array(["a", "b", "c", "d"], dtype=object))
    store.check(dataset="synthetic", split="train", fingerprint="f" * 64, backbone="resnet10t", image_size=32,
                pretrained=False, image_ids=["a", "b"])  # a prefix is fine
    for kw, field in [({"backbone": "resnet18"}, "backbone"), ({"image_size": 64}, "image_size"),
                      ({"split": "val"}, "split"), ({"fingerprint": "0" * 64}, "fingerprint"),
                      ({"pretrained": True}, "pretrained"), ({"dataset": "coco"}, "dataset")]:
        with pytest.raises(InputError) as e:
            store.check(**kw)
        assert e.value.field == field
    with pytest.raises(InputError, match="row 1 holds image 'b'"):
        store.check(image_ids=["a", "x"])
    with pytest.raises(InputError, match="at most 4 images"):
        store.check(image_ids=list("abcde"))


@pytest.mark.parametrize("in_memory", [True, False])
def test_feature_dataset_items_and_batches(tmp_path, monkeypatch, in_memory):
    """The same items whether the rows are held in memory (small stores) or read per batch (large ones)."""
    from plbench.datasets.images import collate_skip_none
    from plbench.engine import features
    from plbench.engine.features import FeatureDataset

    if not in_memory:
        monkeypatch.setattr(features, "IN_MEMORY_BYTES", 0)

    rng = np.random.default_rng(1)
    pooled = rng.normal(size=(6, 4)).astype(np.float32)
    tokens = rng.normal(size=(6, 3, 4)).astype(np.float32)
    store = _write(tmp_path / "s", pooled, tokens, rows=[0, 1, 2, 3, 5])  # row 4 failed
    dense = rng.integers(-1, 2, size=(5, 2)).astype(np.int8)  # first 5 rows only: a prefix
    labels = PartialLabels.from_dense(dense, np.arange(100, 105), ["p", "q"])
    ds = FeatureDataset(store, labels)
    assert ds._in_memory is in_memory and len(ds) == 5
    x, y, i = ds[2]
    assert x.dtype == torch.float32 and x.shape == (1, 4) and y.dtype == torch.int8 and i == 2
    np.testing.assert_array_equal(x.numpy()[0], pooled[2].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), dense[2])
    assert ds[4] is None
    batch = ds.__getitems__([3, 0, 2])  # unsorted: items come back in the asked order
    assert [b[2] for b in batch] == [3, 0, 2]
    for b in batch:
        np.testing.assert_array_equal(b[0].numpy(), ds[b[2]][0].numpy())
    feats, ys, idx = collate_skip_none(ds.__getitems__([4, 1, 0]))
    assert feats.shape == (2, 1, 4) and idx.tolist() == [1, 0]
    tok = FeatureDataset(store, labels, tokens=True)
    np.testing.assert_array_equal(tok[1][0].numpy(), tokens[1].astype(np.float16).astype(np.float32))
    with pytest.raises(InputError, match="row 4 has no features"):
        FeatureDataset(store, labels, strict=True)[4]


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory):
    from plbench.datasets.synthetic import write_synthetic_coco

    root = tmp_path_factory.mktemp("syn") / "synthetic"
    write_synthetic_coco(root, train=20, val=8, num_classes=4, image_size=32, seed=5)
    return root


def _reference_features(split, backbone, image_size, mean, std):
    """The backbone run by hand: PIL decode, square resize, (x/255 - mean)/std, forward_features."""
    import timm
    from PIL import Image

    torch.manual_seed(0)
    net = timm.create_model(backbone, pretrained=False, num_classes=0, global_pool="").eval()
    out = []
    for p in split.image_paths:
        img = Image.open(p).convert("RGB").resize((image_size, image_size), Image.BILINEAR, reducing_gap=None)
        x = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)
        x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        with torch.no_grad():
            out.append(net.forward_features(x[None])[0])  # (D, H, W)
    return torch.stack(out)


def test_extraction_matches_the_backbone_by_hand(tiny_synthetic, tmp_path):
    from plbench.datasets import load_dataset
    from plbench.engine.features import extract_features

    split = load_dataset("synthetic", tiny_synthetic, "train")
    torch.manual_seed(0)  # extraction builds the backbone: same random weights as the reference
    store = extract_features(split, tmp_path / "train", backbone="resnet10t", image_size=32, tokens=True,
                             batch_size=8, device="cpu")
    pre = store.meta["preprocessing"]
    assert pre["mean"] == pytest.approx([0.485, 0.456, 0.406])  # resnet: ImageNet constants from timm
    ref = _reference_features(split, "resnet10t", 32, pre["mean"], pre["std"])  # (N, D, H, W)
    n, d, h, w = ref.shape
    assert store.pooled.shape == (n, d) and store.tokens.shape == (n, h * w, d)
    ref_tokens = ref.flatten(2).transpose(1, 2).numpy()
    np.testing.assert_allclose(store.tokens.astype(np.float32), ref_tokens, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(store.pooled.astype(np.float32), ref.mean(dim=(2, 3)).numpy(), rtol=2e-3, atol=2e-3)
    assert store.meta["fingerprint"] == split.fingerprint
    import timm

    from plbench.engine.model import weights_sha256

    torch.manual_seed(0)  # the reference backbone again: the store records the digest of these very weights
    same = timm.create_model("resnet10t", pretrained=False, num_classes=0, global_pool="")
    assert store.meta["weights"] == {"pretrained": False, "source": "random initialisation", "checkpoint": None,
                                     "checkpoint_sha256": None, "backbone_sha256": weights_sha256(same)}
    assert store.image_ids().tolist() == split.labels.image_ids.tolist()


@pytest.mark.skipif(not COCO.is_dir(), reason=f"real fixtures absent ({COCO})")
def test_extraction_on_the_real_coco_sample(tmp_path):
    from plbench.engine.features import extract_split

    store = extract_split("coco", COCO, "val", tmp_path / "feats", backbone="resnet10t", image_size=48,
                          batch_size=4, device="cpu")
    assert store.root == tmp_path / "feats" / "val"
    assert store.pooled.shape == (6, 512) and store.pooled.dtype == np.float16
    assert store.meta["failed"] == [] and np.isfinite(store.pooled.astype(np.float32)).all()
    ann = COCO / "annotations" / "instances_val2017.json"
    assert store.meta["fingerprint"] == hashlib.sha256(ann.read_bytes()).hexdigest()
    import json

    ids = sorted(img["id"] for img in json.loads(ann.read_text())["images"])
    assert sorted(store.image_ids().tolist()) == ids
    # pooled features of real photos differ between images (not a constant or zero map)
    assert np.std(store.pooled.astype(np.float32), axis=0).mean() > 1e-3


def test_cli_extract_and_errors(tiny_synthetic, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from plbench.cli import app

    args = ["features", "extract", "--dataset", "synthetic", "--data-root", str(tiny_synthetic), "--out",
            str(tmp_path / "f"), "--image-size", "32", "--device", "cpu", "--split", "val"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "8 images x 512 float16 = 8.2 KB" in result.output
    assert FeatureStore.open(tmp_path / "f" / "val").pooled.shape == (8, 512)
    bad = CliRunner().invoke(app, args + ["--backbone", "no_such_net"])
    assert bad.exit_code == 2 and "unknown timm model" in bad.output
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(fs.shutil, "disk_usage", lambda p: usage._replace(free=10))
    full = CliRunner().invoke(app, args[:-1] + ["train"])
    assert full.exit_code == 2 and "disk space" in full.output and "only 10 B are free" in full.output
    assert not (tmp_path / "f" / "train").exists()

"""The built-in synthetic dataset: layout, COCO loader round trip, determinism, class statistics, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import plbench.cli.synthetic_cmd  # noqa: F401  (registers `plbench data synthetic`)
from plbench.cli.app import app
from plbench.datasets import load_dataset
from plbench.datasets import synthetic as syn
from plbench.errors import InputError
from plbench.labels import NEG, POS

K = 20
SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic")
    summary = syn.write_synthetic_coco(root, train=300, val=80, num_classes=K, image_size=SIZE, seed=3)
    return root, summary


def _json(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}2017.json").read_text())


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _labels_from_json(doc: dict) -> tuple[list[str], np.ndarray]:
    """Independent reference: class names in category-id order and the (N, C) positive mask."""
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    col = {c["id"]: j for j, c in enumerate(cats)}
    row = {im["id"]: i for i, im in enumerate(doc["images"])}
    y = np.zeros((len(doc["images"]), len(cats)), dtype=bool)
    for a in doc["annotations"]:
        y[row[a["image_id"]], col[a["category_id"]]] = True
    return [c["name"] for c in cats], y


def _polygon_area(flat: list[float]) -> tuple[float, float]:
    """(area, perimeter) of a flat [x1, y1, x2, y2, ...] polygon (shoelace)."""
    p = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    q = np.roll(p, -1, axis=0)
    area = 0.5 * abs(float(np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1])))
    return area, float(np.linalg.norm(q - p, axis=1).sum())


# -- layout and JSON fields --------------------------------------------------------------------

def test_layout_images_and_annotation_fields(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    assert summary["images"] == {"train": 300, "val": 80}
    image_ids: set[int] = set()
    ann_ids: set[int] = set()
    for split, n in (("train", 300), ("val", 80)):
        doc = _json(root, split)
        assert len(doc["images"]) == n
        assert len(doc["annotations"]) == summary["annotations"][split]
        cat_ids = {c["id"] for c in doc["categories"]}
        per_image: dict[int, int] = {}
        for im in doc["images"]:
            assert set(im) >= {"id", "file_name", "width", "height"}
            assert (im["width"], im["height"]) == (SIZE, SIZE)
            assert re.fullmatch(r"\d{12}\.jpg", im["file_name"]) and int(im["file_name"][:12]) == im["id"]
            with Image.open(root / f"{split}2017" / im["file_name"]) as f:
                assert (f.format, f.mode, f.size) == ("JPEG", "RGB", (SIZE, SIZE))
            image_ids.add(im["id"])
        for a in doc["annotations"]:
            assert a["category_id"] in cat_ids and a["iscrowd"] == 0
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and w >= 1 and h >= 1 and x + w <= SIZE and y + h <= SIZE
            assert 0 < a["area"] <= w * h
            assert len(a["segmentation"]) == 1 and len(a["segmentation"][0]) % 2 == 0
            assert len(a["segmentation"][0]) >= 6
            per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
            ann_ids.add(a["id"])
        counts = [per_image.get(im["id"], 0) for im in doc["images"]]
        assert min(counts) >= 1 and max(counts) <= syn.MAX_OBJECTS
        assert max(counts) >= 4  # several objects per image do occur
    assert len(image_ids) == 380  # unique across splits, as in COCO
    assert len(ann_ids) == summary["annotations"]["train"] + summary["annotations"]["val"]


def test_boxes_lie_in_outlines_and_half_of_each_object_stays_visible(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    doc = _json(root, "train")
    shape_of = {c["id"]: c["supercategory"] for c in doc["categories"]}
    hidden = 0
    for a in doc["annotations"]:
        seg = np.asarray(a["segmentation"][0]).reshape(-1, 2)
        x, y, w, h = a["bbox"]
        # visible pixels (whose centres are inside the shape) lie within the outline's bounding box
        assert x >= seg[:, 0].min() - 1 and x + w <= seg[:, 0].max() + 1
        assert y >= seg[:, 1].min() - 1 and y + h <= seg[:, 1].max() + 1
        shape = shape_of[a["category_id"]]
        if shape in ("ring", "crescent"):  # outline is the outer circle only
            continue
        area, perimeter = _polygon_area(a["segmentation"][0])
        assert a["area"] <= area + 0.6 * perimeter + 2
        assert a["area"] >= 0.5 * (area - 0.6 * perimeter) - 2  # the occlusion rule
        hidden += a["area"] < 0.9 * (area - 0.6 * perimeter)
    assert hidden >= 20  # occlusion really happens


# -- categories ---------------------------------------------------------------------------------

def test_category_ids_have_gaps_are_unsorted_and_names_are_attribute_conjunctions(
        dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    train, val = _json(root, "train"), _json(root, "val")
    assert train["categories"] == val["categories"]
    ids = [c["id"] for c in train["categories"]]
    assert len(set(ids)) == K and 1 <= min(ids) and max(ids) <= 90
    assert max(ids) - min(ids) + 1 > K  # not contiguous
    assert ids != sorted(ids) and ids != sorted(ids, reverse=True)
    names = [c["name"] for c in train["categories"]]
    assert len(set(names)) == K
    for c in train["categories"]:
        colour, texture, shape = c["name"].split("_")
        assert colour in syn.COLOURS and texture in syn.TEXTURES and shape in syn.SHAPES
        assert c["supercategory"] == shape


def test_design_shares_every_attribute_between_classes() -> None:
    design = syn.design_classes(K)
    assert design == syn.design_classes(K)  # a function of num_classes alone
    for attr in ("colour", "texture", "shape"):
        values = [getattr(c, attr) for c in design.classes]
        counts = {v: values.count(v) for v in set(values)}
        assert min(counts.values()) >= 2, (attr, counts)  # no attribute value singles out a class
    big = syn.design_classes(syn.MAX_CLASSES)
    ids = [c.category_id for c in big.classes]
    assert len(set(ids)) == syn.MAX_CLASSES and max(ids) <= 90
    assert sum(c.prevalence for c in big.classes) <= syn.MEAN_CLASSES + 1e-6
    with pytest.raises(ValueError, match=r"num_classes must lie in \[1, 80\], but got 81"):
        syn.design_classes(81)


# -- COCO loader round trip ----------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_loader_reads_it_with_classes_in_category_id_order(dataset: tuple[Path, dict], split: str) -> None:
    root, summary = dataset
    ds = load_dataset("synthetic", root, split)
    doc = _json(root, split)
    names, positives = _labels_from_json(doc)
    assert ds.class_names == names
    assert ds.class_names == [c["name"] for c in summary["classes"]]  # summary is in id order too
    assert ds.missing_images == 0 and len(ds) == len(doc["images"])
    assert list(ds.labels.image_ids) == [im["id"] for im in doc["images"]]
    assert [Path(p).name for p in ds.image_paths] == [im["file_name"] for im in doc["images"]]
    assert all(Path(p).parent == root / f"{split}2017" for p in ds.image_paths)
    expected = np.where(positives, POS, NEG).astype(np.int8)
    np.testing.assert_array_equal(ds.labels.to_dense(), expected)
    np.testing.assert_allclose(positives.mean(0), [c["frequency"][split] for c in summary["classes"]])
    # the loader's name also works: plain COCO, no special case
    np.testing.assert_array_equal(load_dataset("coco", root, split).labels.to_dense(), expected)


def test_pair_statistics_in_summary_match_the_files(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    names, y = _labels_from_json(_json(root, "train"))
    for pair in summary["pairs"]:
        a, b = names.index(pair["a"]), names.index(pair["b"])
        assert pair["p_b_given_a"] == pytest.approx(y[y[:, a], b].mean())
        assert pair["p_b"] == pytest.approx(y[:, b].mean())


# -- class statistics ----------------------------------------------------------------------------

def test_long_tail_and_cooccurring_pairs() -> None:
    design = syn.design_classes(K)
    rng = np.random.default_rng(0)
    n = 8000
    present = np.zeros((n, K), dtype=bool)
    class_triples = {(c.colour, c.texture, c.shape) for c in design.classes}
    for i in range(n):
        objects = syn.sample_objects(rng, design)
        labelled = [o for o in objects if o.class_index >= 0]
        assert 1 <= len(labelled) <= syn.MAX_OBJECTS and objects[0].class_index >= 0
        for o in objects:
            if o.class_index < 0:  # decoys are near misses, never a class
                assert (o.colour, o.texture, o.shape) not in class_triples
            else:
                c = design.classes[o.class_index]
                assert (o.colour, o.texture, o.shape) == (c.colour, c.texture, c.shape)
        present[i, [o.class_index for o in labelled]] = True
    freq = present.mean(0)
    assert 0.4 <= freq.max() <= 0.6  # most frequent class: about half of the images
    assert 0.015 <= freq.min() <= 0.06  # rarest: a few percent
    assert np.sort(freq)[-2] < 0.75 * freq.max()  # a head, not a plateau
    assert len(design.pairs) == K // 5
    for a, b in design.pairs:
        p_b_given_a = present[present[:, a], b].mean()
        assert p_b_given_a >= syn.PAIR_PROBABILITY - 0.05
        assert p_b_given_a > 2 * freq[b]


def test_generated_frequencies_follow_the_design(dataset: tuple[Path, dict]) -> None:
    _, summary = dataset
    design = syn.design_classes(K)
    target = {c.name: c.prevalence for c in design.classes}
    freq = {c["name"]: c["frequency"]["train"] for c in summary["classes"]}
    top = max(target, key=target.get)
    assert max(freq, key=freq.get) == top  # the designed head class is the most frequent one
    order = sorted(target, key=target.get)
    assert np.mean([freq[c] for c in order[:5]]) < 0.1 < np.mean([freq[c] for c in order[-3:]])


# -- determinism -----------------------------------------------------------------------------------

def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    kw = dict(train=12, val=4, num_classes=8, image_size=48)
    a = _all_bytes(_write(tmp_path / "a", seed=5, **kw))
    b = _all_bytes(_write(tmp_path / "b", seed=5, **kw))
    assert a == b and len(a) == 12 + 4 + 2
    c = _all_bytes(_write(tmp_path / "c", seed=6, **kw))
    assert a.keys() == c.keys()
    assert a["annotations/instances_train2017.json"] != c["annotations/instances_train2017.json"]
    jpegs = [k for k in a if k.endswith(".jpg")]
    assert sum(a[k] != c[k] for k in jpegs) == len(jpegs)
    # each image depends on (seed, split, index) only: more training images leave val unchanged
    d = _all_bytes(_write(tmp_path / "d", seed=5, **{**kw, "train": 13}))
    assert all(d[k] == a[k] for k in a if k.startswith("val2017/"))
    assert d["annotations/instances_val2017.json"] != a["annotations/instances_val2017.json"]  # ann ids shift


def _write(root: Path, **kw) -> Path:
    syn.write_synthetic_coco(root, **kw)
    return root


def test_extreme_class_counts(tmp_path: Path) -> None:
    one = syn.write_synthetic_coco(tmp_path / "one", train=3, val=2, num_classes=1, image_size=32)
    assert [c["frequency"] for c in one["classes"]] == [{"train": 1.0, "val": 1.0}]
    many = syn.write_synthetic_coco(tmp_path / "many", train=3, val=2, num_classes=80, image_size=32)
    assert len(load_dataset("synthetic", tmp_path / "many", "val").class_names) == 80
    assert len(many["pairs"]) == 16


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train must lie in"):
        syn.write_synthetic_coco(tmp_path, train=0)
    with pytest.raises(ValueError, match="image_size must lie in"):
        syn.write_synthetic_coco(tmp_path, image_size=16)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        syn.write_synthetic_coco(tmp_path, seed=-1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="expected a folder .* but got an existing file"):
        syn.write_synthetic_coco(tmp_path / "file", train=1, val=1)


# -- CLI -------------------------------------------------------------------------------------------

def test_cli_writes_the_same_dataset_as_the_library(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["data", "synthetic", "--out", str(out), "--train", "10", "--val", "3",
            "--classes", "6", "--image-size", "40", "--seed", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 10 train and 3 val images" in result.output and "6 classes" in result.output
    assert f"--data-root {out}" in result.output
    ref = _write(tmp_path / "lib", train=10, val=3, num_classes=6, image_size=40, seed=2)
    assert _all_bytes(out) == _all_bytes(ref)


@pytest.mark.parametrize("bad", [["--classes", "0"], ["--classes", "81"], ["--image-size", "8"], ["--train", "0"]])
def test_cli_rejects_out_of_range_options(tmp_path: Path, bad: list[str]) -> None:
    result = CliRunner().invoke(app, ["data", "synthetic", "--out", str(tmp_path / "x"), *bad])
    assert result.exit_code == 2
    assert bad[0] in result.output
    assert not (tmp_path / "x").exists()

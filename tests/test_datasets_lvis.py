"""LVIS v1 loader: negative and not-exhaustive semantics, id-order classes, frequency groups, images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plbench.datasets import load_dataset
from plbench.errors import InputError
from plbench.labels import NEG, POS, UNK

CATS = [  # shuffled on purpose: class order must follow the ids
    {"id": 30, "name": "zebra", "synset": "zebra.n.01", "frequency": "f", "image_count": 10},
    {"id": 2, "name": "apple", "synset": "apple.n.01", "frequency": "r", "image_count": 1},
    {"id": 17, "name": "kite", "synset": "kite.n.03", "frequency": "c", "image_count": 5},
    {"id": 5, "name": "bus", "synset": "bus.n.01", "frequency": "f", "image_count": 9},
]


def lvis_file(images: list[dict], anns: list[dict], cats: list[dict] = CATS) -> dict:
    return {"info": {}, "licenses": [], "images": images, "annotations": anns,
            "categories": [dict(c) for c in cats]}  # copies: tests edit them


def image(iid: int, folder: str, neg=(), not_exhaustive=()) -> dict:
    return {"id": iid, "coco_url": f"http://images.cocodataset.org/{folder}/{iid:012d}.jpg",
            "height": 10, "width": 10, "neg_category_ids": list(neg),
            "not_exhaustive_category_ids": list(not_exhaustive)}


def write(root: Path, split: str, data: dict, make_images: bool = True, under_annotations: bool = False) -> None:
    folder = root / "annotations" if under_annotations else root
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"lvis_v1_{split}.json").write_text(json.dumps(data))
    if make_images:
        for img in data["images"]:
            parts = img["coco_url"].split("/")
            (root / parts[-2]).mkdir(exist_ok=True)
            (root / parts[-2] / parts[-1]).write_bytes(b"\xff\xd8")


def sample_data() -> dict:
    images = [
        image(7, "train2017", neg=[2], not_exhaustive=[5]),
        image(3, "val2017", neg=[17, 30]),
        image(9, "train2017", not_exhaustive=[30]),  # not exhaustive without any box: still positive
        image(4, "train2017"),  # no annotation at all: every class unannotated
    ]
    anns = [
        {"id": 1, "image_id": 7, "category_id": 5, "bbox": [0, 0, 1, 1]},
        {"id": 2, "image_id": 7, "category_id": 5, "bbox": [1, 1, 1, 1]},
        {"id": 3, "image_id": 7, "category_id": 17, "bbox": [0, 0, 1, 1]},
        {"id": 4, "image_id": 3, "category_id": 2, "bbox": [0, 0, 1, 1]},
    ]
    return lvis_file(images, anns)


def test_semantics_order_and_paths(tmp_path):
    write(tmp_path, "val", sample_data())
    ds = load_dataset("lvis", tmp_path, "val")
    assert ds.class_names == ["apple", "bus", "kite", "zebra"]  # ids 2, 5, 17, 30
    labels = ds.labels
    assert not labels.complete and labels.is_sparse
    assert labels.image_ids.tolist() == [7, 3, 9, 4]  # file order
    expected = np.array([
        # apple bus kite zebra
        [NEG, POS, POS, UNK],  # 7: bus boxed twice and not exhaustive, kite boxed, apple verified absent
        [POS, UNK, NEG, NEG],  # 3
        [UNK, UNK, UNK, POS],  # 9: zebra only flagged not exhaustive
        [UNK, UNK, UNK, UNK],  # 4
    ], dtype=np.int8)
    np.testing.assert_array_equal(labels.to_dense(), expected)
    assert [str(Path(p).relative_to(tmp_path)) for p in ds.image_paths] == [
        "train2017/000000000007.jpg", "val2017/000000000003.jpg",
        "train2017/000000000009.jpg", "train2017/000000000004.jpg"]
    assert {k: v.tolist() for k, v in ds.class_groups.items()} == {"rare": [0], "common": [2], "frequent": [1, 3]}
    assert ds.missing_images == 0 and len(ds.fingerprint) == 64


def test_annotations_folder_and_missing_images(tmp_path, caplog):
    data = sample_data()
    write(tmp_path, "train", data, under_annotations=True)
    (tmp_path / "val2017" / "000000000003.jpg").unlink()
    ds = load_dataset("lvis", tmp_path, "train")
    assert ds.missing_images == 1
    assert ds.labels.image_ids.tolist() == [7, 9, 4]
    np.testing.assert_array_equal(ds.labels.to_dense()[1], [UNK, UNK, UNK, POS])  # rows re-indexed
    assert "1 of 4 images are missing" in caplog.text
    with pytest.raises(InputError, match=r"1 of 4 images listed in lvis_v1_train.json are missing"):
        load_dataset("lvis", tmp_path, "train", strict=True)


def test_contradiction_and_unknown_ids(tmp_path):
    data = sample_data()
    data["images"][1]["neg_category_ids"] = [2]  # image 3 has a box of category 2
    write(tmp_path, "val", data)
    with pytest.raises(InputError, match=r"1 \(image, category\) pairs are both \(first: image 3, category 2\)"):
        load_dataset("lvis", tmp_path, "val")
    data = sample_data()
    data["annotations"].append({"id": 9, "image_id": 7, "category_id": 99})
    write(tmp_path, "val", data)
    with pytest.raises(InputError, match=r"annotations.category_id: expected known category ids, but got 1 "
                                         r"unknown \(first: 99\)"):
        load_dataset("lvis", tmp_path, "val")
    data = sample_data()
    data["categories"][0]["frequency"] = "x"
    write(tmp_path, "val", data)
    with pytest.raises(InputError, match="expected 'r', 'c' or 'f' for category 30"):
        load_dataset("lvis", tmp_path, "val")
    with pytest.raises(InputError, match="no LVIS file for split 'train'"):
        load_dataset("lvis", tmp_path / "nowhere", "train")


def test_real_category_list(real_fixtures, tmp_path):
    cats = json.loads((real_fixtures / "lvis_v1_categories.json").read_text())
    rng = np.random.default_rng(0)
    shuffled = [cats[i] for i in rng.permutation(len(cats))]
    by_name = {c["name"]: c["id"] for c in cats}
    images = [image(1, "train2017", neg=[by_name["zebra"]]), image(2, "val2017")]
    anns = [{"id": 1, "image_id": 1, "category_id": by_name["aerosol_can"]},
            {"id": 2, "image_id": 2, "category_id": 1203}]
    write(tmp_path, "train", lvis_file(images, anns, shuffled))
    ds = load_dataset("lvis", tmp_path, "train")
    assert ds.num_classes == 1203
    assert ds.class_names == [c["name"] for c in sorted(cats, key=lambda c: c["id"])]
    sizes = {k: len(v) for k, v in ds.class_groups.items()}
    assert sizes == {"rare": 337, "common": 461, "frequent": 405}
    all_idx = np.sort(np.concatenate(list(ds.class_groups.values())))
    np.testing.assert_array_equal(all_idx, np.arange(1203))
    freq = {c["name"]: c["frequency"] for c in cats}
    assert all(freq[ds.class_names[i]] == "r" for i in ds.class_groups["rare"])
    dense = ds.labels.to_dense()
    assert dense[0, ds.class_names.index("aerosol_can")] == POS
    assert dense[0, ds.class_names.index("zebra")] == NEG
    assert dense[1, 1202] == POS
    counts = ds.labels.counts()
    assert counts.positives.sum() == 2 and counts.negatives.sum() == 1
    assert counts.unannotated.sum() == 2 * 1203 - 3


# --- versions: v1 and v0.5 are told apart, said, and never mixed -------------------------------------------

def real_cats(real_fixtures: Path) -> list[dict]:
    return json.loads((real_fixtures / "lvis_v1_categories.json").read_text())


def v05_sized_cats(real_fixtures: Path) -> list[dict]:
    """A class set of v0.5's size: the 1,203 real v1 categories plus 27 made up (ids 1204..1230)."""
    extra = [{"id": i, "name": f"extra_{i}", "synset": f"extra.n.{i}", "frequency": "r", "image_count": 1}
             for i in range(1204, 1231)]
    return real_cats(real_fixtures) + extra


def versioned_file(cats: list[dict], version: str | None) -> dict:
    data = lvis_file([image(1, "val2017", neg=[2]), image(2, "val2017")],
                     [{"id": 1, "image_id": 2, "category_id": 1}], cats)
    data["info"] = {} if version is None else {"description": "LVIS", "version": version, "year": 2019}
    return data


def write_named(root: Path, name: str, data: dict) -> Path:
    write(root, "val", data)  # images
    (root / "lvis_v1_val.json").rename(root / name)
    return root / name


def test_version_read_and_said(real_fixtures, tmp_path):
    from plbench.datasets.summary import format_summary, summarize_split

    write_named(tmp_path / "v1", "lvis_v1_val.json", versioned_file(real_cats(real_fixtures), "1.0"))
    ds = load_dataset("lvis", tmp_path / "v1", "val")
    assert ds.num_classes == 1203
    assert ds.notes == {"lvis_version": "v1", "annotation_file": "lvis_v1_val.json"}
    write_named(tmp_path / "v05", "lvis_v0.5_val.json", versioned_file(v05_sized_cats(real_fixtures), "0.5"))
    ds = load_dataset("lvis", tmp_path / "v05", "val")
    assert ds.num_classes == 1230 and ds.notes["lvis_version"] == "v0.5"
    text = format_summary(summarize_split(ds))
    assert "lvis version: v0.5" in text and "annotation file: lvis_v0.5_val.json" in text
    # an excerpt (no info, 4 classes): the file name alone decides
    write(tmp_path / "small", "val", sample_data())
    assert load_dataset("lvis", tmp_path / "small", "val").notes["lvis_version"] == "v1"


@pytest.mark.parametrize("name, version, v05_size, said", [
    # a v0.5 file renamed as v1: the class count, the ids and info.version all say v0.5
    ("lvis_v1_val.json", "0.5", True, "file name lvis_v1_val.json: v1; info.version '0.5': v0.5; "
                                      "1,230 categories: v0.5; category id 1,230 (v1 ids end at 1,203): v0.5"),
    # no info at all: the class set still tells
    ("lvis_v1_val.json", None, True, "file name lvis_v1_val.json: v1; 1,230 categories: v0.5; "
                                     "category id 1,230 (v1 ids end at 1,203): v0.5"),
    # a v1 file renamed as v0.5
    ("lvis_v0.5_val.json", "1.0", False, "file name lvis_v0.5_val.json: v0.5; info.version '1.0': v1; "
                                         "1,203 categories: v1"),
])
def test_version_contradiction_is_input_error(real_fixtures, tmp_path, name, version, v05_size, said):
    from typer.testing import CliRunner

    from plbench.cli import app

    cats = v05_sized_cats(real_fixtures) if v05_size else real_cats(real_fixtures)
    path = write_named(tmp_path, name, versioned_file(cats, version))
    with pytest.raises(InputError) as e:
        load_dataset("lvis", tmp_path, "val")
    assert e.value.path == path and e.value.field == "info.version / categories"
    assert e.value.problem == ("expected one LVIS version from the file name, info.version and class set, "
                               f"but got {said}")
    content = "v1" if name.startswith("lvis_v0.5") else "v0.5"
    assert e.value.fix.startswith(f"if the file is LVIS {content}, name it lvis_{content}_val.json")
    res = CliRunner().invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "expected one LVIS version" in " ".join(res.output.split())


def test_mix_of_versions_between_splits_is_refused(tmp_path):
    from typer.testing import CliRunner

    from plbench.cli import app
    from plbench.datasets import find_splits

    write(tmp_path, "train", sample_data())  # lvis_v1_train.json
    write(tmp_path, "val", sample_data(), under_annotations=True)
    (tmp_path / "annotations" / "lvis_v1_val.json").rename(tmp_path / "annotations" / "lvis_v0.5_val.json")
    problem = ("expected the files of one LVIS version, but found lvis_v1_train.json (v1), "
               "annotations/lvis_v0.5_val.json (v0.5)")
    for split in ("train", "val"):  # either split alone is refused: the other one would not match it
        with pytest.raises(InputError) as e:
            load_dataset("lvis", tmp_path, split)
        assert e.value.problem == problem and "keep one version's files under --data-root" in e.value.fix
    with pytest.raises(InputError, match="one LVIS version"):
        find_splits("lvis", tmp_path)
    res = CliRunner().invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert problem in " ".join(res.output.split())
    (tmp_path / "lvis_v1_train.json").rename(tmp_path / "lvis_v0.5_train.json")
    found = {s.split: s.path for s in find_splits("lvis", tmp_path)}
    assert found == {"train": tmp_path / "lvis_v0.5_train.json", "val": tmp_path / "annotations" / "lvis_v0.5_val.json"}
    assert load_dataset("lvis", tmp_path, "train").notes["lvis_version"] == "v0.5"


# --- the published v0.5 files carry COCO's info block --------------------------------------------------------

# The head of lvis-dataset/lvis-api data/lvis_val_100.json (a published LVIS v0.5 val excerpt, 1,230 categories):
# its info block is COCO 2017's, version "1.0", which is not an LVIS version.
COCO_2017_INFO = {"year": 2017, "url": "http://cocodataset.org", "version": "1.0", "contributor": "COCO Consortium",
                  "date_created": "2017/09/01", "description": "COCO 2017 Dataset"}
V05_REAL_CATS = {  # id -> (name, frequency, synset), the first two and last two categories of that file
    1: ("acorn", "r", "acorn.n.01"), 2: ("aerosol_can", "c", "aerosol.n.02"),
    1229: ("zebra", "f", "zebra.n.01"), 1230: ("zucchini", "c", "zucchini.n.02"),
}


def published_v05_file() -> dict:
    """A two-image file in the published v0.5 format: every key of the real one, its real info block."""
    cats = []
    for i in range(1, 1231):
        name, freq, synset = V05_REAL_CATS.get(i, (f"category_{i}", "rcf"[i % 3], f"category_{i}.n.01"))
        cats.append({"name": name, "image_count": 0, "frequency": freq, "synset": synset, "def": "...",
                     "instance_count": 0, "id": i, "synonyms": [name]})
    images = [  # image 266409 is the file's first; its neg_category_ids are the real ones
        {"flickr_url": "http://farm9.staticflickr.com/8081/8331940980_ef74d48dff_z.jpg",
         "coco_url": "http://images.cocodataset.org/val2017/000000266409.jpg", "height": 480, "license": 3,
         "not_exhaustive_category_ids": [], "neg_category_ids": [284, 53, 754, 299, 654, 541, 566],
         "file_name": "COCO_val2014_000000266409.jpg", "id": 266409, "date_captured": "2013-11-19 20:30:17",
         "width": 640},
        {"coco_url": "http://images.cocodataset.org/train2017/000000000031.jpg", "height": 10, "license": 1,
         "not_exhaustive_category_ids": [1230], "neg_category_ids": [1], "file_name": "COCO_train2014_000000000031.jpg",
         "id": 31, "width": 10},
    ]
    anns = [{"segmentation": [[372.46, 442.49, 373.31, 479.66, 382.3, 479.66]], "area": 342.77, "image_id": 266409,
             "bbox": [372.46, 440.62, 9.85, 39.04], "id": 170, "category_id": 982},
            {"segmentation": [[0, 0, 1, 0, 1, 1]], "area": 1.0, "image_id": 31, "bbox": [0, 0, 1, 1], "id": 171,
             "category_id": 1229}]
    return {"categories": cats, "annotations": anns, "info": dict(COCO_2017_INFO),
            "licenses": [{"name": "Attribution-NonCommercial-ShareAlike License",
                          "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1}], "images": images}


def test_published_v05_file_with_coco_info_is_read(tmp_path):
    write_named(tmp_path, "lvis_v0.5_val.json", published_v05_file())
    ds = load_dataset("lvis", tmp_path, "val")
    assert ds.notes["lvis_version"] == "v0.5" and ds.num_classes == 1230
    assert ds.class_names[:2] == ["acorn", "aerosol_can"] and ds.class_names[-2:] == ["zebra", "zucchini"]
    dense = ds.labels.to_dense()
    assert np.flatnonzero(dense[0] == POS).tolist() == [981]  # category 982
    assert np.flatnonzero(dense[0] == NEG).tolist() == sorted(i - 1 for i in [284, 53, 754, 299, 654, 541, 566])
    assert np.flatnonzero(dense[1] == POS).tolist() == [1228, 1229] and np.flatnonzero(dense[1] == NEG).tolist() == [0]
    assert [str(Path(p).relative_to(tmp_path)) for p in ds.image_paths] == [
        "val2017/000000266409.jpg", "train2017/000000000031.jpg"]


def test_published_v05_file_named_v1_is_refused_by_its_class_set(tmp_path):
    # the COCO info block is no signal: only the name and the class set are compared
    path = write_named(tmp_path, "lvis_v1_val.json", published_v05_file())
    with pytest.raises(InputError) as e:
        load_dataset("lvis", tmp_path, "val")
    assert e.value.path == path
    assert e.value.problem == ("expected one LVIS version from the file name, info.version and class set, but got "
                               "file name lvis_v1_val.json: v1; 1,230 categories: v0.5; "
                               "category id 1,230 (v1 ids end at 1,203): v0.5")
    assert e.value.fix.startswith("if the file is LVIS v0.5, name it lvis_v0.5_val.json")


def test_v1_file_with_coco_info_is_read_and_refused_under_the_v05_name(real_fixtures, tmp_path):
    data = versioned_file(real_cats(real_fixtures), None)
    data["info"] = dict(COCO_2017_INFO)
    write_named(tmp_path / "v1", "lvis_v1_val.json", data)
    assert load_dataset("lvis", tmp_path / "v1", "val").notes["lvis_version"] == "v1"
    write_named(tmp_path / "v05", "lvis_v0.5_val.json", data)
    with pytest.raises(InputError) as e:
        load_dataset("lvis", tmp_path / "v05", "val")
    assert e.value.problem.endswith("but got file name lvis_v0.5_val.json: v0.5; 1,203 categories: v1")

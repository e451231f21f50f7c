"""COCO loader: id gaps, shuffled category order, crowd option, images without annotation, real sample."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from plbench.datasets import load_dataset
from plbench.errors import InputError
from plbench.labels import NEG, POS


def write_coco(root: Path, split: str = "val2017", *, make_images: bool = True) -> dict:
    cats = [  # ids with gaps, listed out of order
        {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 13, "name": "stop sign", "supercategory": "outdoor"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
    ]
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 4, "width": 4} for i in (42, 7, 100)]
    anns = [
        {"id": 1, "image_id": 42, "category_id": 90, "iscrowd": 0, "bbox": [0, 0, 1, 1], "area": 1},
        {"id": 2, "image_id": 42, "category_id": 90, "iscrowd": 0, "bbox": [1, 1, 1, 1], "area": 1},
        {"id": 3, "image_id": 42, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 2, 2], "area": 4},
        {"id": 4, "image_id": 7, "category_id": 13, "iscrowd": 0, "bbox": [0, 0, 1, 1], "area": 1},
    ]  # image 100 has no annotation
    data = {"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    if make_images:
        (root / split).mkdir(exist_ok=True)
        for img in images:
            (root / split / img["file_name"]).write_bytes(b"\xff\xd8")
    return data


def test_id_gaps_shuffled_categories_and_empty_image(tmp_path):
    write_coco(tmp_path)
    ds = load_dataset("coco", tmp_path, "val")
    # Sorted by category id 1, 3, 13, 90: index is the position, never id - 1.
    assert ds.class_names == ["person", "car", "stop sign", "toothbrush"]
    assert ds.labels.complete
    assert ds.labels.image_ids.tolist() == [42, 7, 100]
    np.testing.assert_array_equal(ds.labels.to_dense(), [
        [POS, NEG, NEG, POS],  # crowd person counts by default
        [NEG, NEG, POS, NEG],
        [NEG, NEG, NEG, NEG],  # no annotation: kept, all negative
    ])
    assert [Path(p).name for p in ds.image_paths] == ["000000000042.jpg", "000000000007.jpg", "000000000100.jpg"]


def test_crowd_excluded_on_request(tmp_path):
    write_coco(tmp_path)
    ds = load_dataset("coco", tmp_path, "val2017", include_crowd=False)
    np.testing.assert_array_equal(ds.labels.to_dense()[0], [NEG, NEG, NEG, POS])


def test_missing_images_and_missing_file(tmp_path, caplog):
    write_coco(tmp_path)
    (tmp_path / "val2017" / "000000000007.jpg").unlink()
    with caplog.at_level("WARNING"):
        ds = load_dataset("coco", tmp_path, "val")
    assert ds.missing_images == 1 and ds.labels.image_ids.tolist() == [42, 100]
    # the dropped row is image 7's; the kept rows keep their labels
    np.testing.assert_array_equal(ds.labels.to_dense(), [[POS, NEG, NEG, POS], [NEG, NEG, NEG, NEG]])
    assert [Path(p).name for p in ds.image_paths] == ["000000000042.jpg", "000000000100.jpg"]
    assert "instances_val2017.json: 1 of 3 images are missing (first: " in caplog.text
    assert "000000000007.jpg); they are left out" in caplog.text
    with pytest.raises(InputError, match=r"val2017, file_name: 1 of 3 images listed in instances_val2017.json are "
                                         r"missing \(first: .*000000000007.jpg\)"):
        load_dataset("coco", tmp_path, "val", strict=True)
    with pytest.raises(InputError, match="no COCO instances file for split 'train'"):
        load_dataset("coco", tmp_path, "train")


@pytest.mark.parametrize("split", ["train", "val"])
def test_real_coco2017_sample_matches_pycocotools(real_fixtures, split):
    from pycocotools.coco import COCO

    root = real_fixtures / "coco2017_sample"
    ds = load_dataset("coco", root, split)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCO(str(root / "annotations" / f"instances_{split}2017.json"))
    cat_ids = sorted(ref.getCatIds())
    assert len(cat_ids) == ds.num_classes == 80
    assert cat_ids[-1] == 90 and cat_ids != list(range(1, 81))
    assert ds.class_names == [ref.loadCats(c)[0]["name"] for c in cat_ids]
    dense = ds.labels.to_dense()
    for row, image_id in enumerate(ds.labels.image_ids.tolist()):
        present = {a["category_id"] for a in ref.loadAnns(ref.getAnnIds(imgIds=[image_id]))}
        expected = np.array([POS if c in present else NEG for c in cat_ids], dtype=np.int8)
        np.testing.assert_array_equal(dense[row], expected, err_msg=f"image {image_id}")
    assert len(ds) == {"train": 32, "val": 6}[split] and ds.missing_images == 0
    assert all(Path(p).is_file() for p in ds.image_paths)
    if split == "train":  # the sample holds images without any instance: kept, all negative
        assert (dense == NEG).all(axis=1).sum() == 2

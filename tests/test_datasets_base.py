"""Dataset layer plumbing: drop_missing_images (dense and sparse) and load_dataset's name/option checks."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from plbench.datasets import DATASETS, list_datasets, load_dataset, loader_options
from plbench.datasets.base import drop_missing_images
from plbench.errors import InputError
from plbench.labels import NEG, POS, UNK, PartialLabels

DENSE = np.array([[POS, NEG, UNK], [NEG, POS, POS], [UNK, UNK, NEG], [POS, POS, NEG]], dtype=np.int8)


def files(tmp_path: Path, present: list[bool]) -> np.ndarray:
    paths = []
    for i, keep in enumerate(present):
        p = tmp_path / f"{i}.jpg"
        if keep:
            p.write_bytes(b"x")
        paths.append(str(p))
    return np.array(paths, dtype=object)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_drop_missing_images_keeps_rows_aligned(tmp_path, caplog, layout):
    labels = PartialLabels.from_dense(DENSE, ["a", "b", "c", "d"], ["x", "y", "z"])
    if layout == "sparse":
        r, c = np.nonzero(DENSE != UNK)
        labels = PartialLabels.from_sparse(r, c.astype(np.int32), DENSE[r, c], labels.image_ids, labels.class_names,
                                           complete=False)
    paths = files(tmp_path, [True, False, True, False])
    with caplog.at_level("WARNING"):
        kept, out, missing = drop_missing_images(paths, labels, strict=False, source="list.json", field="f")
    assert missing == 2 and kept.tolist() == [paths[0], paths[2]]
    assert out.image_ids.tolist() == ["a", "c"] and out.class_names == ["x", "y", "z"]
    np.testing.assert_array_equal(out.to_dense(), DENSE[[0, 2]])
    assert out.complete == labels.complete
    assert f"list.json: 2 of 4 images are missing (first: {paths[1]}); they are left out" in caplog.text


def test_drop_missing_images_strict_mask_and_nothing_missing(tmp_path, caplog):
    labels = PartialLabels.from_dense(DENSE, [1, 2, 3, 4], ["x", "y", "z"])
    paths = np.array(["p0", "p1", "p2", "p3"], dtype=object)  # none exists: the mask decides
    exists = np.array([True, True, False, True])
    with pytest.raises(InputError) as e:
        drop_missing_images(paths, labels, strict=True, source="FiftyOne dataset 'd'", field="filepath",
                            what="sample files", fix="restore them", exists=exists)
    assert e.value.message == ("Error in p2, filepath: 1 of 4 sample files listed in FiftyOne dataset 'd' are "
                               "missing (first: p2). Fix: restore them")
    with pytest.raises(InputError, match=r"^Error in folder, ImageID: "):
        drop_missing_images(paths, labels, strict=True, source="s", field="ImageID", where="folder", exists=exists)
    caplog.clear()
    kept, out, missing = drop_missing_images(paths, labels, strict=True, source="s", field="f",
                                             exists=np.ones(4, bool))
    assert missing == 0 and out is labels and kept.tolist() == paths.tolist() and not caplog.text
    with pytest.raises(ValueError, match="one length"):
        drop_missing_images(paths[:3], labels, strict=False, source="s", field="f", exists=exists[:3])


def test_unknown_dataset_is_input_error():
    with pytest.raises(InputError) as e:
        load_dataset("imagenet", ".", "train")
    assert e.value.path is None and e.value.field == "--dataset"
    assert e.value.problem == f"expected one of {', '.join(list_datasets())}, but got 'imagenet'"


def test_loader_options_are_explicit_parameters():
    assert loader_options("coco") == ["include_crowd", "strict"]
    assert loader_options("synthetic") == ["include_crowd", "strict"]
    assert loader_options("lvis") == ["strict"]
    assert loader_options("openimages") == ["class_list", "strict", "check_images", "openimages_labels"]
    assert loader_options("fiftyone") == ["fo_dataset", "fo_field", "fo_negatives", "strict"]
    # every loader takes (root, split, *, options) and no catch-all that would swallow typos
    for fn in DATASETS.values():
        kinds = [p.kind for p in inspect.signature(fn).parameters.values()]
        assert inspect.Parameter.VAR_KEYWORD not in kinds


@pytest.mark.parametrize("name, options, bad", [
    ("coco", {"class_list": "x.txt", "strict": True}, "class_list"),
    ("synthetic", {"fo_field": "gt"}, "fo_field"),
    ("lvis", {"stirct": True, "include_crowd": False}, "include_crowd, stirct"),
    ("openimages", {"fo_dataset": "d"}, "fo_dataset"),
])
def test_foreign_or_misspelt_option_is_input_error(tmp_path, name, options, bad):
    # raised before the loader touches the (empty) root folder
    with pytest.raises(InputError) as e:
        load_dataset(name, tmp_path, "train", **options)
    assert e.value.field == "dataset options"
    assert e.value.problem == (f"expected options the {name} loader accepts ({', '.join(loader_options(name))}), "
                               f"but got {bad}")
    assert "--" + bad.split(",")[0].replace("_", "-") in e.value.fix


def test_synthetic_accepts_its_options(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    data = {"images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 1}]}
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    (tmp_path / "val2017" / "1.jpg").write_bytes(b"x")
    ds = load_dataset("synthetic", tmp_path, "val", include_crowd=False)
    assert ds.dataset == "synthetic" and ds.missing_images == 1 and ds.labels.to_dense().tolist() == [[NEG]]
    assert load_dataset("synthetic", tmp_path, "val").labels.to_dense().tolist() == [[POS]]
    with pytest.raises(InputError, match="1 of 2 images listed in instances_val2017.json are missing"):
        load_dataset("synthetic", tmp_path, "val", strict=True)

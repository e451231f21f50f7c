"""OpenImages V6 loader: real column layout, class mapping, duplicates, unknown MIDs, missing images."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from plbench.datasets import load_dataset
from plbench.datasets.openimages import class_names_for, read_class_descriptions, read_class_list
from plbench.errors import InputError
from plbench.labels import NEG, POS, UNK

HEADER = "ImageID,Source,LabelName,Confidence\n"
DESCRIPTIONS = """LabelName,DisplayName
/m/01g317,Person
/m/0199g,Bicycle
/m/0k4j,Car
/m/01yrx,Cat
/m/0bt9lr,Dog
/m/018xm,Ball
/m/0156sn,Ball
"""


def write_root(tmp_path: Path, rows: str, *, trainable: str | None = "/m/0k4j\n/m/01g317\n/m/0bt9lr\n/m/01yrx\n",
               images: tuple[str, ...] = ("img_c", "img_a", "img_b"), split_file: str = "validation") -> Path:
    root = tmp_path / "oi"
    root.mkdir()
    (root / "oidv6-class-descriptions.csv").write_text(DESCRIPTIONS)
    if trainable is not None:
        (root / "oidv6-classes-trainable.txt").write_text(trainable)
    name = {"validation": "validation-annotations-human-imagelabels.csv",
            "train": "oidv6-train-annotations-human-imagelabels.csv"}[split_file]
    (root / name).write_text(HEADER + rows)
    folder = root / split_file
    folder.mkdir()
    for stem in images:
        (folder / f"{stem}.jpg").write_bytes(b"\xff\xd8")
    return root


ROWS = """img_c,verification,/m/01g317,1
img_c,verification,/m/0k4j,0
img_a,crowdsource-verification,/m/0bt9lr,1
img_a,verification,/m/0bt9lr,1
img_a,verification,/m/0199g,1
img_b,verification,/m/01yrx,0
img_b,verification,/m/01yrx,1
img_b,verification,/m/0k4j,0
"""


def test_positive_negative_unannotated_with_trainable_order(tmp_path, caplog):
    root = write_root(tmp_path, ROWS)
    with caplog.at_level(logging.INFO):
        ds = load_dataset("openimages", root, "val")
    labels = ds.labels
    assert labels.is_sparse and not labels.complete
    # Class order is the trainable file's order, not the description file's.
    assert ds.class_names == ["Car", "Person", "Dog", "Cat"]
    # Images sorted by id.
    assert labels.image_ids.tolist() == ["img_a", "img_b", "img_c"]
    assert [Path(p).name for p in ds.image_paths] == ["img_a.jpg", "img_b.jpg", "img_c.jpg"]
    assert all(Path(p).parent == root / "validation" for p in ds.image_paths)
    expected = np.array([
        # Car  Person Dog  Cat
        [UNK, UNK, POS, UNK],  # img_a: Dog twice (merged), Bicycle outside the class set (skipped)
        [NEG, UNK, UNK, POS],  # img_b: Cat 0 and 1 -> positive wins
        [NEG, POS, UNK, UNK],  # img_c
    ], dtype=np.int8)
    np.testing.assert_array_equal(labels.to_dense(), expected)
    assert ds.missing_images == 0
    text = caplog.text
    assert "skipped 1 of 8 rows" in text and "/m/0199g" in text
    assert "merged 2 duplicate rows; 1 (image, class) pairs had both" in text
    assert ds.notes == {"openimages_labels": "full", "annotation_file": "validation-annotations-human-imagelabels.csv",
                        "rows_outside_class_list": 1, "duplicate_rows_merged": 2,
                        "conflicting_pairs_kept_positive": 1}
    from plbench.datasets.summary import format_summary, summarize_split

    shown = format_summary(summarize_split(ds))
    assert "rows outside class list: 1" in shown and "duplicate rows merged: 2" in shown


def test_missing_images_counted_or_strict(tmp_path, caplog):
    root = write_root(tmp_path, ROWS, images=("img_a", "img_c"))
    ds = load_dataset("openimages", root, "validation")
    assert ds.missing_images == 1
    assert ds.labels.image_ids.tolist() == ["img_a", "img_c"]
    np.testing.assert_array_equal(ds.labels.to_dense()[1], [NEG, POS, UNK, UNK])  # rows re-indexed
    assert "1 of 3 images are missing" in caplog.text
    with pytest.raises(InputError, match=r"1 of 3 images listed in validation-annotations.* are missing.*img_b"):
        load_dataset("openimages", root, "validation", strict=True)
    ds = load_dataset("openimages", root, "validation", check_images=False)
    assert len(ds) == 3 and ds.missing_images == 0


def test_without_trainable_uses_all_described_classes_and_disambiguates(tmp_path):
    root = write_root(tmp_path, ROWS, trainable=None)
    ds = load_dataset("openimages", root, "val")
    assert ds.class_names == ["Person", "Bicycle", "Car", "Cat", "Dog", "Ball (/m/018xm)", "Ball (/m/0156sn)"]
    dense = ds.labels.to_dense()
    assert dense[0, 1] == POS  # Bicycle now in the class set


def test_class_list_option_and_csv_class_list(tmp_path):
    root = write_root(tmp_path, ROWS)
    lst = tmp_path / "classes.csv"
    lst.write_text("LabelName,DisplayName\n/m/01yrx,Cat\n/m/0199g,Bicycle\n")
    ds = load_dataset("openimages", root, "val", class_list=lst)
    assert ds.class_names == ["Cat", "Bicycle"]
    np.testing.assert_array_equal(ds.labels.to_dense(), [[UNK, POS], [POS, UNK], [UNK, UNK]])


def test_bad_confidence_header_and_split(tmp_path):
    root = write_root(tmp_path, "img_a,machine,/m/0k4j,0.7\n")
    with pytest.raises(InputError, match=r"Confidence: expected 1 \(positive\) or 0 \(negative\), but got 0.7"):
        load_dataset("openimages", root, "val")
    (root / "validation-annotations-human-imagelabels.csv").write_text("ImageID,Label\nx,/m/0k4j\n")
    with pytest.raises(InputError, match="expected columns ImageID,LabelName,Confidence"):
        load_dataset("openimages", root, "val")
    with pytest.raises(InputError, match="expected one of train, val, validation, test, but got 'dev'"):
        load_dataset("openimages", root, "dev")
    shutil.rmtree(root / "validation")
    (root / "validation-annotations-human-imagelabels.csv").write_text(HEADER + ROWS)
    with pytest.raises(InputError, match="expected the validation image folder"):
        load_dataset("openimages", root, "val")


def test_csl_data_csv_long_and_wide(tmp_path):
    root = write_root(tmp_path, ROWS)
    (root / "validation-annotations-human-imagelabels.csv").unlink()
    (root / "data.csv").write_text(
        "ImageID,split,LabelName,Confidence\n"
        "img_a,val,/m/0bt9lr,1\nimg_b,val,/m/01yrx,0\nimg_c,train,/m/0k4j,1\n")
    ds = load_dataset("openimages", root, "validation")
    assert ds.labels.image_ids.tolist() == ["img_a", "img_b"]
    np.testing.assert_array_equal(ds.labels.to_dense(), [[UNK, UNK, POS, UNK], [UNK, UNK, UNK, NEG]])
    (root / "data.csv").write_text(
        "ImageID,split,positive_labels,negative_labels\n"
        "img_a,validation,\"['/m/0bt9lr', '/m/01g317']\",/m/0k4j\n"
        "img_b,validation,,\n"
        "img_c,train,/m/0k4j,\n")
    ds = load_dataset("openimages", root, "val")
    assert ds.labels.image_ids.tolist() == ["img_a", "img_b"]  # img_b kept though it has no label
    np.testing.assert_array_equal(ds.labels.to_dense(), [[NEG, POS, POS, UNK], [UNK, UNK, UNK, UNK]])


def test_real_class_descriptions(real_fixtures):
    path = real_fixtures / "openimages" / "oidv6-class-descriptions.csv"
    desc = read_class_descriptions(path)
    assert len(desc) == 19994
    assert desc["/m/0100nhbf"] == "Sprenger's tulip"
    assert desc["/m/01c_0l"] == "Ducks, geese and swans"  # quoted field with commas
    assert desc["/m/01g317"] == "Person"
    mids = list(desc)
    names = class_names_for(mids, desc)
    assert len(set(names)) == len(names) == 19994
    assert names[mids.index("/m/018xm")] == "Ball (/m/018xm)"
    assert names[mids.index("/m/01g317")] == "Person"


def test_real_descriptions_through_loader(real_fixtures, tmp_path):
    root = tmp_path / "oi"
    (root / "validation").mkdir(parents=True)
    shutil.copy(real_fixtures / "openimages" / "oidv6-class-descriptions.csv", root)
    (root / "validation-annotations-human-imagelabels.csv").write_text(
        HEADER + "0001eeaf4aed83f9,verification,/m/01c_0l,1\n0001eeaf4aed83f9,verification,/m/0100nhbf,0\n")
    (root / "validation" / "0001eeaf4aed83f9.jpg").write_bytes(b"")
    ds = load_dataset("openimages", root, "val")
    assert ds.num_classes == 19994
    dense = ds.labels.batch([0])[0]
    assert ds.class_names[int(np.flatnonzero(dense == POS)[0])] == "Ducks, geese and swans"
    assert ds.class_names[int(np.flatnonzero(dense == NEG)[0])] == "Sprenger's tulip"
    assert (dense == UNK).sum() == 19992


def test_read_class_list_rejects_non_mids(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("/m/01\nPerson\n")
    with pytest.raises(InputError, match="expected MIDs such as /m/01g317, but got 'Person'"):
        read_class_list(p)


def test_find_splits_per_split_files_and_data_csv(tmp_path):
    from plbench.datasets import find_splits

    root = write_root(tmp_path, ROWS)  # validation file only
    (root / "annotations").mkdir()
    (root / "annotations" / "test-annotations-human-imagelabels.csv").write_text(HEADER + ROWS)
    found = {s.split: s.path for s in find_splits("openimages", root)}
    assert found == {"train": None, "validation": root / "validation-annotations-human-imagelabels.csv",
                     "test": root / "annotations" / "test-annotations-human-imagelabels.csv"}
    for name in ("validation-annotations-human-imagelabels.csv", "annotations/test-annotations-human-imagelabels.csv"):
        (root / name).unlink()
    (root / "data.csv").write_text("ImageID,split,LabelName,Confidence\nimg_a,val,/m/0bt9lr,1\nimg_c,train,/m/0k4j,1\n")
    found = {s.split: s.path for s in find_splits("openimages", root)}
    assert found == {"train": root / "data.csv", "validation": root / "data.csv", "test": None}
    (root / "data.csv").unlink()
    with pytest.raises(InputError) as e:
        find_splits("openimages", root)
    assert e.value.field == "annotations" and "at least one openimages split, but found none" in e.value.problem
    assert "train: oidv6-train-annotations-human-imagelabels.csv or annotations/oidv6-train" in e.value.problem
    assert "test: test-annotations-human-imagelabels.csv" in e.value.problem


def test_find_splits_without_finder_assumes_train_and_val(tmp_path):
    from plbench.datasets import find_splits

    assert [(s.split, s.path) for s in find_splits("fiftyone", tmp_path)] == [("train", tmp_path), ("val", tmp_path)]
    with pytest.raises(InputError, match="expected options the lvis loader accepts"):
        find_splits("lvis", tmp_path, class_list="x")


# --- boxable subset: accepted, chosen explicitly when the full labels are there too ---------------------------

BOXABLE = {"train": "train-annotations-human-imagelabels-boxable.csv",
           "validation": "validation-annotations-human-imagelabels-boxable.csv",
           "test": "test-annotations-human-imagelabels-boxable.csv"}
BOXABLE_ROWS = "img_a,verification,/m/01yrx,1\nimg_b,verification,/m/0k4j,1\n"  # differs from ROWS on purpose


def boxable_root(tmp_path: Path) -> Path:
    """Only the three published boxable files (in annotations/ for test), as a new user downloads them."""
    root = write_root(tmp_path, ROWS)
    (root / "validation-annotations-human-imagelabels.csv").unlink()
    (root / "annotations").mkdir()
    for split, name in BOXABLE.items():
        (root / ("annotations" if split == "test" else "") / name).write_text(HEADER + BOXABLE_ROWS)
    for folder in ("train", "test"):
        (root / folder).mkdir()
        for stem in ("img_a", "img_b"):
            (root / folder / f"{stem}.jpg").write_bytes(b"\xff\xd8")
    return root


@pytest.mark.parametrize("split", ["train", "validation", "val", "test"])
def test_boxable_files_are_found(tmp_path, split):
    root = boxable_root(tmp_path)
    ds = load_dataset("openimages", root, split)
    canonical = "validation" if split == "val" else split
    assert ds.notes["openimages_labels"] == "boxable" and ds.notes["annotation_file"] == BOXABLE[canonical]
    assert ds.labels.image_ids.tolist() == ["img_a", "img_b"]
    # classes: Car Person Dog Cat
    np.testing.assert_array_equal(ds.labels.to_dense(), [[UNK, UNK, UNK, POS], [POS, UNK, UNK, UNK]])
    assert load_dataset("openimages", root, split, openimages_labels="boxable").notes == ds.notes


def test_full_and_boxable_need_an_explicit_choice(tmp_path):
    from typer.testing import CliRunner

    from plbench.cli import app
    from plbench.datasets import find_splits
    from plbench.datasets.openimages import OpenImagesLabels

    root = boxable_root(tmp_path)
    (root / "validation-annotations-human-imagelabels.csv").write_text(HEADER + ROWS)  # the full file too
    with pytest.raises(InputError) as e:
        load_dataset("openimages", root, "val")
    assert e.value.field == "openimages_labels"
    assert e.value.problem == (
        "expected one kind of image-level labels files, but found both (full: validation-annotations-human-"
        "imagelabels.csv; boxable: train-annotations-human-imagelabels-boxable.csv, validation-annotations-human-"
        "imagelabels-boxable.csv, annotations/test-annotations-human-imagelabels-boxable.csv)")
    assert "--openimages-labels full or --openimages-labels boxable" in e.value.fix
    full = load_dataset("openimages", root, "val", openimages_labels="full")
    assert full.notes["openimages_labels"] == "full" and full.labels.num_images == 3
    boxable = load_dataset("openimages", root, "val", openimages_labels=OpenImagesLabels.BOXABLE)
    assert boxable.notes["openimages_labels"] == "boxable" and boxable.labels.num_images == 2
    with pytest.raises(InputError, match="--openimages-labels: expected one of full, boxable, but got 'both'"):
        load_dataset("openimages", root, "val", openimages_labels="both")
    # the full kind has no train file: the error lists the full names, then every other accepted name
    with pytest.raises(InputError) as e:
        load_dataset("openimages", root, "train", openimages_labels="full")
    assert e.value.problem == (
        "no OpenImages labels for split 'train' (looked in the folder and its annotations/ subfolder for "
        "oidv6-train-annotations-human-imagelabels.csv, train-annotations-human-imagelabels.csv (the full labels; "
        "other accepted names: train-annotations-human-imagelabels-boxable.csv, data.csv))")
    assert [s.split for s in find_splits("openimages", root, openimages_labels="full") if s.path] == ["validation"]
    assert [s.split for s in find_splits("openimages", root, openimages_labels="boxable") if s.path] == [
        "train", "validation", "test"]

    runner = CliRunner()
    base = ["data", "info", "--dataset", "openimages", "--data-root", str(root)]
    res = runner.invoke(app, base)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "expected one kind of image-level labels files, but found both" in " ".join(res.output.split())
    res = runner.invoke(app, base + ["--openimages-labels", "boxable"])
    assert res.exit_code == 0, res.output
    assert [ln for ln in res.stdout.splitlines() if ln.startswith("openimages / ")] == [
        "openimages / train: 2 images, 4 classes (partial labels)",
        "openimages / validation: 2 images, 4 classes (partial labels)",
        "openimages / test: 2 images, 4 classes (partial labels)"]
    assert "openimages labels: boxable" in res.stdout
    res = runner.invoke(app, base + ["--openimages-labels", "some"])
    flat = " ".join(res.output.replace("│", " ").split())  # typer draws a box
    assert res.exit_code == 2 and "'some' is not one of 'full', 'boxable'" in flat


def test_no_labels_error_lists_every_accepted_name(tmp_path):
    root = write_root(tmp_path, ROWS)
    (root / "validation-annotations-human-imagelabels.csv").unlink()
    with pytest.raises(InputError) as e:
        load_dataset("openimages", root, "val")
    assert e.value.problem == (
        "no OpenImages labels for split 'validation' (looked in the folder and its annotations/ subfolder for "
        "validation-annotations-human-imagelabels.csv, oidv6-validation-annotations-human-imagelabels.csv, "
        "validation-annotations-human-imagelabels-boxable.csv, data.csv)")

"""`plbench data info` / `data cache`: summary records (exact counts), text, JSON, exit codes."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from plbench.cli import app
from plbench.datasets.base import DatasetSplit
from plbench.datasets.images import ImageCache
from plbench.datasets.summary import format_summary, summarize_split
from plbench.labels import PartialLabels

from test_datasets_lvis import sample_data, write  # tests/ is on sys.path (no package)


def test_summary_counts_sparse_partial():
    labels = PartialLabels.from_sparse(
        rows=[0, 0, 1, 2, 2, 2], cols=[0, 2, 2, 0, 1, 2], values=[1, 0, 1, 1, 0, 1],
        image_ids=[10, 11, 12, 13], class_names=["a", "b", "c"], complete=False)
    split = DatasetSplit("x", "train", np.array(["p"] * 4, dtype=object), labels, "f" * 64,
                         class_groups={"rare": np.array([1])}, missing_images=2)
    s = summarize_split(split, top=2)
    assert (s.images, s.classes, s.positives, s.negatives) == (4, 3, 4, 2)
    assert s.annotated_fraction == 6 / 12
    assert [(r.name, r.positives, r.negatives) for r in s.most_frequent] == [("a", 2, 0), ("c", 2, 1)]  # tie: lower index first
    assert [(r.name, r.positives) for r in s.least_frequent] == [("b", 0), ("a", 2)]
    assert s.groups == {"rare": 1} and s.missing_images == 2 and not s.complete
    text = format_summary(s)
    assert "x / train: 4 images, 3 classes (partial labels)" in text
    assert "annotations: 4 positive, 2 negative; annotated fraction 0.5000" in text
    assert "missing image files: 2" in text and "class groups: rare 1" in text


def test_data_info_cli_lvis(tmp_path):
    write(tmp_path, "val", sample_data())
    write(tmp_path, "train", sample_data())
    runner = CliRunner()
    res = runner.invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path), "--top", "2"])
    assert res.exit_code == 0, res.output
    assert "lvis / train: 4 images, 4 classes (partial labels)" in res.output
    assert "lvis / val: 4 images" in res.output
    assert "annotations: 4 positive, 3 negative; annotated fraction 0.4375" in res.output
    assert "class groups: rare 1, common 1, frequent 2" in res.output
    res = runner.invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path), "--split", "val",
                              "--json"])
    rec = json.loads(res.output)
    assert len(rec) == 1 and rec[0]["positives"] == 4 and rec[0]["most_frequent"][0]["name"] == "apple"
    res = runner.invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path / "no")])
    flat = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert ("annotations: expected the annotations of at least one lvis split, but found none (looked for "
            "train: lvis_v1_train.json or annotations/lvis_v1_train.json or lvis_v0.5_train.json or "
            "annotations/lvis_v0.5_train.json; val: lvis_v1_val.json or annotations/lvis_v1_val.json or "
            "lvis_v0.5_val.json or annotations/lvis_v0.5_val.json). Fix: point --data-root") in flat
    res = runner.invoke(app, ["data", "info", "--dataset", "imagenet"])
    flat = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--dataset: expected one of coco, fiftyone, lvis, nuswide, openimages, synthetic, but got 'imagenet'" in flat
    res = runner.invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path), "--fo-field", "gt"])
    flat = " ".join(res.output.split())
    assert res.exit_code == 2 and "expected options the lvis loader accepts (strict), but got fo_field" in flat


def test_data_cache_cli_split_without_images(tmp_path):
    from test_datasets_coco import write_coco

    write_coco(tmp_path, make_images=False)
    res = CliRunner().invoke(app, ["data", "cache", "--dataset", "coco", "--data-root", str(tmp_path),
                                   "--split", "val", "--out", str(tmp_path / "c")])
    flat = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--split: expected images in split 'val' of coco, but it has none (3 listed images have no file)" in flat
    assert "check --split and --data-root" in flat and not (tmp_path / "c").exists()


def test_data_cache_cli_real_coco(real_fixtures, tmp_path):
    root = real_fixtures / "coco2017_sample"
    out = tmp_path / "cache"
    res = CliRunner().invoke(app, ["data", "cache", "--dataset", "coco", "--data-root", str(root), "--split", "val",
                                   "--size", "32", "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert f"cached 6 images of 32x32 into {out}" in res.output
    cache = ImageCache.open(out)
    assert cache.size == 32 and len(cache) == 6 and cache.failed == []
    assert all(p.startswith(str(root / "val2017")) for p in cache.paths)


def test_data_info_shows_the_splits_that_exist(tmp_path):
    """A root holding only lvis_v1_val.json: val is shown, train is named as absent; --split train fails."""
    write(tmp_path, "val", sample_data())
    runner = CliRunner()
    res = runner.invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "lvis / val: 4 images, 4 classes (partial labels)" in res.stdout
    assert "lvis / train" not in res.output
    note = " ".join(res.stderr.split())
    assert (f"note: lvis split 'train' not found in {tmp_path} (looked for lvis_v1_train.json, "
            f"annotations/lvis_v1_train.json, lvis_v0.5_train.json, annotations/lvis_v0.5_train.json); "
            f"showing val") in note
    res = runner.invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path), "--json"])
    assert [r["split"] for r in json.loads(res.stdout)] == ["val"]  # the note stays out of the JSON
    res = runner.invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path), "--split", "train"])
    flat = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"Error in {tmp_path}, annotations: no LVIS file for split 'train' (looked for lvis_v1_train.json" in flat
    res = runner.invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path), "--split", "test"])
    assert res.exit_code == 2
    assert "--split: expected one of train, val, validation for LVIS, but got 'test'" in res.output


def test_data_info_coco_val_only(tmp_path):
    from test_datasets_coco import write_coco

    write_coco(tmp_path)
    (tmp_path / "annotations" / "instances_train2017.json").unlink(missing_ok=True)
    res = CliRunner().invoke(app, ["data", "info", "--dataset", "coco", "--data-root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "coco / val:" in res.stdout and "coco / train" not in res.stdout
    assert "annotations/instances_train2017.json, annotations/instances_train2014.json" in res.stderr


def test_most_frequent_lists_only_classes_with_positives():
    labels = PartialLabels.from_dense(np.array([[1, 0, -1, 0], [1, -1, 0, 1], [0, 0, -1, 0]], dtype=np.int8),
                                      [1, 2, 3], ["a", "b", "c", "d"], complete=False)
    split = DatasetSplit("x", "val", np.array(["p"] * 3, dtype=object), labels, "f" * 64)
    s = summarize_split(split, top=5)
    assert [(r.name, r.positives) for r in s.most_frequent] == [("a", 2), ("d", 1)]  # b, c: no positive
    assert [(r.name, r.positives) for r in s.least_frequent] == [("b", 0), ("c", 0), ("d", 1), ("a", 2)]
    assert s.classes_without_positives == 2
    text = format_summary(s)
    most = text.split("most frequent:\n")[1].split("  least frequent:")[0].splitlines()
    assert [ln.split()[0] for ln in most] == ["a", "d"]
    assert "classes without any positive: 2 of 4" in text
    empty = DatasetSplit("x", "val", np.array(["p"], dtype=object),
                         PartialLabels.from_dense(np.zeros((1, 2), np.int8), [1], ["a", "b"]), "f" * 64)
    s = summarize_split(empty, top=5)
    assert s.most_frequent == [] and "most frequent" not in format_summary(s)


def test_data_info_real_lvis_classes_top_is_not_padded(real_fixtures, tmp_path):
    """1,203 real classes, 2 of them with a positive: --top 5 lists those 2, not 3 classes without any."""
    from test_datasets_lvis import image, lvis_file

    cats = json.loads((real_fixtures / "lvis_v1_categories.json").read_text())
    ids = {c["name"]: c["id"] for c in cats}
    data = lvis_file([image(1, "val2017", neg=[ids["zebra"]]), image(2, "val2017")],
                     [{"id": 1, "image_id": 1, "category_id": ids["aerosol_can"]},
                      {"id": 2, "image_id": 2, "category_id": ids["aerosol_can"]},
                      {"id": 3, "image_id": 2, "category_id": ids["zucchini"]}], cats)
    write(tmp_path, "val", data)
    res = CliRunner().invoke(app, ["data", "info", "--dataset", "lvis", "--data-root", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)[0]
    assert [(r["name"], r["positives"]) for r in rec["most_frequent"]] == [("aerosol_can", 2), ("zucchini", 1)]
    assert rec["classes_without_positives"] == 1201 and len(rec["least_frequent"]) == 5
    assert all(r["positives"] == 0 for r in rec["least_frequent"])

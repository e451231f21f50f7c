"""Seen / unseen splits: NUS-WIDE's 925 / 81 from the real class files, split files, seeded draws, restriction."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from plbench.errors import InputError
from plbench.labels import PartialLabels
from plbench.zsl.splits import (ZSLSplit, draw_split, nuswide_split, read_nuswide_split, read_split_file,
                                restrict_labels, restrict_matrix, split_from_unseen, write_split_file)

NAMES = ["cat", "dog", "car", "bus", "tree", "sky"]


def test_nuswide_split_from_real_files(real_fixtures, tmp_path):
    src = real_fixtures / "nuswide"
    for name in ("TagList1k.txt", "Concepts81.txt"):  # flat, as the zero-shot code releases ship them
        shutil.copyfile(src / name, tmp_path / name)
    split = read_nuswide_split(tmp_path)
    assert (split.num_seen, split.num_unseen, len(split.classes)) == (925, 81, 1006)
    assert split.unseen[0] == "airport" and split.seen[:3] == ("nature", "blue", "red")  # sky, water, clouds are concepts
    assert set(split.unseen) - set(split.seen) == set(split.unseen)
    # the same split read through ML-Decoder's benchmark_81_v0.json over the 1,006 sorted names
    via_json = read_split_file(src / "benchmark_81_v0.json", sorted(split.classes))
    assert set(via_json.unseen) == set(split.unseen) and set(via_json.seen) == set(split.seen)
    assert list(via_json.unseen) == sorted(split.unseen)  # dataset (sorted) order, as ML-Decoder indexes them


def test_nuswide_split_pure():
    s = nuswide_split(["a", "b", "c"], ["b", "z"])
    assert s == ZSLSplit(("a", "c"), ("b", "z"), "nuswide") and s.classes == ("a", "c", "b", "z")


def test_split_files(tmp_path):
    txt = tmp_path / "unseen.txt"
    txt.write_bytes(b"# held out\r\nbus\r\n\r\ncat\r\n")
    s = read_split_file(txt, NAMES)
    assert s.unseen == ("cat", "bus") and s.seen == ("dog", "car", "tree", "sky")
    js = tmp_path / "split.json"
    js.write_text(json.dumps({"test class": ["sky"], "train class": ["cat", "dog"]}))
    s = read_split_file(js, NAMES)
    assert (s.seen, s.unseen) == (("cat", "dog"), ("sky",))
    js.write_text(json.dumps({"test class": ["sky", "boat"]}))
    with pytest.raises(InputError, match="1 are not.*boat"):
        read_split_file(js, NAMES)
    js.write_text(json.dumps({"unseen": ["sky"]}))
    with pytest.raises(InputError, match="'test class'"):
        read_split_file(js, NAMES)
    js.write_text(json.dumps({"test class": NAMES}))
    with pytest.raises(InputError, match="at least one seen class"):
        read_split_file(js, NAMES)
    with pytest.raises(InputError, match="missing"):
        read_split_file(tmp_path / "nope.json", NAMES)


def test_draw_is_seeded_and_round_trips(tmp_path):
    a, b = draw_split(NAMES, 2, seed=3), draw_split(NAMES, 2, seed=3)
    assert a == b and a.num_unseen == 2 and a.source == "seed=3"
    assert any(draw_split(NAMES, 2, seed=s).unseen != a.unseen for s in range(4, 10))  # the seed matters
    write_split_file(tmp_path / "s.json", a)
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # atomic: no temp file left
    back = read_split_file(tmp_path / "s.json", NAMES)
    assert (back.seen, back.unseen) == (a.seen, a.unseen)
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        draw_split(NAMES, 6, seed=0)


def test_split_validation():
    with pytest.raises(ValueError, match="disjoint"):
        ZSLSplit(("a", "b"), ("b",))
    with pytest.raises(ValueError, match="once"):
        ZSLSplit(("a", "a"), ("b",))
    assert split_from_unseen(NAMES, ["sky", "cat"]).unseen == ("cat", "sky")


def test_restrict_dense_and_sparse():
    m = np.array([[1, 0, 0, 0, 1, 0],   # seen positive (cat)
                  [0, 0, 0, 0, 0, 1],   # only unseen positive (sky): dropped
                  [-1, 1, 0, 0, 0, 0],  # dog positive, cat unknown
                  [0, 0, 0, 0, -1, 0]], dtype=np.int8)
    split = split_from_unseen(NAMES, ["tree", "sky"])
    sub, rows, dropped = restrict_matrix(m, np.arange(4))
    assert rows.tolist() == [0, 2] and dropped == 2 and sub.tolist() == [[1, 0, 0, 0], [-1, 1, 0, 0]]
    lab = PartialLabels.from_dense(m, ["a", "b", "c", "d"], NAMES)
    out, rows, dropped = restrict_labels(lab, split.seen)
    assert out.class_names == list(split.seen) and list(out.image_ids) == ["a", "c"] and dropped == 2
    sp, rows_sp, dropped_sp = restrict_labels(lab.to_sparse(), split.seen)
    assert sp.is_sparse and sp == out and rows_sp.tolist() == rows.tolist() and dropped_sp == 2
    un, _, d = restrict_labels(lab, ["sky", "tree"], drop_empty=False)
    assert d == 0 and un.to_dense().tolist() == [[0, 1], [1, 0], [0, 0], [0, -1]]
    with pytest.raises(ValueError, match="boat"):
        restrict_labels(lab, ["boat"])

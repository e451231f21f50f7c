"""Cole et al.'s held-out validation split (plbench.datasets.holdout).

Reference: github.com/elijahcole/single-positive-multi-label @ 89152d5, ``datasets.py::generate_split``
(``val_frac = 0.2``, ``np.random.RandomState(1200)``) on the list ``preproc/format_coco.py`` builds (image ids
sorted as strings), run in a scratch folder on the inputs below; its outputs are hard-coded here.
"""

from __future__ import annotations

import numpy as np
import pytest

from plbench.datasets import load_dataset
from plbench.datasets.holdout import parse_holdout_split, spml_holdout
from plbench.datasets.synthetic import write_synthetic_coco
from plbench.errors import InputError

IDS = [5, 100, 25, 3, 1000, 42, 7, 99, 12, 8, 250, 61, 1, 300, 77]
# generate_split(15, 0.2, RandomState(1200)) on [1, 100, 1000, 12, 25, 250, 3, 300, 42, 5, 61, 7, 77, 8, 99]:
# idx_2 = [3, 7, 9] -> image ids 12, 300, 5
AUTHORS_HELD_OUT = [12, 300, 5]


def test_held_out_ids_match_the_authors_split():
    ids = np.array(IDS)
    train, val = spml_holdout(ids, np.ones(ids.size, bool))
    assert sorted(ids[val].tolist()) == sorted(AUTHORS_HELD_OUT)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(ids.size))
    # the list is the set of ids sorted as strings: the input order does not matter; images without a
    # positive are not in the list and belong to neither part
    perm = np.random.default_rng(0).permutation(ids.size)
    extra = np.concatenate([ids[perm], [2, 4]])
    has = np.concatenate([np.ones(ids.size, bool), [False, False]])
    train2, val2 = spml_holdout(extra.astype(str), has)
    assert sorted(extra[val2].tolist()) == sorted(AUTHORS_HELD_OUT)
    assert set(extra[train2].tolist()) == set(IDS) - set(AUTHORS_HELD_OUT)


def test_coco_train2014_sized_split_matches_the_authors_numbers():
    n = 82081  # COCO train2014 images with at least one instance
    ids = 100000 + np.arange(n)  # six digits: string order = numeric order = row order
    train, val = spml_holdout(ids, np.ones(n, bool))
    # generate_split(82081, 0.2, RandomState(1200)): 65665 / 16416, idx_2[:8] and sum(idx_2)
    assert (train.size, val.size) == (65665, 16416)
    assert val[:8].tolist() == [3, 4, 34, 37, 48, 64, 69, 76]
    assert int(val.sum()) == 667885558


def test_split_names():
    assert parse_holdout_split("train2014-spml-val") == ("train2014", "val")
    assert parse_holdout_split("train-spml-train") == ("train", "train")
    assert parse_holdout_split("train2014") == ("train2014", None)
    assert parse_holdout_split("-spml-val") == ("-spml-val", None)
    with pytest.raises(ValueError, match="both parts non-empty"):
        spml_holdout(np.arange(2), np.ones(2, bool))


def test_load_dataset_parts(tmp_path):
    write_synthetic_coco(tmp_path, train=40, val=1, num_classes=5, image_size=32, seed=0)
    full = load_dataset("synthetic", tmp_path, "train")
    tr = load_dataset("synthetic", tmp_path, "train-spml-train")
    va = load_dataset("synthetic", tmp_path, "train-spml-val")
    has = (full.labels.to_dense() == 1).any(1)
    _, val_rows = spml_holdout(full.labels.image_ids, has)
    assert va.labels.image_ids.tolist() == full.labels.image_ids[val_rows].tolist()
    assert va.image_paths.tolist() == full.image_paths[val_rows].tolist()
    assert np.array_equal(va.labels.to_dense(), full.labels.to_dense()[val_rows])
    assert set(tr.labels.image_ids.tolist()).isdisjoint(va.labels.image_ids.tolist())
    assert len(tr) + len(va) == int(has.sum())
    assert va.split == "train-spml-val" and len({full.fingerprint, tr.fingerprint, va.fingerprint}) == 3
    with pytest.raises(InputError, match="both parts non-empty"):
        load_dataset("synthetic", tmp_path, "val-spml-val")

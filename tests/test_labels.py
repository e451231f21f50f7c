"""The partial-label store: construction, layouts, batches, counts, equality, fingerprints."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from plbench.labels import NEG, POS, UNK, PartialLabels

# 4 images x 3 classes, hand-checked counts below
SMALL = np.array(
    [
        [1, 0, -1],
        [-1, -1, -1],
        [0, 1, 1],
        [1, -1, 0],
    ],
    dtype=np.int8,
)
NAMES = ["cat", "dog", "bird"]


def random_labels(n: int, c: int, seed: int, complete: bool, p_pos: float = 0.2, p_unk: float = 0.4) -> PartialLabels:
    rng = np.random.default_rng(seed)
    m = np.where(rng.random((n, c)) < p_pos, POS, NEG).astype(np.int8)
    if not complete:
        m[rng.random((n, c)) < p_unk] = UNK
    return PartialLabels.from_dense(m, np.arange(100, 100 + n), [f"c{i}" for i in range(c)], complete=complete)


def test_codes_are_the_documented_values():
    assert (POS, NEG, UNK) == (1, 0, -1)


def test_import_leaves_torch_out():
    code = "import sys, plbench.labels; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_counts_and_fraction_by_hand():
    lab = PartialLabels.from_dense(SMALL, ["a", "b", "c", "d"], NAMES)
    c = lab.counts()
    assert c.positives.tolist() == [2, 1, 1]
    assert c.negatives.tolist() == [1, 1, 1]
    assert c.unannotated.tolist() == [1, 2, 2]
    assert c.positives.dtype == np.int64
    assert lab.annotated_fraction() == pytest.approx(7 / 12)
    sp = lab.to_sparse()
    assert sp.is_sparse and not sp.complete
    for got, want in zip(vars(sp.counts()).values(), vars(c).values()):
        np.testing.assert_array_equal(got, want)
    assert sp.annotated_fraction() == pytest.approx(7 / 12)


def test_complete_sparse_counts_implicit_negatives():
    lab = PartialLabels.from_sparse([0, 2, 2], [1, 0, 2], [1, 1, 1], ["a", "b", "c"], NAMES, complete=True)
    c = lab.counts()
    assert c.positives.tolist() == [1, 1, 1]
    assert c.negatives.tolist() == [2, 2, 2]
    assert c.unannotated.tolist() == [0, 0, 0]
    assert lab.annotated_fraction() == 1.0
    np.testing.assert_array_equal(lab.to_dense(), [[0, 1, 0], [0, 0, 0], [1, 0, 1]])


def test_from_sparse_sorts_and_drops_redundant_negatives():
    lab = PartialLabels.from_sparse([2, 0, 1, 0], [1, 2, 0, 0], [1, 0, 1, 1], range(3), NAMES, complete=False)
    r, c, v = lab.sparse
    assert r.tolist() == [0, 0, 1, 2] and c.tolist() == [0, 2, 0, 1] and v.tolist() == [1, 0, 1, 1]
    assert (r.dtype, c.dtype, v.dtype) == (np.int64, np.int32, np.int8)
    full = PartialLabels.from_sparse([2, 0, 1, 0], [1, 2, 0, 0], [1, 0, 1, 1], range(3), NAMES, complete=True)
    assert full.sparse[2].tolist() == [1, 1, 1]  # the explicit negative is implied
    assert full.to_dense()[0, 2] == NEG


@pytest.mark.parametrize(
    "rows, cols, values, match",
    [
        ([0, 0], [1, 1], [1, 0], "duplicate"),
        ([0, 5], [0, 1], [1, 1], r"row indices must lie in \[0, 3\)"),
        ([0, 1], [0, 3], [1, 1], r"class indices must lie in \[0, 3\)"),
        ([0, 1], [0, 1], [1, -1], r"expected sparse values in \{1, 0\}, but got \[-1\]"),
        ([0, 1], [0], [1, 1], "equal 1-D shapes"),
    ],
)
def test_from_sparse_rejects_bad_input(rows, cols, values, match):
    with pytest.raises(ValueError, match=match):
        PartialLabels.from_sparse(rows, cols, values, range(3), NAMES, complete=False)


def test_from_dense_rejects_bad_input():
    with pytest.raises(ValueError, match=r"expected label values in \{1, 0, -1\}, but got \[2\]"):
        PartialLabels.from_dense([[1, 2, 0]], ["a"], NAMES)
    with pytest.raises(ValueError, match="does not match 2 image ids"):
        PartialLabels.from_dense(SMALL, ["a", "b"], NAMES)
    with pytest.raises(ValueError, match="2-D"):
        PartialLabels.from_dense(np.zeros(3), ["a"], NAMES)
    with pytest.raises(ValueError, match="no -1"):
        PartialLabels.from_dense(SMALL, range(4), NAMES, complete=True)


@pytest.mark.parametrize("complete", [True, False])
def test_dense_sparse_round_trip_and_batches(complete):
    dense = random_labels(60, 7, seed=1, complete=complete)
    dense.matrix[5] = NEG if complete else UNK  # a row with nothing explicit in the sparse layout
    sparse = dense.to_sparse()
    assert sparse.complete == complete
    if complete:
        assert (sparse.sparse[2] == POS).all()  # only positives stored
    np.testing.assert_array_equal(sparse.to_dense(), dense.matrix)
    assert sparse.to_dense_labels() == dense and sparse == dense
    idx = np.array([5, 0, 59, 5, 17, 17, 3, -1])
    b = sparse.batch(idx)
    assert b.dtype == np.int8 and b.shape == (8, 7)
    np.testing.assert_array_equal(b, dense.matrix[idx])
    np.testing.assert_array_equal(dense.batch(idx), dense.matrix[idx])
    assert sparse.batch([]).shape == (0, 7)


@pytest.mark.parametrize("complete", [True, False])
def test_subset_matches_across_layouts(complete):
    dense = random_labels(40, 5, seed=2, complete=complete)
    idx = [39, 0, 7, 7, 12]
    a, b = dense.subset(idx), dense.to_sparse().subset(idx)
    assert b.is_sparse and not a.is_sparse
    assert a.complete == b.complete == complete
    assert a.image_ids.tolist() == [139, 100, 107, 107, 112]
    np.testing.assert_array_equal(a.matrix, dense.matrix[idx])
    np.testing.assert_array_equal(b.to_dense(), dense.matrix[idx])
    r, c, _ = b.sparse
    assert (np.diff(r * 5 + c) > 0).all()  # still sorted by (row, col)


def test_batch_rejects_out_of_range():
    lab = PartialLabels.from_dense(SMALL, range(4), NAMES).to_sparse()
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        lab.batch([0, 4])


def test_equality_and_fingerprint():
    a = random_labels(30, 4, seed=3, complete=False)
    assert a.fingerprint() == a.to_sparse().fingerprint()
    b_matrix = a.matrix.copy()
    b_matrix[0, 0] = POS if b_matrix[0, 0] != POS else NEG
    b = PartialLabels.from_dense(b_matrix, a.image_ids, a.class_names)
    assert a != b and a.to_sparse() != b.to_sparse()
    assert a.fingerprint() != b.fingerprint()
    renamed = PartialLabels.from_dense(a.matrix, a.image_ids, ["x", "c1", "c2", "c3"])
    assert a != renamed and a.fingerprint() != renamed.fingerprint()
    # a complete store equals a partial one that annotates every entry with the same values
    full = random_labels(10, 3, seed=4, complete=True)
    as_partial = PartialLabels.from_dense(full.matrix, full.image_ids, full.class_names, complete=False)
    assert full.to_sparse() == as_partial.to_sparse()
    hidden = as_partial.matrix.copy()
    hidden[0, 0] = UNK
    assert full.to_sparse() != PartialLabels.from_dense(hidden, full.image_ids, full.class_names)


def test_empty_store():
    lab = PartialLabels.from_sparse([], [], [], [], NAMES, complete=False)
    assert lab.shape == (0, 3)
    assert lab.annotated_fraction() == 0.0
    assert lab.counts().positives.tolist() == [0, 0, 0]
    assert lab.batch([]).shape == (0, 3)
    assert lab.to_dense().shape == (0, 3)

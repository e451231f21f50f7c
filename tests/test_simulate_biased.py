"""Biased single positives (plbench.simulate_biased).

Parity reference: github.com/elijahcole/single-positive-multi-label, branch ``spml-bias`` @ c70d342
(pull request #14), ``preproc/biased_labels.py::make_biased_matrix`` for ``size`` and ``loc`` with seed
1200, run (functions only, COCO files replaced by the 6-image, 4-category split below) in a scratch
folder. Their draw is Python's ``random.choices``; fed the same uniforms (``random.seed(1200)``, one
``random()`` per image) :func:`pick_positives` makes the same choices.
"""

from __future__ import annotations

import numpy as np
import pytest

from plbench.labels import PartialLabels
from plbench.simulate_biased import class_bias_weights, class_frequency_weights, location_bias_weights, \
    pick_positives, simulate_single_positive_biased, size_bias_weights

# (image row, class column, area, bbox) of each instance; images are 100 x 80 pixels
ANNS = [[0, 0, 400.0, [10, 10, 20, 20]], [0, 1, 100.0, [50, 40, 10, 10]], [0, 1, 250.0, [0, 0, 25, 10]],
        [1, 2, 900.0, [30, 30, 30, 30]], [2, 0, 50.0, [5, 5, 10, 5]], [2, 3, 50.0, [60, 60, 10, 5]],
        [2, 2, 3000.0, [20, 20, 60, 50]], [3, 1, 10.0, [45, 45, 10, 10]], [3, 3, 990.0, [0, 0, 33, 30]],
        [4, 0, 500.0, [0, 0, 25, 20]], [4, 1, 500.0, [70, 70, 25, 20]], [4, 2, 500.0, [40, 35, 20, 25]],
        [4, 3, 1.0, [0, 0, 1, 1]], [5, 3, 77.0, [12, 30, 7, 11]], [5, 0, 1200.0, [3, 3, 40, 30]]]
LABELS = [[1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1], [1, 0, 0, 1]]
UNIFORMS_1200 = [0.9541991673947924, 0.6174432510093903, 0.098272487309224, 0.7534510244258992,
                 0.6476721992886727, 0.19715807381158934]
AUTHORS_SIZE = [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0]]
AUTHORS_LOC = [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]


def _instances():
    a = np.array([[r, c, ar, *bb] for r, c, ar, bb in ANNS], dtype=np.float64)
    return a[:, 0].astype(int), a[:, 1].astype(int), a[:, 2], a[:, 3:7]


def _labels():
    return PartialLabels.from_dense(np.array(LABELS, dtype=np.int8), [f"i{i}" for i in range(6)],
                                    list("abcd"), complete=True)


def _keep_matrix(weights):
    r, c = np.nonzero(np.array(LABELS) == 1)
    pick = pick_positives(r, weights[r, c], np.array(UNIFORMS_1200), 6)
    out = np.zeros((6, 4), dtype=int)
    out[r[pick], c[pick]] = 1
    return out.tolist()


def test_size_and_location_choices_match_authors_given_their_uniforms():
    rows, cols, areas, boxes = _instances()
    assert _keep_matrix(size_bias_weights(rows, cols, areas, (6, 4))) == AUTHORS_SIZE
    sizes = np.tile([100.0, 80.0], (len(ANNS), 1))
    assert _keep_matrix(location_bias_weights(rows, cols, boxes, sizes, (6, 4))) == AUTHORS_LOC


def test_weights_hand_computed():
    rows, cols, areas, boxes = _instances()
    w = size_bias_weights(rows, cols, areas, (6, 4))
    assert w[0].tolist() == [400.0, 350.0, 0.0, 0.0]  # two instances of class 1 summed
    loc = location_bias_weights([0], [0], [[40.0, 30.0, 20.0, 20.0]], [[100.0, 80.0]], (1, 1))
    assert loc[0, 0] == 1 / 0.0005  # box centred on the image centre
    loc = location_bias_weights([0], [0], [[0.0, 0.0, 20.0, 20.0]], [[100.0, 80.0]], (1, 1))
    assert np.isclose(loc[0, 0], 1 / np.hypot(40.0, 30.0))


def test_keeps_one_positive_same_seed_same_bits_dense_and_sparse():
    rows, cols, areas, _ = _instances()
    w = size_bias_weights(rows, cols, areas, (6, 4))
    a = simulate_single_positive_biased(_labels(), w, seed=7)
    b = simulate_single_positive_biased(_labels(), w, seed=7)
    assert np.array_equal(a.matrix, b.matrix)
    m = a.matrix
    assert ((m == 1).sum(1) == 1).all() and (np.array(LABELS)[m == 1] == 1).all()
    s = simulate_single_positive_biased(_labels().to_sparse(), w, seed=7)
    assert s.is_sparse and np.array_equal(s.to_dense(), m)


def test_draw_follows_the_weights():
    n = 4000
    labels = PartialLabels.from_dense(np.ones((n, 3), dtype=np.int8), np.arange(n), list("xyz"), complete=True)
    out = simulate_single_positive_biased(labels, class_bias_weights([1.0, 3.0, 0.0], n), seed=0).matrix
    share = (out == 1).mean(0)
    assert share[2] == 0.0 and abs(share[1] - 0.75) < 0.03  # 4 sigma is about 0.027
    uniform = simulate_single_positive_biased(labels, np.zeros((n, 3)), seed=0).matrix  # all weights 0
    assert np.all(np.abs((uniform == 1).mean(0) - 1 / 3) < 0.03)


def test_max_mode_keeps_the_largest_object():
    rows, cols, areas, _ = _instances()
    out = simulate_single_positive_biased(_labels(), size_bias_weights(rows, cols, areas, (6, 4)), 0, mode="max")
    assert np.argmax(out.matrix == 1, axis=1).tolist() == [0, 2, 2, 3, 0, 0]  # ties (image 4): lowest class


def test_class_frequency_and_errors():
    assert class_frequency_weights(_labels()).tolist() == [4 / 6, 3 / 6, 3 / 6, 4 / 6]
    with pytest.raises(ValueError, match="weights of shape"):
        simulate_single_positive_biased(_labels(), np.ones((2, 2)), 0)
    with pytest.raises(ValueError, match="non-negative"):
        simulate_single_positive_biased(_labels(), -np.ones((6, 4)), 0)
    with pytest.raises(ValueError, match="mode"):
        simulate_single_positive_biased(_labels(), np.ones((6, 4)), 0, mode="largest")

"""ZSL / GZSL metrics: a hand-computed case, and independent references (scikit-learn, a per-image loop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from plbench.zsl.metrics import top_k_scores, zero_shot_scores, zsl_average_precision, zsl_gzsl_scores

S = np.array([[0.9, 0.2, 0.3], [0.5, 0.8, 0.7], [0.1, 0.4, 0.6]])
T = np.array([[1, 0, 0], [0, 1, 0], [1, -1, 0]])


def test_hand_computed():
    # class 0: positives ranked 1st and 3rd -> (1 + 2/3) / 2; class 1: the -1 is dropped -> 1; class 2: no positive
    np.testing.assert_allclose(zsl_average_precision(S, T), [5 / 6, 1.0, 0.0])
    assert np.isnan(zsl_average_precision(S, T, "skip")[2])
    assert zero_shot_scores(S, T, ks=(1,)).map == pytest.approx(100 * (5 / 6 + 1) / 3)
    assert zero_shot_scores(S, T, ks=(1,), empty_classes="skip").map == pytest.approx(100 * (5 / 6 + 1) / 2)
    # 3 positives. K=1: images 0, 1 hit -> P = 2/3, R = 2/3. K=2: still 2 hits (image 2's second pick is a -1)
    k1, k2, k3 = (top_k_scores(S, T, k) for k in (1, 2, 3))
    assert (k1.precision, k1.recall, k1.f1) == pytest.approx((200 / 3, 200 / 3, 200 / 3))
    assert (k2.precision, k2.recall, k2.f1) == pytest.approx((100 / 3, 200 / 3, 400 / 9))
    assert (k3.precision, k3.recall, k3.f1) == pytest.approx((100 / 3, 100.0, 50.0))
    r = zero_shot_scores(S, T, ks=(1, 2))
    assert r.num_empty_classes == 1 and r.f1(2) == pytest.approx(400 / 9) and set(r.row()) >= {"map", "f1@1", "p@2"}


def test_all_positive_class_and_ties():
    assert zsl_average_precision([[0.1], [0.2]], [[1], [1]])[0] == 1.0
    tied = top_k_scores([[0.5, 0.5, 0.5]], [[0, 0, 1]], 1)  # ties go to the lowest class index
    assert tied.precision == 0.0
    assert top_k_scores([[0.5, 0.5, 0.5]], [[1, 0, 0]], 1).precision == 100.0
    assert top_k_scores([[0.1, 0.2]], [[0, 0]], 1).f1 == 0.0  # no positive anywhere


def _reference_ap(scores, targets):
    """LESA-style: sklearn AP per column over the annotated entries, 0 for a class without positives."""
    out = []
    for j in range(scores.shape[1]):
        known = targets[:, j] != -1
        y = targets[known, j]
        out.append(average_precision_score(y, scores[known, j]) if (y == 1).any() else 0.0)
    return np.array(out)


def _reference_top_k(scores, targets, k):
    """BiAM-style: torch.topk per image, counts over the whole matrix."""
    idx = torch.topk(torch.as_tensor(scores), k, dim=1).indices.numpy()
    pred = np.zeros_like(targets)
    for i, row in enumerate(idx):
        pred[i, row] = 1
    tp = ((pred == 1) & (targets == 1)).sum()
    p, r = tp / pred.sum(), tp / (targets == 1).sum()
    return 100 * p, 100 * r, 100 * 2 * p * r / (p + r)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_independent_references(seed):
    rng = np.random.default_rng(seed)
    n, c = 200, 30
    scores = rng.normal(size=(n, c)).astype(np.float32)  # continuous: no ties, so topk order is unambiguous
    targets = (rng.random((n, c)) < 0.08).astype(np.int8)
    targets[rng.random((n, c)) < 0.1] = -1
    targets[:, 4] = 0  # a class without positives
    targets[:5] = 0  # images without positives are kept
    np.testing.assert_allclose(zsl_average_precision(scores, targets), _reference_ap(scores, targets), atol=1e-12)
    for k in (3, 5):
        t = top_k_scores(scores, targets, k)
        np.testing.assert_allclose((t.precision, t.recall, t.f1), _reference_top_k(scores, targets, k), rtol=1e-12)
    # GZSL = all columns; ZSL = the unseen columns of the same matrix
    unseen = np.zeros(c, dtype=bool)
    unseen[-8:] = True
    both = zsl_gzsl_scores(torch.as_tensor(scores), torch.as_tensor(targets), unseen)
    assert both["zsl"].map == pytest.approx(100 * _reference_ap(scores[:, -8:], targets[:, -8:]).mean())
    assert both["gzsl"].map == pytest.approx(100 * _reference_ap(scores, targets).mean())
    assert both["zsl"].f1(3) == pytest.approx(_reference_top_k(scores[:, -8:], targets[:, -8:], 3)[2])
    assert both["zsl"].map != pytest.approx(both["gzsl"].map)


def test_validation():
    with pytest.raises(ValueError, match="must both be"):
        zero_shot_scores(S, T[:2], ks=(1,))
    with pytest.raises(ValueError, match=r"k in \[1, 3\]"):
        top_k_scores(S, T, 4)
    with pytest.raises(ValueError, match="target values"):
        zero_shot_scores(S, T * 2, ks=(1,))
    with pytest.raises(ValueError, match="empty_classes"):
        zsl_average_precision(S, T, "drop")

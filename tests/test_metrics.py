"""Metrics vs scikit-learn (per-class AP with ties and -1 entries), hand values, F1 definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from plbench.metrics import (
    F1Scores,
    MAPMeter,
    MAPResult,
    average_precision_per_class,
    f1_scores,
    mean_average_precision,
)


def sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Reference: drop -1 entries per class, then sklearn; NaN without a positive or a negative."""
    out = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        keep = targets[:, c] != -1
        y = targets[keep, c] == 1
        if y.any() and not y.all():
            out[c] = average_precision_score(y, scores[keep, c])
    return out


def random_data(n, c, seed, levels=None, unk=0.3, prevalence=0.2, dtype=np.float32):
    rng = np.random.default_rng(seed)
    t = (rng.random((n, c)) < prevalence).astype(np.int8)
    t[rng.random((n, c)) < unk] = -1
    if levels:  # few distinct values: heavy ties, also across positives and negatives
        s = rng.integers(0, levels, (n, c)).astype(dtype) / levels
    else:
        s = rng.normal(size=(n, c)).astype(dtype) + t
    return s, t


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("levels", [None, 3, 10, 50])
@pytest.mark.parametrize("seed", [0, 1])
def test_ap_equals_sklearn_with_ties_and_unknowns(backend, levels, seed):
    s, t = random_data(300, 25, seed, levels=levels)
    ap = average_precision_per_class(s, t, backend=backend)
    np.testing.assert_allclose(ap, sklearn_ap(s, t), rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("kind", ["probabilities", "coarse", "zeros_at_negatives", "wide_range", "logits"])
def test_ap_equals_sklearn_on_large_float32_columns(kind):
    # >= 4096 entries per class, few positives: positive float32 scores take the CPU path's
    # histogram-over-float-bits branch; logits (negative scores) the sorting branch
    rng = np.random.default_rng(11)
    n, c = 12000, 4
    prevalence = np.array([0.002, 0.01, 0.04, 0.2])
    t = (rng.random((n, c)) < prevalence).astype(np.int8)
    t[rng.random((n, c)) < 0.2] = -1
    z = rng.normal(size=(n, c)) + 1.5 * t
    p = 1 / (1 + np.exp(-z))
    if kind == "probabilities":
        s = p
    elif kind == "coarse":  # heavy ties inside histogram cells, across positives and negatives
        s = np.round(p * 200) / 200 + 0.001
    elif kind == "zeros_at_negatives":  # +0.0 and -0.0 below every positive
        s = np.where((t != 1) & (rng.random((n, c)) < 0.3), np.where(rng.random((n, c)) < 0.5, -0.0, 0.0), p)
    elif kind == "wide_range":  # scores over 30 decades, denormal-adjacent
        s = 10.0 ** (-30 * rng.random((n, c)) * (1 - 0.5 * (t == 1)))
    else:
        s = z
    s = s.astype(np.float32)
    np.testing.assert_allclose(average_precision_per_class(s, t), sklearn_ap(s, t), rtol=0, atol=1e-12)
    np.testing.assert_allclose(average_precision_per_class(s, t, backend="torch"), sklearn_ap(s, t), atol=1e-12)


def test_ap_many_classes_chunked_torch_path():
    # enough classes to need several chunks on the batched path, with very different positive counts
    rng = np.random.default_rng(3)
    prevalence = np.exp(rng.uniform(np.log(0.01), np.log(0.6), 64))
    t = (rng.random((150, 64)) < prevalence).astype(np.int8)
    t[rng.random(t.shape) < 0.2] = -1
    s = (rng.integers(0, 20, t.shape) + 5 * t).astype(np.float64)
    import plbench.metrics as M

    old = M._CHUNK_ELEMENTS
    M._CHUNK_ELEMENTS = 150 * 7  # 7 classes per chunk
    try:
        ap = average_precision_per_class(torch.from_numpy(s), torch.from_numpy(t), backend="torch")
    finally:
        M._CHUNK_ELEMENTS = old
    np.testing.assert_allclose(ap, sklearn_ap(s, t), atol=1e-12, equal_nan=True)


def test_hand_computed_ap():
    # class 0: scores 0.9(+) 0.8(-) 0.2(+): precisions 1/1 and 2/3 -> AP 5/6
    # class 1: the -1 entry (0.7) is skipped: 0.3(+) over 0.1(-) -> AP 1
    # class 2: tie of a positive and a negative at the top: precision 1/2 at that threshold, then
    #          the other positive at 2/3 -> (1/2 + 2/3) / 2
    s = np.array([[0.9, 0.1, 0.5], [0.8, 0.7, 0.5], [0.2, 0.3, 0.4]])
    t = np.array([[1, 0, 1], [0, -1, 0], [1, 1, 1]])
    np.testing.assert_allclose(average_precision_per_class(s, t), [5 / 6, 1.0, (1 / 2 + 2 / 3) / 2])


def test_skipped_classes_are_nan_and_counted():
    s = np.array([[0.9, 0.1, 0.5, 0.3], [0.8, 0.7, 0.5, 0.2], [0.2, 0.3, 0.4, 0.1]])
    t = np.array([[1, 0, 1, -1], [0, 0, 1, -1], [1, 0, -1, -1]])  # classes 1-3: no pos / no neg / none
    ap = average_precision_per_class(s, t)
    assert ap[0] == pytest.approx(5 / 6) and np.isnan(ap[1:]).all()
    res = mean_average_precision(s, t)
    assert isinstance(res, MAPResult) and isinstance(res, float)
    assert float(res) == pytest.approx(500 / 6)  # percent
    assert (res.num_evaluated, res.num_skipped) == (1, 3)
    import pickle

    again = pickle.loads(pickle.dumps(res))
    assert float(again) == float(res) and again.num_skipped == 3
    all_skipped = mean_average_precision(s[:, 1:], t[:, 1:])
    assert np.isnan(all_skipped) and all_skipped.num_skipped == 3


def test_accepts_numpy_torch_and_dtypes():
    s, t = random_data(200, 10, 5)
    ref = sklearn_ap(s, t)
    for scores, targets in [
        (torch.from_numpy(s), torch.from_numpy(t)),
        (torch.from_numpy(s), torch.from_numpy(t).long()),
        (s.astype(np.float64), t.astype(np.float32)),
        (s, torch.from_numpy(t).float()),
    ]:
        np.testing.assert_allclose(average_precision_per_class(scores, targets), ref, atol=1e-12, equal_nan=True)
    # bf16 tensors are accepted: the rounded values (and their new ties) are what is ranked
    s16 = torch.from_numpy(s).to(torch.bfloat16)
    np.testing.assert_allclose(
        average_precision_per_class(s16, t), sklearn_ap(s16.float().numpy(), t), atol=1e-12, equal_nan=True
    )


@pytest.mark.parametrize(
    "scores, targets, match",
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), r"scores \(2, 3\) and targets \(3, 2\) must both be \(N, C\)"),
        (np.zeros((2, 2)), np.full((2, 2), 2), r"expected target values in \{1, 0, -1\}, but got \[2\]"),
        (np.zeros((2, 2)), np.full((2, 2), 0.5), r"but got \[0.5\]"),
        (np.full((2, 2), np.nan), np.zeros((2, 2)), "expected finite scores"),
        (np.zeros((2, 2), dtype=np.int64), np.zeros((2, 2)), "floating-point scores"),
    ],
)
def test_validation(scores, targets, match):
    with pytest.raises(ValueError, match=match):
        average_precision_per_class(scores, targets)


def test_meter_equals_one_shot():
    s, t = random_data(230, 12, 7, levels=7)
    meter = MAPMeter()
    for start in range(0, 230, 64):
        meter.update(torch.from_numpy(s[start : start + 64]), t[start : start + 64])
    assert meter.num_samples == 230
    got = meter.compute()
    assert float(got) == pytest.approx(float(mean_average_precision(s, t)), abs=1e-12)
    np.testing.assert_allclose(got.ap, sklearn_ap(s, t), atol=1e-12, equal_nan=True)
    meter.reset()
    with pytest.raises(ValueError, match="before any update"):
        meter.compute()
    meter.update(s[:2], t[:2])
    with pytest.raises(ValueError, match="expected 12 classes, but got a batch with 3"):
        meter.update(s[:2, :3], t[:2, :3])


def test_f1_hand_computed():
    # threshold 0.5; -1 entries ignored; class 2 has no negative -> left out
    s = np.array([[0.9, 0.2, 0.6], [0.6, 0.7, 0.8], [0.1, 0.6, 0.3], [0.4, 0.1, 0.9]])
    t = np.array([[1, 0, 1], [0, 1, 1], [1, -1, 1], [0, 0, -1]])
    # class 0: predicted {0, 1}, positives {0, 2}: TP 1, P 2, pos 2 -> p 1/2, r 1/2
    # class 1: predicted {1} (row 2 is -1), positives {1}: TP 1, P 1, pos 1 -> p 1, r 1
    f1 = f1_scores(s, t, threshold=0.5)
    cp, cr = (0.5 + 1) / 2, (0.5 + 1) / 2
    op, or_ = 2 / 3, 2 / 3
    assert isinstance(f1, F1Scores)
    assert f1.cp == pytest.approx(100 * cp) and f1.cr == pytest.approx(100 * cr)
    assert f1.op == pytest.approx(100 * op) and f1.or_ == pytest.approx(100 * or_)
    assert f1.cf1 == pytest.approx(100 * 2 * cp * cr / (cp + cr))
    assert f1.of1 == pytest.approx(100 * 2 * op * or_ / (op + or_))
    cf1, of1 = f1[:2]
    assert (cf1, of1) == (f1.cf1, f1.of1)
    assert set(f1._asdict()) == {"cf1", "of1", "cp", "cr", "op", "or_"}


def test_f1_matches_sklearn_on_complete_labels():
    from sklearn.metrics import f1_score, precision_score, recall_score

    s, t = random_data(400, 8, 9, unk=0.0, prevalence=0.3)
    prob = 1 / (1 + np.exp(-s))
    pred = prob >= 0.5
    f1 = f1_scores(prob, t)
    assert f1.op == pytest.approx(100 * precision_score(t, pred, average="micro"))
    assert f1.or_ == pytest.approx(100 * recall_score(t, pred, average="micro"))
    assert f1.of1 == pytest.approx(100 * f1_score(t, pred, average="micro"))
    assert f1.cp == pytest.approx(100 * precision_score(t, pred, average="macro", zero_division=0))
    assert f1.cr == pytest.approx(100 * recall_score(t, pred, average="macro"))

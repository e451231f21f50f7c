"""ROLE (plbench.methods.role): hand-computed values, parity with Cole et al.'s code, the estimator's state.

Parity reference: github.com/elijahcole/single-positive-multi-label @ 89152d5, ``losses.py::
compute_batch_loss`` with ``loss_role`` (expected_num_pos 1.7, num_classes 5), float64, with
``label_vec_est = sigmoid(EST)``; gradients with respect to the classifier logits and to EST.
"""

from __future__ import annotations

import math

import pytest
import torch

from plbench.methods.role import ROLE, LabelEstimator, init_estimate_logits, role_loss
from methods_support import EST, LOGITS, assert_parity, spl_targets, value_and_grads

COLE_ROLE = (0.9434638821759713, [
    [[0.000615925104557306, -0.00381470658217295, 0.00672582010205422, -0.0146056032615542, 0.014281378406604],
     [-0.00497757337643858, 0.0154276153899617, -0.00306115757876477, 0.000455267988514054, -0.0119785661427839],
     [-0.00103408690843355, -0.00819941449397083, -0.00219928910663079, 0.00576218680757567, -0.00204904381441069],
     [0.00475949545111319, 0.000718076182694915, -0.0067349074157178, 0.0159933682413111, -0.0176581756193014]],
    [[-0.00636961700355124, 0.00781997888838324, -0.00267259359332935, 0.0172173831574465, -0.011175300840255],
     [0.00841850199107368, -0.0126608075379312, 0.00707730787929802, -0.0029422376574053, 0.0146223136989041],
     [0.00477369314968845, 0.0108996754659339, -0.00383187867600916, -0.00324053580316681, 0.00601461968127305],
     [-0.00136841496504262, -0.0116816585553049, 0.0104576514936538, -0.0134725520935537, 0.0195766451427622]],
])


def nl(x):
    return -math.log(x + 1e-5)


def test_role_loss_matches_cole_values_and_both_gradients():
    got = value_and_grads(
        lambda x, e: role_loss(x, torch.sigmoid(e), spl_targets(), expected_num_pos=1.7), LOGITS, EST)
    assert_parity(got, *COLE_ROLE)


def test_role_loss_hand_computed_1x2():
    # p = (0.5, 0.5), q = (0.8, 0.3), targets (1, -1), K = 1
    logits = torch.zeros(1, 2, dtype=torch.float64)
    q = torch.tensor([[0.8, 0.3]], dtype=torch.float64)
    got = float(role_loss(logits, q, torch.tensor([[1.0, -1.0]]), expected_num_pos=1.0))
    observed = nl(0.5) + nl(0.8)
    cross = [qq * nl(0.5) + (1 - qq) * nl(0.5) + 0.5 * nl(qq) + 0.5 * nl(1 - qq) for qq in (0.8, 0.3)]
    reg = 0.5 * ((1.0 - 1.0) ** 2 / 4 + (1.1 - 1.0) ** 2 / 4)
    want = 0.5 * (observed + sum(cross)) / 2 + reg
    assert math.isclose(got, want, rel_tol=1e-12)


def test_init_estimates_follow_observed_labels_and_seed():
    targets = torch.tensor([[1, -1, 0], [-1, -1, 1]])
    a, b = init_estimate_logits(targets, seed=3), init_estimate_logits(targets, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, init_estimate_logits(targets, seed=4))
    p = torch.sigmoid(a.double())
    assert torch.allclose(p[targets == 1], torch.tensor(0.995, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(p[targets == 0], torch.tensor(0.005, dtype=torch.float64), atol=1e-6)
    unk = p[targets == -1]
    assert bool(((unk > 0.4) & (unk < 0.6)).all())


def test_estimator_rows_follow_indices_and_state_round_trips():
    targets = torch.tensor([[1, -1], [-1, 1], [-1, -1]])
    role = ROLE(targets, expected_num_pos=1.0, seed=0)
    assert role.estimator.logits.shape == (3, 2) and role.lr_mult == 10.0
    rows = role.estimator(torch.tensor([2, 0]))
    assert torch.equal(rows, torch.sigmoid(role.estimator.logits[[2, 0]]))
    loss = role(torch.zeros(2, 2), targets[[2, 0]], torch.tensor([2, 0]))
    loss.backward()
    grad = role.estimator.logits.grad
    assert bool((grad[1] == 0).all()) and bool((grad[[0, 2]] != 0).any())  # only the batch's rows
    other = ROLE(targets, expected_num_pos=1.0, seed=99)
    other.load_state_dict(role.state_dict())
    assert torch.equal(other.estimator.logits, role.estimator.logits)


def test_from_estimates_inverts_sigmoid():
    e = torch.tensor([[0.2, 0.9], [0.5, 1.0]])
    est = LabelEstimator.from_estimates(e)
    assert torch.allclose(est.estimates(), e.clamp(1e-5, 1 - 1e-5), atol=1e-6)


def test_bad_indices_are_refused():
    role = ROLE(torch.tensor([[1, -1]]), expected_num_pos=1.0)
    with pytest.raises(ValueError, match=r"dataset indices in \[0, 1\)"):
        role(torch.zeros(1, 2), torch.tensor([[1, -1]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="integer dataset indices"):
        role(torch.zeros(1, 2), torch.tensor([[1, -1]]), torch.tensor([0.0]))

"""BoostLU head (plbench.heads.boostlu) against hand-computed values and the authors' forward pass.

Parity reference: github.com/youngwk/BridgeGapExplanationPAMC @ 4a1986c, ``models.py::
ImageClassifier.forward`` with an identity feature extractor, its ``onebyone_conv`` set to W, B below
and alpha 5, float64; loss ``sum(logits * COEF)``; gradients of the conv weight, bias and features.
"""

from __future__ import annotations

import pytest
import torch

from plbench.heads import GAPHead
from plbench.heads.boostlu import BoostLUHead, boost_positive

W = (0.4 * torch.sin(torch.arange(12, dtype=torch.float64) * 1.3)).reshape(4, 3)
B = torch.tensor([0.1, -0.2, 0.05, 0.3], dtype=torch.float64)
COEF = torch.tensor([[1.0, -0.5, 0.25, 2.0], [-1.0, 0.75, 1.5, -0.25]], dtype=torch.float64)
REF_LOGITS = [[0.298013109514036, -0.0412805970981957, -0.0265948255947841, 1.82031059033552],
              [1.22975568263377, -0.292617790292642, 0.420882966545345, 2.04644517866352]]
REF_GRAD_W = [[3.61382866513228, -4.2634289695931, 4.42036738087687],
              [-1.0998490199057, 1.25314282578593, -1.26162931310261],
              [-2.84693714468277, 3.26554042895917, -3.30679314836132],
              [4.4727122690711, -6.30958711162034, 7.41735560485633]]
REF_GRAD_B = [-2.0, -0.25, 5.0, 8.75]
REF_GRAD_FEATS_00 = [[-0.602777357788008, -0.565078460488673], [0.600582883448037, 0.745363978357132],
                     [0.924087793416662, 0.963846442707665]]  # grad[0, :, 0, :]
REF_GRAD_FEATS_SUM_ABS = 16.8911744950463


def _head():
    head = BoostLUHead(3, 4, alpha=5.0).double()
    with torch.no_grad():
        head.fc.weight.copy_(W)
        head.fc.bias.copy_(B)
    return head


def test_forward_and_gradients_match_authors():
    head = _head()
    feats = torch.cos(torch.arange(24, dtype=torch.float64) * 0.7).reshape(2, 3, 2, 2).requires_grad_(True)
    logits = head(feats)
    (logits * COEF).sum().backward()
    tol = dict(atol=1e-12, rtol=0)
    assert torch.allclose(logits.detach(), torch.tensor(REF_LOGITS, dtype=torch.float64), **tol)
    assert torch.allclose(head.fc.weight.grad, torch.tensor(REF_GRAD_W, dtype=torch.float64), **tol)
    assert torch.allclose(head.fc.bias.grad, torch.tensor(REF_GRAD_B, dtype=torch.float64), **tol)
    assert torch.allclose(feats.grad[0, :, 0, :], torch.tensor(REF_GRAD_FEATS_00, dtype=torch.float64), **tol)
    assert abs(float(feats.grad.abs().sum()) - REF_GRAD_FEATS_SUM_ABS) < 1e-11


def test_tokens_give_the_same_logits_as_maps():
    head = _head()
    feats = torch.cos(torch.arange(24, dtype=torch.float64) * 0.7).reshape(2, 3, 2, 2)
    tokens = feats.flatten(2).transpose(1, 2)  # (B, L, D)
    assert torch.allclose(head(tokens), head(feats), atol=1e-14)
    assert head.class_maps(feats).shape == (2, 4, 2, 2) and head.class_maps(tokens).shape == (2, 4, 4)


def test_hand_computed_boost_and_alpha_one_is_gap():
    assert boost_positive(torch.tensor([-2.0, 0.0, 3.0]), 5.0).tolist() == [-2.0, 0.0, 15.0]
    # one class, D = 1, weight 1, bias 0: maps equal the features (-1, 2) -> mean(-1, 10) = 4.5
    head = BoostLUHead(1, 1, alpha=5.0)
    with torch.no_grad():
        head.fc.weight.fill_(1.0)
        head.fc.bias.zero_()
    assert float(head(torch.tensor([[[[-1.0, 2.0]]]])).detach()) == 4.5
    gap, plain = GAPHead(3, 4).double(), BoostLUHead(3, 4, alpha=1.0).double()
    plain.load_state_dict(gap.state_dict())
    feats = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(plain(feats), gap(feats), atol=1e-12)
    assert not torch.allclose(_head()(feats), gap(feats))  # control: alpha 5 differs


def test_pooled_features_are_refused():
    with pytest.raises(ValueError, match="pooled features have no class maps"):
        BoostLUHead(3, 4)(torch.zeros(2, 3))

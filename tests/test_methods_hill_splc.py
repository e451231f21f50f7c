"""Hill and SPLC (plbench.methods.hill_splc) against hand-computed values and the authors' code.

Parity reference: github.com/xinyu1205/robust-loss-mlml @ dcfa4d5, ``src/loss_functions/losses.py::
Hill()`` and ``::SPLC()`` (defaults, reduction sum; its ``.cuda()`` replaced by a no-op to run on CPU)
at epochs 0 and 1, float64, targets 0/1 (missing = 0).
"""

from __future__ import annotations

import math

import torch

from plbench.methods.hill_splc import SPLC, Hill, hill_loss, splc_loss
from methods_support import LOGITS, assert_parity, spl_targets, value_and_grads

HILL = (3.106397967069331, [[
    [-0.0424672664304312, 0.147469794551659, 0.17927959846407, 0.017444474641194, 0.0949392960391197],
    [0.0667339924955043, 0.126691128953294, 0.183793361301076, -0.00487094019539278, 0.00353068015963318],
    [0.173175677832827, 0.00876035353927248, -0.0958547224405061, 0.126691128953294, 0.187265795802861],
    [0.157026686043989, -0.16356144506016, 0.105322415284957, 0.0124259720183951, 0.0384293132597937]]])
SPLC_E0 = (5.028065525668285, [[
    [-0.0424672664304312, 0.0958547224405062, 0.42950646858575, 0.00167685129154914, 0.854023146390961],
    [0.0170311052232359, 0.722014863382594, 0.224519391656332, -0.00487094019539278, 0.000133405355396975],
    [0.477244086899931, 0.000554101584973667, -0.0958547224405061, 0.0646792811371932, 0.318598608897627],
    [0.115423968046341, -0.16356144506016, 0.0424672664304312, 1.12670396236203, 0.00630764244102489]]])
SPLC_E1 = (1.2644302034617483, [[
    [-0.0424672664304312, 0.0958547224405062, 0.42950646858575, 0.00167685129154914, -0.0340855937480784],
    [0.0170311052232359, -0.0646792811371933, 0.224519391656332, -0.00487094019539278, 0.000133405355396975],
    [0.477244086899931, 0.000554101584973667, -0.0958547224405061, 0.0646792811371932, 0.318598608897627],
    [0.115423968046341, -0.16356144506016, 0.0424672664304312, -0.000968074931508845, 0.00630764244102489]]])


def test_hill_matches_authors():
    assert_parity(value_and_grads(lambda x: hill_loss(x, spl_targets()), LOGITS), *HILL, atol=1e-14)


def test_splc_matches_authors_before_and_after_change_epoch():
    assert_parity(value_and_grads(lambda x: splc_loss(x, spl_targets(), epoch=0), LOGITS), *SPLC_E0, atol=1e-14)
    assert_parity(value_and_grads(lambda x: splc_loss(x, spl_targets(), epoch=1), LOGITS), *SPLC_E1, atol=1e-14)


def test_hand_computed_1x2():
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    x = torch.tensor([[0.5, 2.0]], dtype=torch.float64)
    t = torch.tensor([[1, -1]])
    pm = s(0.5 - 1.0)
    want_hill = -math.log(pm) * (1 - pm) ** 2 + (1.5 - s(2.0)) * s(2.0) ** 2
    assert math.isclose(float(Hill()(x, t)), want_hill, rel_tol=1e-12)
    # SPLC epoch 1: sigmoid(2) > 0.6, so the unknown entry counts as a positive (logit unshifted)
    want_splc = -math.log(pm) * (1 - pm) ** 2 - math.log(s(2.0)) * (1 - s(2.0)) ** 2
    splc = SPLC()
    splc.set_epoch(1)
    assert math.isclose(float(splc(x, t)), want_splc, rel_tol=1e-12)
    splc.set_epoch(0)
    want_e0 = -math.log(pm) * (1 - pm) ** 2 - math.log(1 - s(2.0)) * s(2.0) ** 2
    assert math.isclose(float(splc(x, t)), want_e0, rel_tol=1e-12)


def test_annotated_negatives_are_never_corrected():
    x = torch.tensor([[3.0, 3.0]], dtype=torch.float64)
    unknown = splc_loss(x, torch.tensor([[-1, -1]]), epoch=5)
    negative = splc_loss(x, torch.tensor([[0, 0]]), epoch=5)
    assert float(negative) > float(unknown)  # the negative keeps its (large) negative loss

"""plbench's AN, AN-LS, WAN and EPR (plbench.losses.functional) against Cole et al.'s losses.py.

Reference numbers: github.com/elijahcole/single-positive-multi-label @ 89152d5, ``losses.py::
compute_batch_loss`` with ``loss_an`` / ``loss_an_ls`` (ls_coef 0.1) / ``loss_wan`` / ``loss_epr``
(expected_num_pos 1.7), num_classes 5, run in float64 on tests/methods_support.py's inputs (observed
labels 1 at the positive, 0 elsewhere). Cole's normalisation: the loss matrix divided by B*C and
summed, the EPR penalty (sum_c p mean_b - K)^2 / C^2 added; -log(x + 1e-5) throughout.
"""

from __future__ import annotations

import math

import torch

from plbench.losses import functional as LF
from methods_support import LOGITS, assert_parity, spl_targets, value_and_grads

COLE_AN = (0.5501971411477313, [[
    [-0.00545477983225377, 0.0165903631026557, 0.0287214509270387, 0.00415858946621421, 0.0384245791882029],
    [0.00912116462660231, 0.0355462453722394, 0.0225078907764447, -0.00237126876560547, 0.00177854102223932],
    [0.0299336371118601, 0.00286617839023466, -0.00772317191349498, 0.0144523215867792, 0.0256243441994443],
    [0.0177169102871421, -0.00989068227512596, 0.0124868282869206, 0.0465363480873543, 0.00650534893469997]]])
COLE_AN_LS = (0.6409426269884664, [[
    [-0.000455194226079267, 0.0115904886161502, 0.0237215554586593, -0.000840854905377401, 0.0334247602463923],
    [0.00412139985514444, 0.0305463886763375, 0.0175079927810192, 0.00262772467993361, -0.0032201018826722],
    [0.0249337452166789, -0.00213299648036642, -0.00272345472721487, 0.00945246489087737, 0.0206244443224641],
    [0.0127170288306679, -0.00489089735456939, 0.00748699513253981, 0.0415370248905411, 0.00150569068207551]]])
COLE_WAN = (0.15825919650258663, [[
    [-0.00545477983225377, 0.00414759077566391, 0.00718036273175967, 0.00103964736655355, 0.00960614479705072],
    [0.00228029115665058, 0.00888656134305985, 0.00562697269411117, -0.00237126876560547, 0.000444635255559831],
    [0.00748340927796504, 0.000716544597558665, -0.00772317191349498, 0.00361308039669481, 0.00640608604986108],
    [0.00442922757178554, -0.00989068227512596, 0.00312170707173015, 0.0116340870218386, 0.00162633723367499]]])
COLE_EPR = (0.04938235458971385, [[
    [-0.00402073331989704, 0.00327123348275787, 0.00360682806759729, 0.00112509437283018, 0.00262472017071821],
    [0.00220056174727396, 0.00303202730680564, 0.00365195077834785, -0.00170471567035265, 0.000506161599371107],
    [0.00354489563185185, 0.000797298270103158, -0.00579616656567452, 0.00303202730680564, 0.00368628777036699],
    [0.0033755670412504, -0.0075493867870223, 0.00276452429005262, 0.000949566076295496, 0.00166990327708839]]])


def test_an_matches_cole():
    got = value_and_grads(lambda x: LF.assume_negative_loss(x, spl_targets()), LOGITS)
    assert_parity(got, *COLE_AN)


def test_an_ls_matches_cole():
    got = value_and_grads(lambda x: LF.assume_negative_loss(x, spl_targets(), ls_coef=0.1), LOGITS)
    assert_parity(got, *COLE_AN_LS)


def test_wan_matches_cole_with_weight_one_over_c_minus_one():
    got = value_and_grads(lambda x: LF.assume_negative_loss(x, spl_targets(), unannotated_weight=1 / 4), LOGITS)
    assert_parity(got, *COLE_WAN)


def test_epr_matches_cole():
    got = value_and_grads(
        lambda x: LF.expected_positive_regularized_loss(x, spl_targets(), expected_num_pos=1.7), LOGITS)
    assert_parity(got, *COLE_EPR)


def test_parity_can_fail_without_the_log_offset():
    # control: Cole's -log(x + 1e-5) differs measurably from -log(x) on these inputs
    x = torch.tensor(LOGITS, dtype=torch.float64)
    y = (spl_targets() == 1).double()
    plain = torch.nn.functional.binary_cross_entropy_with_logits(x, y)
    assert abs(float(plain) - COLE_AN[0]) > 1e-6


def test_an_hand_computed_1x2():
    # p = 0.5 on both entries: (-log(0.5 + 1e-5) - log(0.5 + 1e-5)) / 2
    got = LF.assume_negative_loss(torch.zeros(1, 2, dtype=torch.float64), torch.tensor([[1.0, -1.0]]))
    assert math.isclose(float(got), -math.log(0.5 + 1e-5), rel_tol=1e-12)

"""EM and EM + APL (plbench.methods.entropy): hand-computed values, parity with Zhou et al.'s code.

Parity references: github.com/Correr-Zhou/SPML-AckTheUnknown @ ae1ccaf, ``losses.py::
compute_batch_loss`` with ``loss_EM`` / ``loss_EM_APL`` (alpha 0.1, beta 0.9; pseudo-labels stored as
``-s`` in the observed labels), float64; and ``main.py::aysmmetric_pseudo_labeling`` run with a model
returning the fixed logits below, a 3-batch shuffled loader (order ORDER), num_epochs 7, warmup 5,
neg_proportion 0.9, after epochs 5 and 6 (logits -> 0.5 * logits + 0.3 between the two rounds).
"""

from __future__ import annotations

import math

import pytest
import torch

from plbench.methods.entropy import APL_SETTINGS, APLSettings, EMAPL, apl_due, apl_quota, \
    asymmetric_pseudo_labels, entropy_maximization_loss
from methods_support import LOGITS, assert_parity, spl_targets, value_and_grads

ACK_EM = (-0.012887501160147538, [[
    [-0.00545477983225377, -0.000775995056146608, 0.000366687467383865, -0.000915059985889554, 0.00106736664312615],
    [-0.00111859838946294, 0.000924751382526954, -0.000247516572611195, -0.00237126876560547, -0.000566047009378648],
    [0.000480521491277691, -0.000756533602494377, -0.00772317191349498, -0.000924751382526954, 6.24609537452696e-05],
    [-0.000686352721051659, -0.00989068227512596, -0.00103053433684358, 0.000836657885938338, -0.00107521246135443]]])
PSEUDO = {(0, 1): 0.12, (2, 3): 0.3, (3, 4): 0.05}
ACK_EM_APL = (0.05519930362953087, [[
    [-0.00545477983225377, 0.00953146234696425, 0.000366687467383865, -0.000915059985889554, 0.00106736664312615],
    [-0.00111859838946294, 0.000924751382526954, -0.000247516572611195, -0.00237126876560547, -0.000566047009378648],
    [0.000480521491277691, -0.000756533602494377, -0.00772317191349498, -0.000492523650833723, 6.24609537452696e-05],
    [-0.000686352721051659, -0.00989068227512596, -0.00103053433684358, 0.000836657885938338, 0.00360496782754897]]])

# aysmmetric_pseudo_labeling: (image, class, soft target) after round 1 and after round 2
APL_ROUND_1 = [
    [0, 2, 0.31721000520689], [0, 3, 0.0585552975998031], [1, 1, 0.109133365672639], [1, 2, 0.135355787022513],
    [2, 0, 0.0529405403185521], [2, 4, 0.0513977427325088], [3, 2, 0.147177509472374], [3, 3, 0.101098124646011],
    [4, 1, 0.061283664673906], [5, 1, 0.656551011764185], [5, 3, 0.201817029768419], [5, 4, 0.0782063445835513],
    [6, 2, 0.0749600395555445], [7, 0, 0.638150059330291], [7, 4, 0.27640914713221], [8, 0, 0.063341202769175],
    [8, 3, 0.0961579342254378], [10, 1, 0.0541433477511131], [10, 4, 0.12803785683656], [11, 0, 0.115062930492945]]
APL_ROUND_2_NEW = [
    [0, 4, 0.739075700428344], [1, 0, 0.817235769562474], [1, 4, 0.709943747495979], [2, 3, 0.534207754451063],
    [3, 0, 0.698167650346867], [4, 0, 0.749063535455765], [4, 4, 0.589292137813218], [6, 0, 0.786732956001788],
    [6, 1, 0.781498319261545], [7, 2, 0.599202019641122], [7, 3, 0.854567600184439], [8, 1, 0.755515997219414],
    [8, 2, 0.807439904092265], [9, 1, 0.689968258445685], [9, 3, 0.544388171262795], [10, 2, 0.717616134723132],
    [10, 3, 0.827383583553115], [11, 1, 0.8208412720881], [11, 2, 0.732061663041032], [11, 4, 0.489157853919151]]
APL_UNLABEL_NUM = [9, 10, 10, 9, 10]


def _pseudo():
    mask = torch.zeros(4, 5, dtype=torch.bool)
    values = torch.zeros(4, 5, dtype=torch.float64)
    for (i, c), s in PSEUDO.items():
        mask[i, c], values[i, c] = True, s
    return mask, values


def test_em_matches_authors():
    got = value_and_grads(lambda x: entropy_maximization_loss(x, spl_targets(), alpha=0.1), LOGITS)
    assert_parity(got, *ACK_EM)


def test_em_apl_loss_matches_authors():
    mask, values = _pseudo()
    got = value_and_grads(lambda x: entropy_maximization_loss(
        x, spl_targets(), alpha=0.1, beta=0.9, pseudo_mask=mask, pseudo_targets=values), LOGITS)
    assert_parity(got, *ACK_EM_APL)


def test_em_hand_computed_1x3():
    # p = 0.5 (positive), sigmoid(1) (unknown), sigmoid(-2) (pseudo-labelled 0.1)
    nl = lambda v: -math.log(v + 1e-5)  # noqa: E731
    s1, s2 = 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(2))
    logits = torch.tensor([[0.0, 1.0, -2.0]], dtype=torch.float64)
    mask = torch.tensor([[False, False, True]])
    got = entropy_maximization_loss(logits, torch.tensor([[1, -1, -1]]), alpha=0.2, beta=0.5,
                                    pseudo_mask=mask, pseudo_targets=torch.tensor([[0.0, 0.0, 0.1]], dtype=torch.float64))
    want = (nl(0.5) - 0.2 * (s1 * nl(s1) + (1 - s1) * nl(1 - s1)) + 0.5 * (0.1 * nl(s2) + 0.9 * nl(1 - s2))) / 3
    assert math.isclose(float(got), want, rel_tol=1e-12)


def _apl_inputs():
    n, c = 12, 5
    logits = (3.0 * torch.sin(torch.arange(n * c, dtype=torch.float64) * 1.7)).reshape(n, c)
    targets = torch.full((n, c), -1)
    for i in range(n):
        targets[i, (3 * i) % c] = 1
    return logits, targets


def _as_rows(mask, values):
    return sorted([int(i), int(c), float(values[i, c])] for i, c in zip(*torch.nonzero(mask, as_tuple=True)))


def test_apl_rounds_match_authors():
    logits, targets = _apl_inputs()
    settings = APLSettings(batch_size=4, lr=1e-5, alpha=0.1, beta=0.9, neg_proportion=0.9, warmup_epoch=5,
                           num_epochs=7)
    method = EMAPL(targets, settings)
    assert (targets == -1).sum(0).tolist() == APL_UNLABEL_NUM
    assert method.quota.tolist() == [int(0.9 * u / 2) for u in APL_UNLABEL_NUM]
    assert not method.due(3) and method.due(4)  # 0-based epoch 4 is the authors' epoch 5
    assert method.pseudo_label(torch.sigmoid(logits), targets) == len(APL_ROUND_1)
    got = _as_rows(method.pseudo_mask, method.pseudo_targets)
    assert [r[:2] for r in got] == [r[:2] for r in APL_ROUND_1]
    assert max(abs(a[2] - b[2]) for a, b in zip(got, APL_ROUND_1)) < 1e-7  # state is float32
    method.pseudo_label(torch.sigmoid(0.5 * logits + 0.3), targets)
    got = _as_rows(method.pseudo_mask, method.pseudo_targets)
    want = sorted(APL_ROUND_1 + APL_ROUND_2_NEW)
    assert [r[:2] for r in got] == [r[:2] for r in want]
    assert max(abs(a[2] - b[2]) for a, b in zip(got, want)) < 1e-7


def test_apl_state_round_trips_and_is_pure():
    logits, targets = _apl_inputs()
    method = EMAPL(targets, APL_SETTINGS["voc"])
    mask0 = method.pseudo_mask.clone()
    new_mask, _ = asymmetric_pseudo_labels(torch.sigmoid(logits), targets, mask0, method.pseudo_targets,
                                           torch.full((5,), 2))
    assert torch.equal(method.pseudo_mask, mask0)  # pure: inputs untouched
    assert new_mask.sum(0).tolist() == [2] * 5 and not bool((new_mask & (targets == 1)).any())
    method.pseudo_label(torch.sigmoid(logits), targets)
    other = EMAPL(targets, APL_SETTINGS["voc"])
    other.load_state_dict(method.state_dict())
    assert torch.equal(other.pseudo_mask, method.pseudo_mask)
    assert torch.equal(other.pseudo_targets, method.pseudo_targets)


def test_apl_ties_break_by_dataset_index():
    probs = torch.full((4, 1), 0.2)
    mask, values = asymmetric_pseudo_labels(probs, torch.full((4, 1), -1), torch.zeros(4, 1, dtype=torch.bool),
                                            torch.zeros(4, 1), torch.tensor([2]))
    assert mask[:, 0].tolist() == [True, True, False, False]


def test_settings_and_schedule_are_the_authors():
    coco = APL_SETTINGS["coco"]
    assert (coco.alpha, coco.beta, coco.warmup_epoch, coco.batch_size) == (0.1, 0.9, 5, 16)
    assert APL_SETTINGS["cub"].lr == 1e-4 and APL_SETTINGS["nuswide"].warmup_epoch == 4
    assert apl_quota(torch.tensor([50]), neg_proportion=0.9, num_epochs=10, warmup_epoch=5).tolist() == [9]
    assert apl_due(4, 5) and not apl_due(3, 5)
    with pytest.raises(ValueError, match="num_epochs > warmup_epoch"):
        apl_quota(torch.tensor([5]), neg_proportion=0.9, num_epochs=5, warmup_epoch=5)


@pytest.mark.parametrize("dataset", ["voc", "coco", "nuswide", "cub"])
def test_the_per_dataset_defaults_shown_are_what_setup_uses(dataset):
    """``dataset_defaults`` (``plbench methods show``) and ``setup`` agree for every dataset of the authors."""
    from plbench.methods.api import MethodContext
    from plbench.methods.builtin import EMAPLMethod, EMMethod, RoleMethod

    context = MethodContext(targets=spl_targets().to(torch.int8), class_names=tuple("abcde"), dataset=dataset,
                            epochs=10)
    apl = EMAPLMethod()
    apl.setup(context)
    shown = EMAPLMethod.dataset_defaults()[dataset]
    assert {k: getattr(apl.apl.settings, k) for k in shown} == shown
    em = EMMethod()
    em.setup(context)
    assert em.em.alpha == EMMethod.dataset_defaults()[dataset]["alpha"]
    role = RoleMethod()
    role.setup(context)
    assert role.role.expected_num_pos == RoleMethod.dataset_defaults()[dataset]["expected_num_pos"]

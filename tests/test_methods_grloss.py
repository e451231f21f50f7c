"""GR-Loss (plbench.methods.grloss) against hand-computed values and the authors' code.

Parity reference: github.com/yan4xi1/GRLoss @ 5e13f7f, ``losses.py::GR_loss`` with K =
``models.py::KFunction(w, b)(p.detach())`` and V = ``models.py::VFunction(p.detach(), mu, sigma)``, q2q3
(0.01, 1); the schedule is ``train.py::run_train``'s formula with config.py's defaults (8 epochs,
beta [0, 2, -2, -2], alpha [0.5, 2, 0.8, 0.5], linear_init 0), 1-based epochs 1 and 5; float64.
"""

from __future__ import annotations

import math

import torch

from plbench.methods.grloss import GRLoss, GRSchedule, gr_loss, gr_schedule
from methods_support import LOGITS, assert_parity, spl_targets, value_and_grads

# (w, b, mu, sigma) of the authors' epochs 1..8
SCHEDULE = [[0.0, -2.0, 0.5375, 1.8125], [0.25, -2.0, 0.575, 1.625], [0.5, -2.0, 0.6125, 1.4375],
            [0.75, -2.0, 0.65, 1.25], [1.0, -2.0, 0.6875, 1.0625], [1.25, -2.0, 0.7250000000000001, 0.875],
            [1.5, -2.0, 0.7625000000000001, 0.6875], [1.75, -2.0, 0.8, 0.5]]
GR_E1 = (0.4187581082072319, [[
    [-0.00545484044749857, 0.00578800838974733, 0.00824183311163254, -0.00191096227047897, 0.00640619538221315],
    [0.00174394315218146, 0.00729978609440952, 0.00764067945288802, -0.00237129340994302, -0.00389639877234884],
    [0.00819673521334724, -0.00297407453188702, -0.00772326234075923, 0.00481961480649401, 0.00811608403619554],
    [0.00623522013646948, -0.00989080433908625, 0.00379357770535718, 0.00236616471809957, -9.31897205349156e-05]]])
GR_E5 = (0.4037761173333253, [[
    [-0.00545484044749857, 0.00386140886164568, 0.00572105188013904, -0.00204949453132691, 0.00426487041934771],
    [0.000714458747342973, 0.00494295968605964, 0.00529902427318179, -0.00237129340994302, -0.00350565289207955],
    [0.00567447158637414, -0.00283373625833226, -0.00772326234075923, 0.00310334558205523, 0.0056504209001103],
    [0.00421118113793786, -0.00989080433908625, 0.00230194576870499, 0.00147351676935473, -0.00068703985376774]]])


def test_schedule_matches_authors():
    for epoch in range(8):
        s = gr_schedule(epoch, 8)
        assert [s.w, s.b, s.mu, s.sigma] == SCHEDULE[epoch]


def test_loss_matches_authors_at_two_epochs():
    for epoch, ref in ((0, GR_E1), (4, GR_E5)):
        got = value_and_grads(lambda x: gr_loss(x, spl_targets(), gr_schedule(epoch, 8)), LOGITS)
        assert_parity(got, *ref)


def test_hand_computed_1x2():
    # logits (0, 0): p = 0.5; k = sigmoid(w 0.5 + b), v = exp(-(0.5 - mu)^2 / (2 sigma^2))
    sched = GRSchedule(w=2.0, b=-1.0, mu=0.3, sigma=0.5)
    k = 1 / (1 + math.exp(-(2.0 * 0.5 - 1.0)))
    v = math.exp(-0.5 * ((0.5 - 0.3) / 0.5) ** 2)
    l1, l2 = (1 - 0.5**0.01) / 0.01, (1 - 0.5**1.0) / 1.0
    want = (-math.log(0.5 + 1e-7) + v * (k * l1 + (1 - k) * l2)) / 2
    got = gr_loss(torch.zeros(1, 2, dtype=torch.float64), torch.tensor([[1, -1]]), sched)
    assert math.isclose(float(got), want, rel_tol=1e-12)


def test_module_follows_set_epoch():
    m = GRLoss(num_epochs=8)
    x, t = torch.tensor(LOGITS, dtype=torch.float64), spl_targets()
    m.set_epoch(4)
    assert math.isclose(float(m(x, t)), GR_E5[0], rel_tol=1e-12)
    m.set_epoch(0)
    assert math.isclose(float(m(x, t)), GR_E1[0], rel_tol=1e-12)

"""GR-Loss, the generalised robust loss (Chen et al., "Boosting Single Positive Multi-label
Classification with Generalized Robust Loss", IJCAI 2024, arXiv:2405.03501; code:
github.com/yan4xi1/GRLoss, ``losses.py::GR_loss``, ``models.py::KFunction``, ``models.py::VFunction``,
``train.py``, ``config.py``).

With p = sigmoid(logit) and p' = p without gradient, an unannotated entry costs::

    v(p') * (k(p') L1(p) + (1 - k(p')) L2(p)),   L1(p) = (1 - p^q2) / q2,   L2(p) = (1 - (1 - p)^q3) / q3

where k(p') = sigmoid(w p' + b) is a soft pseudo-label (the probability that the entry is a missing
positive) and v(p') = exp(-(p' - mu)^2 / (2 sigma^2)) reweights entries by their confidence. A positive
costs -log(p + 1e-7) (their offset, not Cole's 1e-5); the mean runs over the B x C entries.

The four parameters move linearly over the epochs (``train.py``; 1-based epoch e, T epochs, n epochs
of linear initialisation, 0 by default)::

    w  = w0  + (wT  - w0)  max(e - n - 1, 0) / (T - n)    b likewise
    mu = mu0 + (muT - mu0) max(e - n, 0) / (T - n)        sigma likewise

(the k schedule lags the v schedule by one epoch in their code, reproduced here). Defaults are
``config.py``'s: beta = (w0, wT, b0, bT) = (0, 2, -2, -2), alpha = (mu0, sigma0, muT, sigmaT) =
(0.5, 2, 0.8, 0.5), (q2, q3) = (0.01, 1), 8 epochs. The ``--is_train`` variant with a learned k
(per-class logistic regressions) is off by default in their code and not implemented.
Extension: an annotated negative (``0``, absent from their data) costs -log(1 - p + 1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plbench.methods._common import NEG, POS, UNK, as_float, check_logits_targets, neg_log

__all__ = ["GR_EPS", "GRSchedule", "gr_schedule", "gr_loss", "GRLoss"]

#: offset inside the logarithm of the positive term (``LOG_EPSILON`` of their ``losses.py``).
GR_EPS = 1e-7


@dataclass(frozen=True)
class GRSchedule:
    """The epoch's k parameters (w, b) and v parameters (mu, sigma)."""

    w: float
    b: float
    mu: float
    sigma: float


def gr_schedule(
    epoch: int,
    num_epochs: int = 8,
    *,
    beta: tuple[float, float, float, float] = (0.0, 2.0, -2.0, -2.0),
    alpha: tuple[float, float, float, float] = (0.5, 2.0, 0.8, 0.5),
    linear_init_epochs: int = 0,
) -> GRSchedule:
    """The parameters of 0-based epoch ``epoch`` (the formula of the module docstring with e = epoch + 1)."""
    if num_epochs <= linear_init_epochs:
        raise ValueError(f"expected num_epochs > linear_init_epochs, but got {num_epochs} and {linear_init_epochs}")
    e, n, t = int(epoch) + 1, int(linear_init_epochs), int(num_epochs)
    w0, wt, b0, bt = (float(v) for v in beta)
    mu0, s0, mut, st = (float(v) for v in alpha)
    lag = max(e - n - 1, 0) / (t - n)
    lead = max(e - n, 0) / (t - n)
    return GRSchedule(w=w0 + (wt - w0) * lag, b=b0 + (bt - b0) * lag,
                      mu=mu0 + (mut - mu0) * lead, sigma=s0 + (st - s0) * lead)


def gr_loss(
    logits: Tensor, targets: Tensor, schedule: GRSchedule, *, q2: float = 0.01, q3: float = 1.0,
    validate: bool = True,
) -> Tensor:
    """GR-Loss of a batch; logits float (B, C), targets (B, C) in {1, 0, -1}; 0-dim mean."""
    if validate:
        check_logits_targets(logits, targets)
    p = torch.sigmoid(as_float(logits))
    p_sg = p.detach()
    k = torch.sigmoid(schedule.w * p_sg + schedule.b)
    v = torch.exp(-0.5 * ((p_sg - schedule.mu) / schedule.sigma) ** 2)
    l1 = (1.0 - p**q2) / q2
    l2 = (1.0 - (1.0 - p) ** q3) / q3
    loss = torch.where(targets == UNK, v * (k * l1 + (1.0 - k) * l2), torch.zeros_like(p))
    loss = torch.where(targets == POS, neg_log(p, GR_EPS), loss)
    loss = torch.where(targets == NEG, neg_log(1.0 - p, GR_EPS), loss)
    return loss.mean()


class GRLoss(nn.Module):
    """:func:`gr_loss` with its epoch schedule; call :meth:`set_epoch` (0-based) before each epoch."""

    def __init__(
        self, num_epochs: int = 8, *, beta: tuple[float, float, float, float] = (0.0, 2.0, -2.0, -2.0),
        alpha: tuple[float, float, float, float] = (0.5, 2.0, 0.8, 0.5), q2: float = 0.01, q3: float = 1.0,
        linear_init_epochs: int = 0, epoch: int = 0,
    ) -> None:
        super().__init__()
        self.num_epochs, self.beta, self.alpha = int(num_epochs), tuple(beta), tuple(alpha)
        self.q2, self.q3, self.linear_init_epochs = float(q2), float(q3), int(linear_init_epochs)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.schedule = gr_schedule(self.epoch, self.num_epochs, beta=self.beta, alpha=self.alpha,
                                    linear_init_epochs=self.linear_init_epochs)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return gr_loss(logits, targets, self.schedule, q2=self.q2, q3=self.q3)

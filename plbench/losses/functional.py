"""Partial-label losses as pure functions of ``(logits, targets)``.

Every function takes ``logits`` float (B, C) (any float dtype; the math runs in float32 or wider) and
``targets`` (B, C) with values in {1, 0, -1} (positive, annotated negative, unannotated), float or
integer, and returns a 0-dim float tensor. Nothing here keeps state: schedules (the epoch of LL-R) and
dataset statistics (the expected number of positives of EPR) are explicit arguments.

Sources:
    * P-ASL and the Ignore / Negative / Selective modes: Ben-Baruch et al., "Multi-label Classification
      with Partial Annotations using Class-aware Selective Loss", CVPR 2022 (arXiv 2110.10955).
    * ASL: Ridnik et al., "Asymmetric Loss for Multi-Label Classification", ICCV 2021.
    * ``ignore_normalized``: Durand et al., "Learning a Deep ConvNet for Multi-label Classification
      with Partial Labels", CVPR 2019 (partial-BCE normalisation with alpha = beta = 1, as used by the
      CSL authors' ``ignore_normalize_classes`` mode).
    * AN, AN-LS, WAN, EPR: Cole et al., "Multi-Label Learning from Single Positive Labels", CVPR 2021.
    * LL-R: Kim et al., "Large Loss Matters in Weakly Supervised Multi-Label Classification", CVPR 2022.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from plbench.choices import Mode
from plbench.labels import NEG, POS, UNK

#: Floor inside the logarithm of P-ASL (the CSL authors' value).
PASL_EPS = 1e-8
#: Offset inside the logarithm of the single-positive losses (Cole et al.'s value).
SPML_EPS = 1e-5


# -- validation ------------------------------------------------------------------------------------
def check_shapes(logits: Tensor, targets: Tensor) -> None:
    """Raise unless logits is float (B, C) and targets (B, C): metadata only, no device sync.

    Raises:
        TypeError: not tensors.
        ValueError: shapes differ or are not 2-D, or integer logits.
    """
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        raise TypeError(f"expected torch tensors, but got {type(logits).__name__} and {type(targets).__name__}")
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be (B, C)"
        )
    if not logits.is_floating_point():
        raise ValueError(f"expected floating-point logits, but got {logits.dtype}")


def check_target_values(targets: Tensor) -> None:
    """Raise ValueError unless targets holds only {1, 0, -1}. Reads the values: a device sync on GPU, so
    the engine checks a run's targets once when it loads them and the losses only when asked."""
    if targets.numel() == 0:
        return
    if targets.is_floating_point():
        ok = bool(((targets == POS) | (targets == NEG) | (targets == UNK)).all())
    else:  # integers: two reductions instead of five passes
        lo, hi = torch.aminmax(targets)
        ok = int(lo) >= UNK and int(hi) <= POS
    if not ok:
        bad = (targets != POS) & (targets != NEG) & (targets != UNK)
        raise ValueError(
            f"expected target values in {{1, 0, -1}}, but got {torch.unique(targets[bad])[:5].tolist()}"
        )


def check_logits_targets(logits: Tensor, targets: Tensor) -> None:
    """Raise ValueError unless logits is float (B, C) and targets (B, C) holds only {1, 0, -1}
    (:func:`check_shapes` then :func:`check_target_values`)."""
    check_shapes(logits, targets)
    check_target_values(targets)


def _check(logits: Tensor, targets: Tensor, validate: bool) -> None:
    check_shapes(logits, targets)
    if validate:
        check_target_values(targets)


def _as_prior(prior: Tensor | None, num_classes: int, device: torch.device) -> Tensor | None:
    if prior is None:
        return None
    prior = torch.as_tensor(prior, device=device)
    if prior.shape != (num_classes,):
        raise ValueError(f"expected a prior of shape ({num_classes},), but got {tuple(prior.shape)}")
    return prior


# -- selection helpers -----------------------------------------------------------------------------
def smallest_k_mask(values: Tensor, candidates: Tensor, k: int | Tensor) -> Tensor:
    """Mark the ``k`` smallest ``values`` among the ``candidates``, breaking ties by position.

    Args:
        values: float tensor of any shape (finite where ``candidates`` is True).
        candidates: bool tensor, same shape.
        k: how many to mark; ``k >= candidates.sum()`` marks every candidate, ``k <= 0`` none.
    Returns:
        bool tensor, same shape: exactly ``min(k, #candidates)`` entries, the smallest values; among
        entries equal to the k-th smallest value, those with the lowest row-major (flattened) index win.
        Runs in O(n) (``kthvalue`` plus a cumulative sum), with no sort and no host synchronisation.
    """
    flat = values.detach().flatten()
    cand = candidates.flatten()
    n = flat.numel()
    k = min(int(k), n)
    if k <= 0:
        return torch.zeros_like(candidates, dtype=torch.bool)
    masked = torch.where(cand, flat, torch.full_like(flat, math.inf))
    kth = torch.kthvalue(masked, k).values
    below = masked < kth
    at_kth = (masked == kth) & cand
    room = k - below.sum()
    take = below | (at_kth & (torch.cumsum(at_kth, 0) <= room))
    return (take & cand).view(candidates.shape)


# -- P-ASL per-entry weights, one rule per mode ----------------------------------------------------
@dataclass(frozen=True)
class WeightContext:
    """What a mode's weight rule may look at (all tensors (B, C) unless noted; no gradient)."""

    positive: Tensor  # bool
    unannotated: Tensor  # bool
    p_neg: Tensor  # float, the (clipped) probability of the negative side
    prior: Tensor | None  # float (C,) aligned with the classes, or None
    likelihood_topk: int
    prior_threshold: float


#: Mode -> rule returning float weights (B, C), or None meaning "all ones". Add a mode by adding an
#: enum member and one function decorated with ``@weight_rule(Mode.NEW)``.
WEIGHT_RULES: dict[Mode, Callable[[WeightContext], Tensor | None]] = {}


def weight_rule(mode: Mode) -> Callable[[Callable[[WeightContext], Tensor | None]], Callable]:
    def register(fn: Callable[[WeightContext], Tensor | None]) -> Callable:
        WEIGHT_RULES[mode] = fn
        return fn

    return register


@weight_rule(Mode.NEGATIVE)
def _negative_weights(ctx: WeightContext) -> Tensor | None:
    return None


@weight_rule(Mode.IGNORE)
def _ignore_weights(ctx: WeightContext) -> Tensor:
    return (~ctx.unannotated).to(ctx.p_neg.dtype)


@weight_rule(Mode.IGNORE_NORMALIZED)
def _ignore_normalized_weights(ctx: WeightContext) -> Tensor:
    annotated = ~ctx.unannotated
    n_annotated = annotated.sum(dim=1, keepdim=True).to(ctx.p_neg.dtype)
    return annotated.to(ctx.p_neg.dtype) * (1.0 + 1.0 / (1.0 + n_annotated))


@weight_rule(Mode.SELECTIVE)
def _selective_weights(ctx: WeightContext) -> Tensor:
    keep = torch.ones_like(ctx.p_neg, dtype=torch.bool)
    if ctx.prior is not None:
        frequent = ctx.prior > ctx.prior_threshold  # (C,)
        keep &= ~(ctx.unannotated & frequent.unsqueeze(0))
    k = ctx.likelihood_topk * ctx.p_neg.shape[0]
    # the rank runs over every unannotated entry, including those the prior already removed
    keep &= ~smallest_k_mask(ctx.p_neg, ctx.unannotated, k)
    return keep.to(ctx.p_neg.dtype)


# -- P-ASL -----------------------------------------------------------------------------------------
def partial_asymmetric_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    mode: Mode | str = Mode.SELECTIVE,
    gamma_pos: float = 0.0,
    gamma_neg: float = 3.0,
    gamma_unann: float = 4.0,
    alpha_pos: float = 1.0,
    alpha_neg: float = 1.0,
    alpha_unann: float = 1.0,
    clip: float = 0.0,
    likelihood_topk: int = 5,
    prior_threshold: float = 0.5,
    prior: Tensor | None = None,
    validate: bool = True,
) -> Tensor:
    """Partial asymmetric loss (P-ASL) of CSL, summed over the batch.

    With p = sigmoid(logit), p_neg = min(1 - p + clip, 1) if clip > 0 else 1 - p, and p_t = p for
    positives, p_neg otherwise, each entry contributes
    ``-w * alpha_t * (1 - p_t) ** gamma_t * log(max(p_t, 1e-8))`` where alpha_t / gamma_t are the
    positive, negative or unannotated hyper-parameters and the focusing factor ``(1 - p_t) ** gamma_t``
    and the mode weight ``w`` carry no gradient. Mode weights:

    * ``negative``: 1 everywhere; ``ignore``: 0 on unannotated entries;
    * ``ignore_normalized``: 0 on unannotated entries, ``1 + 1 / (1 + n_annotated(row))`` elsewhere;
    * ``selective``: 0 on unannotated entries of classes with ``prior > prior_threshold`` (only when a
      prior is given), then 0 on the ``likelihood_topk * B`` unannotated entries of the whole batch with
      the smallest p_neg (ties: lowest row-major index first); 1 elsewhere.

    Defaults are the CSL README's FPC(1000) training command (gamma_pos 0, gamma_neg 3, gamma_unann 4,
    selective, likelihood_topk 5, prior_threshold 0.5; its RPS command uses gamma_neg 1) and the
    authors' ``train.py`` defaults for the rest (alpha_* 1, clip 0).

    Args:
        logits: float (B, C).
        targets: (B, C), values in {1, 0, -1}, float or integer.
        prior: float (C,) class prior aligned with the classes (see :mod:`plbench.priors`), or None.
        validate: also check the target values (a device sync on GPU); shapes and dtypes are always
            checked (no sync).
    Returns:
        0-dim float32 tensor (float64 for float64 logits): the negative sum over all entries.
    Raises:
        ValueError: bad shapes or target values, prior of the wrong length, unknown mode.
    """
    mode = Mode.parse(mode)
    _check(logits, targets, validate)
    x = logits if logits.dtype == torch.float64 else logits.float()
    positive = targets == POS
    unannotated = targets == UNK
    p = torch.sigmoid(x)
    p_neg = 1.0 - p
    if clip is not None and clip > 0:
        p_neg = (p_neg + clip).clamp(max=1.0)
    p_t = torch.where(positive, p, p_neg)
    log_p_t = torch.log(p_t.clamp(min=PASL_EPS))
    with torch.no_grad():
        coef = _asymmetric_coef(
            p_t.detach(), positive, unannotated,
            (gamma_pos, gamma_neg, gamma_unann), (alpha_pos, alpha_neg, alpha_unann),
        )
        weights = mode_weights(
            mode, p_neg, targets,
            likelihood_topk=likelihood_topk, prior_threshold=prior_threshold, prior=prior,
        )
        if weights is not None:
            coef = coef * weights
    return -(coef * log_p_t).sum()


def _per_type(positive: Tensor, unannotated: Tensor, values: tuple[float, float, float], like: Tensor) -> Tensor | float:
    v_pos, v_neg, v_unann = (float(v) for v in values)
    if v_pos == v_neg == v_unann:
        return v_pos
    full = lambda v: torch.full((), v, dtype=like.dtype, device=like.device)  # noqa: E731
    return torch.where(positive, full(v_pos), torch.where(unannotated, full(v_unann), full(v_neg)))


def _asymmetric_coef(
    p_t: Tensor, positive: Tensor, unannotated: Tensor,
    gammas: tuple[float, float, float], alphas: tuple[float, float, float],
) -> Tensor:
    """alpha_t * (1 - p_t) ** gamma_t, float (B, C), without gradient."""
    gamma = _per_type(positive, unannotated, gammas, p_t)
    alpha = _per_type(positive, unannotated, alphas, p_t)
    if isinstance(gamma, float) and gamma == 0.0:
        coef = torch.ones_like(p_t)
    else:
        coef = torch.pow(1.0 - p_t, gamma)
    return coef * alpha


def mode_weights(
    mode: Mode | str,
    p_neg: Tensor,
    targets: Tensor,
    *,
    likelihood_topk: int = 5,
    prior_threshold: float = 0.5,
    prior: Tensor | None = None,
) -> Tensor | None:
    """Per-entry weights (B, C) of ``mode`` (None = all ones), without gradient.

    Args:
        p_neg: float (B, C), the (clipped) probability of the negative side.
        targets: (B, C) in {1, 0, -1}.
    """
    mode = Mode.parse(mode)
    with torch.no_grad():
        return WEIGHT_RULES[mode](WeightContext(
            positive=targets == POS, unannotated=targets == UNK, p_neg=p_neg.detach(),
            prior=_as_prior(prior, p_neg.shape[1], p_neg.device),
            likelihood_topk=int(likelihood_topk), prior_threshold=float(prior_threshold),
        ))


def asymmetric_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    mode: Mode | str = Mode.NEGATIVE,
    likelihood_topk: int = 5,
    prior_threshold: float = 0.5,
    prior: Tensor | None = None,
    validate: bool = True,
) -> Tensor:
    """ASL (Ridnik et al. 2021), summed over the batch.

    ``-[y (1-p)^gamma_pos log p + (1-y) p_m^gamma_neg log(1-p_m)]`` with p_m = max(p - clip, 0): this is
    P-ASL with gamma_unann = gamma_neg and unit alphas, so unannotated targets follow ``mode`` exactly
    as in :func:`partial_asymmetric_loss` (default ``negative``: the CSL README's "Negative, ASL"
    baseline; with complete labels the mode does not matter). Defaults are the ASL authors' training
    script (gamma_neg 4, gamma_pos 0, clip 0.05).

    Returns:
        0-dim float tensor.
    """
    return partial_asymmetric_loss(
        logits, targets, mode=mode, gamma_pos=gamma_pos, gamma_neg=gamma_neg, gamma_unann=gamma_neg,
        clip=clip, likelihood_topk=likelihood_topk, prior_threshold=prior_threshold, prior=prior,
        validate=validate,
    )


def binary_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    *,
    mode: Mode | str = Mode.NEGATIVE,
    likelihood_topk: int = 5,
    prior_threshold: float = 0.5,
    prior: Tensor | None = None,
    validate: bool = True,
) -> Tensor:
    """Plain binary cross-entropy on logits, summed over the batch (the CSL "CE" baselines).

    Unannotated targets are negatives weighted by ``mode`` (as in :func:`partial_asymmetric_loss` with
    all gammas 0 and no clip). Uses the numerically stable log-sigmoid form (no 1e-8 floor).
    """
    mode = Mode.parse(mode)
    _check(logits, targets, validate)
    x = logits if logits.dtype == torch.float64 else logits.float()
    y = (targets == POS).to(x.dtype)
    weight = None
    if mode != Mode.NEGATIVE:
        weight = mode_weights(
            mode, 1.0 - torch.sigmoid(x.detach()), targets,
            likelihood_topk=likelihood_topk, prior_threshold=prior_threshold, prior=prior,
        )
    return F.binary_cross_entropy_with_logits(x, y, weight=weight, reduction="sum")


# -- single-positive losses (Cole et al. 2021), mean over the B x C entries -------------------------
def _neg_log(x: Tensor) -> Tensor:
    return -torch.log(x + SPML_EPS)


def assume_negative_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    ls_coef: float = 0.0,
    unannotated_weight: float = 1.0,
    validate: bool = True,
) -> Tensor:
    """AN / AN-LS / WAN: unannotated labels are assumed negative; mean over the B x C entries.

    Per entry, with p = sigmoid(logit) and nl(x) = -log(x + 1e-5):
    positives ``(1 - ls) nl(p) + ls nl(1 - p)``; negatives and unannotated ``(1 - ls) nl(1 - p) + ls nl(p)``,
    unannotated entries further multiplied by ``unannotated_weight``. AN: ls 0, weight 1; AN-LS
    (label smoothing): ls 0.1; WAN (weighted AN): weight 1 / (C - 1). Annotated negatives, which do not
    occur in the single-positive setting, are always known negatives with weight 1.
    """
    _check(logits, targets, validate)
    p = torch.sigmoid(logits if logits.dtype == torch.float64 else logits.float())
    positive, unannotated = targets == POS, targets == UNK
    nl_pos, nl_neg = _neg_log(p), _neg_log(1.0 - p)
    if ls_coef:
        loss_if_pos = (1.0 - ls_coef) * nl_pos + ls_coef * nl_neg
        loss_if_neg = (1.0 - ls_coef) * nl_neg + ls_coef * nl_pos
    else:
        loss_if_pos, loss_if_neg = nl_pos, nl_neg
    if unannotated_weight != 1.0:
        loss_if_neg = torch.where(unannotated, unannotated_weight * loss_if_neg, loss_if_neg)
    return torch.where(positive, loss_if_pos, loss_if_neg).mean()


def expected_positive_regularized_loss(
    logits: Tensor, targets: Tensor, *, expected_num_pos: float, validate: bool = True
) -> Tensor:
    """EPR: BCE on annotated labels only, plus ``(mean_b sum_c p_bc - expected_num_pos)^2 / C^2``.

    The BCE term (nl as in :func:`assume_negative_loss`) is averaged over all B x C entries, unannotated
    entries contributing 0, as in Cole et al.

    Args:
        expected_num_pos: the expected number of positives per image (Cole et al. use the training set's
            mean, e.g. 2.9 for COCO); a dataset statistic the caller must supply.
    """
    _check(logits, targets, validate)
    p = torch.sigmoid(logits if logits.dtype == torch.float64 else logits.float())
    positive, negative = targets == POS, targets == NEG
    zero = torch.zeros((), dtype=p.dtype, device=p.device)
    bce = torch.where(positive, _neg_log(p), torch.where(negative, _neg_log(1.0 - p), zero)).mean()
    num_classes = p.shape[1]
    reg = (p.sum(dim=1).mean() - float(expected_num_pos)) ** 2 / num_classes**2
    return bce + reg


def large_loss_rejection_loss(
    logits: Tensor, targets: Tensor, *, rejection_rate: float, validate: bool = True
) -> Tensor:
    """LL-R: assume-negative BCE that drops the largest losses among unannotated entries.

    The ``ceil(B * C * rejection_rate)`` unannotated entries with the largest BCE (assumed negative)
    get weight 0 (ties: lowest row-major index first); the rest is plain BCE with logits, unannotated as
    negative, averaged over the B x C entries. Kim et al. raise the rate by ``delta_rel`` each epoch,
    from 0 in the first: see :class:`plbench.losses.LargeLossRejectionLoss`.

    Args:
        rejection_rate: fraction in [0, 1] of the batch's B x C entries to reject.
    """
    if not 0.0 <= rejection_rate <= 1.0:
        raise ValueError(f"expected rejection_rate in [0, 1], but got {rejection_rate}")
    _check(logits, targets, validate)
    x = logits if logits.dtype == torch.float64 else logits.float()
    loss = F.binary_cross_entropy_with_logits(x, (targets == POS).to(x.dtype), reduction="none")
    k = math.ceil(loss.numel() * rejection_rate)
    if k > 0:
        rejected = smallest_k_mask(-loss.detach(), targets == UNK, k)
        loss = loss.masked_fill(rejected, 0.0)
    return loss.mean()

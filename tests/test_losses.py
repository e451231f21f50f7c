"""Losses vs hand-computed cases and an independent float64 numpy implementation (values and gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plbench.losses import (
    LOSSES,
    Mode,
    PartialAsymmetricLoss,
    create_loss,
    large_loss_rejection_loss,
    list_losses,
    partial_asymmetric_loss,
    smallest_k_mask,
)

LN3 = math.log(3.0)
L43, L4, L2 = math.log(4 / 3), math.log(4.0), math.log(2.0)


# -- independent numpy reference -------------------------------------------------------------------
def np_selection(values: np.ndarray, cand: np.ndarray, k: int) -> np.ndarray:
    """k smallest values among candidates, ties by flat index (stable sort)."""
    flat, c = values.ravel(), cand.ravel()
    idx = np.flatnonzero(c)
    chosen = idx[np.argsort(flat[idx], kind="stable")[: max(k, 0)]]
    out = np.zeros(flat.shape, bool)
    out[chosen] = True
    return out.reshape(values.shape)


def np_pasl(z, t, mode, gamma_pos=0.0, gamma_neg=3.0, gamma_unann=4.0, alpha_pos=1.0, alpha_neg=1.0,
            alpha_unann=1.0, clip=0.0, likelihood_topk=5, prior_threshold=0.5, prior=None):
    """Loss and d loss / d z in float64, written from the issue's definition."""
    z = np.asarray(z, np.float64)
    t = np.asarray(t)
    pos, neg, unk = t == 1, t == 0, t == -1
    p = 1.0 / (1.0 + np.exp(-z))
    raw_neg = 1.0 - p + clip
    p_neg = np.minimum(raw_neg, 1.0) if clip > 0 else 1.0 - p
    p_t = np.where(pos, p, p_neg)
    gamma = np.where(pos, gamma_pos, np.where(unk, gamma_unann, gamma_neg))
    alpha = np.where(pos, alpha_pos, np.where(unk, alpha_unann, alpha_neg))
    w = np.ones_like(p)
    if mode == "ignore":
        w[unk] = 0
    elif mode == "ignore_normalized":
        n_ann = (~unk).sum(1, keepdims=True)
        w = np.where(unk, 0.0, 1.0 + 1.0 / (1.0 + n_ann))
    elif mode == "selective":
        if prior is not None:
            w[unk & (np.asarray(prior)[None, :] > prior_threshold)] = 0
        w[np_selection(p_neg, unk, likelihood_topk * z.shape[0])] = 0
    coef = w * alpha * (1.0 - p_t) ** gamma
    loss = -(coef * np.log(np.maximum(p_t, 1e-8))).sum()
    # d log(p)/dz = 1 - p ; d log(1-p)/dz = -p ; d log(1-p+clip)/dz = -p(1-p)/(1-p+clip) below the cap
    dlog_pos = np.where(p > 1e-8, 1.0 - p, 0.0)
    if clip > 0:
        dlog_neg = np.where(raw_neg < 1.0, -p * (1.0 - p) / raw_neg, 0.0)
    else:
        dlog_neg = np.where(1.0 - p > 1e-8, -p, 0.0)
    grad = -coef * np.where(pos, dlog_pos, dlog_neg)
    return loss, grad


def random_case(b=6, c=7, seed=0, unk_frac=0.4):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, (b, c))
    t = rng.choice([1, 0, -1], size=(b, c), p=[0.3, 0.7 - unk_frac, unk_frac])
    return z, t


def torch_loss_and_grad(fn, z, t, **kw):
    x = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss = fn(x, torch.tensor(t), **kw)
    loss.backward()
    return loss.item(), x.grad.numpy()


# -- hand-computed 2 x 3 cases ---------------------------------------------------------------------
# p = sigmoid(z) = [[3/4, 3/4, 1/4], [3/4, 1/4, 1/2]]
Z = [[LN3, LN3, -LN3], [LN3, -LN3, 0.0]]
T_A = [[1, 0, -1], [-1, 1, 0]]
T_B = [[1, -1, -1], [-1, -1, 0]]
HP = dict(gamma_pos=0.0, gamma_neg=1.0, gamma_unann=2.0)


@pytest.mark.parametrize(
    "mode, targets, extra, expected",
    [
        # pos: -log p ; neg: (1 - p_neg)^1 (-log p_neg) ; unann: (1 - p_neg)^2 (-log p_neg)
        ("negative", T_A, {}, (1 + 1 / 16) * L43 + (3 / 4 + 9 / 16 + 1) * L4 + 0.5 * L2),
        ("ignore", T_A, {}, L43 + (3 / 4 + 1) * L4 + 0.5 * L2),
        # two annotated entries per row: weight 1 + 1/3
        ("ignore_normalized", T_A, {}, 4 / 3 * (L43 + 3 / 4 * L4 + L4 + 0.5 * L2)),
        # unannotated p_neg = (0,1) 1/4, (0,2) 3/4, (1,0) 1/4, (1,1) 3/4; k = 1 * B = 2 -> (0,1), (1,0);
        # prior > 0.5 removes class 1 -> (1,1); only (0,2) stays: (1/4)^2 (-log 3/4)
        ("selective", T_B, dict(likelihood_topk=1, prior=[0.1, 0.9, 0.2]), (1 + 1 / 16) * L43 + 0.5 * L2),
        # no prior: only (0,1) and (1,0) removed; (1,1): p_neg 3/4 -> (1/16) log(4/3)
        ("selective", T_B, dict(likelihood_topk=1), (1 + 2 / 16) * L43 + 0.5 * L2),
        # top-k 0 and a prior: only class 1's unannotated entries go
        ("selective", T_B, dict(likelihood_topk=0, prior=[0.1, 0.9, 0.2]),
         (1 + 1 / 16) * L43 + 9 / 16 * L4 + 0.5 * L2),
    ],
)
def test_hand_computed(mode, targets, extra, expected):
    kw = {**HP, **extra}
    if "prior" in kw:
        kw["prior"] = torch.tensor(kw["prior"])
    got = partial_asymmetric_loss(torch.tensor(Z, dtype=torch.float64), torch.tensor(targets), mode=mode, **kw)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert PartialAsymmetricLoss(mode=mode, **kw)(torch.tensor(Z, dtype=torch.float64), torch.tensor(targets)).item() == pytest.approx(
        expected, rel=1e-12
    )


def test_hand_computed_clip():
    # clip 0.25: p_neg = min(1 - p + 0.25, 1): neg (0,1): 1/2 ; neg (1,2): 3/4 ; unann (0,2): 1 -> 0 loss
    got = partial_asymmetric_loss(torch.tensor(Z, dtype=torch.float64), torch.tensor(T_A), mode="negative", clip=0.25, **HP)
    expected = L43 + 0.5 * L2 + (1 / 2) ** 2 * L2 + L4 + (1 / 4) * L43
    # (1,0) unann p=3/4 -> p_neg=1/2, gamma 2: (1/2)^2 log 2 ; (1,2) neg p_neg 3/4: (1/4) log(4/3)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_bce_and_asl_special_cases():
    z, t = random_case(seed=3)
    zt, tt = torch.tensor(z), torch.tensor(t)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(zt, (tt == 1).double(), reduction="sum")
    assert create_loss("bce")(zt, tt).item() == pytest.approx(ref.item(), rel=1e-12)
    zero_gamma = dict(gamma_pos=0, gamma_neg=0, gamma_unann=0)
    for mode in ("negative", "ignore"):
        pasl = partial_asymmetric_loss(zt, tt, mode=mode, **zero_gamma)
        assert create_loss("bce", mode=mode)(zt, tt).item() == pytest.approx(pasl.item(), rel=1e-9)
    asl = create_loss("asl", gamma_pos=1, gamma_neg=4, clip=0.05)(zt, tt)
    ref_val, _ = np_pasl(z, t, "negative", gamma_pos=1, gamma_neg=4, gamma_unann=4, clip=0.05)
    assert asl.item() == pytest.approx(ref_val, rel=1e-12)


# -- against the numpy reference -------------------------------------------------------------------
CONFIGS = [
    dict(),
    dict(clip=0.05, gamma_pos=1.0, gamma_neg=4.0, gamma_unann=2.0, alpha_pos=2.0, alpha_neg=0.5, alpha_unann=0.3),
    dict(gamma_neg=1.0, likelihood_topk=2, prior_threshold=0.3),
    dict(likelihood_topk=0, clip=0.2),
]


@pytest.mark.parametrize("mode", [m.value for m in Mode])
@pytest.mark.parametrize("cfg", range(len(CONFIGS)))
@pytest.mark.parametrize("with_prior", [False, True])
def test_pasl_vs_numpy(mode, cfg, with_prior):
    z, t = random_case(seed=cfg * 10 + with_prior)
    kw = dict(CONFIGS[cfg])
    if with_prior:
        kw["prior"] = np.random.default_rng(cfg).uniform(0, 1, z.shape[1])
    ref_loss, ref_grad = np_pasl(z, t, mode, **kw)
    if with_prior:
        kw["prior"] = torch.tensor(kw["prior"])
    loss, grad = torch_loss_and_grad(partial_asymmetric_loss, z, t, mode=mode, **kw)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


def test_pasl_float32_and_integer_targets_match_float64():
    z, t = random_case(b=16, c=30, seed=7)
    ref, ref_grad = np_pasl(z, t, "selective", likelihood_topk=3)
    x = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    for targets in (torch.tensor(t, dtype=torch.int8), torch.tensor(t, dtype=torch.float32)):
        x.grad = None
        loss = PartialAsymmetricLoss(likelihood_topk=3)(x, targets)
        loss.backward()
        assert loss.dtype == torch.float32
        assert loss.item() == pytest.approx(ref, rel=1e-5)
        np.testing.assert_allclose(x.grad.numpy(), ref_grad, rtol=1e-4, atol=1e-6)


def test_bf16_logits_give_float32_loss():
    z, t = random_case(seed=2)
    loss = partial_asymmetric_loss(torch.tensor(z, dtype=torch.bfloat16), torch.tensor(t))
    assert loss.dtype == torch.float32
    ref, _ = np_pasl(torch.tensor(z, dtype=torch.bfloat16).double().numpy(), t, "selective")
    assert loss.item() == pytest.approx(ref, rel=1e-5)


# -- top-k tie behaviour ---------------------------------------------------------------------------
def test_smallest_k_ties_take_lowest_flat_index():
    v = torch.tensor([[0.5, 0.2, 0.2], [0.2, 0.1, 0.2]])
    cand = torch.tensor([[True, True, True], [True, True, False]])
    # 0.1 at (1,1), then ties 0.2 at flat 1, 2, 3 (5 is not a candidate) -> take 1 and 2
    got = smallest_k_mask(v, cand, 3)
    assert got.tolist() == [[False, True, True], [False, True, False]]
    assert smallest_k_mask(v, cand, 0).sum() == 0
    assert smallest_k_mask(v, cand, 10).tolist() == cand.tolist()  # k beyond the candidates: all of them


@pytest.mark.parametrize("seed", range(5))
def test_smallest_k_matches_stable_sort_with_heavy_ties(seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 4, (9, 11)).astype(np.float32)  # many exact ties
    cand = rng.random((9, 11)) < 0.6
    for k in (1, 5, 17, 40, 99):
        got = smallest_k_mask(torch.tensor(v), torch.tensor(cand), k).numpy()
        np.testing.assert_array_equal(got, np_selection(v, cand, k))


def test_selective_tie_in_loss_is_deterministic():
    # four unannotated entries with identical logits; k = 1 * B = 2: the first two (row-major) are dropped
    z = torch.zeros(2, 3)
    t = torch.tensor([[-1, -1, 1], [-1, -1, 0]])
    loss = partial_asymmetric_loss(z, t, likelihood_topk=1, gamma_unann=0, gamma_neg=0)
    # kept: (0,2) pos, (1,0) and (1,1) unann, (1,2) neg: 4 * log 2
    assert loss.item() == pytest.approx(4 * L2, rel=1e-6)


def test_selective_keeps_annotated_entries_of_frequent_classes():
    z = torch.zeros(1, 2)
    t = torch.tensor([[0, -1]])
    loss = partial_asymmetric_loss(z, t, likelihood_topk=0, prior=torch.tensor([0.9, 0.9]), gamma_neg=0)
    assert loss.item() == pytest.approx(L2)  # the annotated negative of a frequent class still counts


# -- single-positive losses ------------------------------------------------------------------------
def np_nl(x):
    return -np.log(x + 1e-5)


def np_spml(name, z, t, **kw):
    p = 1 / (1 + np.exp(-z))
    pos, neg, unk = t == 1, t == 0, t == -1
    c = z.shape[1]
    if name in ("an", "an_ls", "wan"):
        ls = {"an": 0.0, "an_ls": 0.1, "wan": 0.0}[name]
        lp = (1 - ls) * np_nl(p) + ls * np_nl(1 - p)
        ln = (1 - ls) * np_nl(1 - p) + ls * np_nl(p)
        if name == "wan":
            ln = np.where(unk, ln / (c - 1), ln)
        return np.where(pos, lp, ln).mean()
    if name == "epr":
        bce = np.where(pos, np_nl(p), np.where(neg, np_nl(1 - p), 0.0)).mean()
        return bce + (p.sum(1).mean() - kw["expected_num_pos"]) ** 2 / c**2
    raise KeyError(name)


@pytest.mark.parametrize("name", ["an", "an_ls", "wan", "epr"])
def test_single_positive_vs_numpy(name):
    z, t = random_case(b=5, c=9, seed=11)
    kw = {"expected_num_pos": 2.9} if name == "epr" else {}
    got = create_loss(name, **kw)(torch.tensor(z), torch.tensor(t)).item()
    assert got == pytest.approx(np_spml(name, z, t, **kw), rel=1e-12)
    # gradient by central differences of the numpy reference
    x = torch.tensor(z, requires_grad=True)
    create_loss(name, **kw)(x, torch.tensor(t)).backward()
    num = np.zeros_like(z)
    h = 1e-6
    for i in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[i] += h
        zm[i] -= h
        num[i] = (np_spml(name, zp, t, **kw) - np_spml(name, zm, t, **kw)) / (2 * h)
    np.testing.assert_allclose(x.grad.numpy(), num, rtol=1e-5, atol=1e-9)


def test_an_hand_value():
    # p = 1/2 everywhere: each entry -log(1/2 + 1e-5)
    got = create_loss("an")(torch.zeros(2, 2), torch.tensor([[1, -1], [0, -1]]))
    assert got.item() == pytest.approx(-math.log(0.5 + 1e-5), rel=1e-7)


def test_epr_requires_expected_num_pos():
    with pytest.raises(ValueError, match="expected_num_pos"):
        create_loss("epr")


def np_llr(z, t, rate):
    p = 1 / (1 + np.exp(-z))
    y = (t == 1).astype(float)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    k = math.ceil(z.size * rate)
    rejected = np_selection(-loss, t == -1, k)
    return np.where(rejected, 0.0, loss).mean()


def test_ll_r_schedule_and_values():
    z, t = random_case(b=8, c=10, seed=5, unk_frac=0.6)
    loss = create_loss("ll_r", delta_rel=0.1)
    values = []
    for epoch in range(4):
        loss.set_epoch(epoch)
        assert loss.rejection_rate == pytest.approx(min(epoch * 0.1, 1.0))
        got = loss(torch.tensor(z), torch.tensor(t)).item()
        assert got == pytest.approx(np_llr(z, t, epoch * 0.1), rel=1e-12)
        values.append(got)
    assert values[0] > values[1] > values[2] > values[3]  # rejecting large losses lowers the mean
    # rejection never touches annotated entries: with every unannotated entry rejected, only they remain
    all_rejected = large_loss_rejection_loss(torch.tensor(z), torch.tensor(t), rejection_rate=1.0).item()
    assert all_rejected == pytest.approx(np_llr(np.where(t == -1, 0, z), np.where(t == -1, -1, t), 1.0), rel=1e-12)


# -- factory, registry, validation ----------------------------------------------------------------
def test_factory_lists_and_errors():
    assert {"pasl", "asl", "bce", "an", "an_ls", "wan", "epr", "ll_r"} <= set(list_losses())
    with pytest.raises(ValueError, match="unknown loss 'foo'; available: an, an_ls"):
        create_loss("foo")
    with pytest.raises(ValueError, match="does not take gamma_neg"):
        create_loss("an", gamma_neg=2)
    with pytest.raises(ValueError, match="does not use a class prior"):
        create_loss("an", prior=torch.ones(3))
    # a loss declares whether it has modes; mode=None and prior=None are accepted by every loss,
    # a mode given to a loss without modes is an error (a run must never carry a mode it did not use)
    assert {n for n, c in LOSSES.items() if c.has_modes} == {"pasl", "asl", "bce"}
    for name, cls in LOSSES.items():
        kw = {"expected_num_pos": 1.0} if name == "epr" else {}
        create_loss(name, mode=None, prior=None, **kw)
        if cls.has_modes:
            assert create_loss(name, mode="ignore", **kw).mode.value == "ignore"
        else:
            with pytest.raises(ValueError, match=f"loss '{name}' has no partial-label modes"):
                create_loss(name, mode="selective", **kw)


def test_mode_parse_lists_values():
    with pytest.raises(ValueError, match=r"expected a mode in \{ignore, negative, selective, ignore_normalized"):
        PartialAsymmetricLoss(mode="nope")


def test_defaults_are_the_csl_readme_values():
    loss = PartialAsymmetricLoss()
    assert loss.mode == Mode.SELECTIVE
    assert loss.hp == dict(gamma_pos=0.0, gamma_neg=3.0, gamma_unann=4.0, alpha_pos=1.0, alpha_neg=1.0,
                           alpha_unann=1.0, clip=0.0, likelihood_topk=5, prior_threshold=0.5)


@pytest.mark.parametrize(
    "logits, targets, match",
    [
        (torch.zeros(2, 3), torch.zeros(2, 4), r"logits \(2, 3\) and targets \(2, 4\)"),
        (torch.zeros(2, 3), torch.full((2, 3), 2), r"expected target values in \{1, 0, -1\}, but got \[2\]"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), "floating-point logits"),
    ],
)
def test_validation_errors(logits, targets, match):
    with pytest.raises(ValueError, match=match):
        partial_asymmetric_loss(logits, targets)


def test_prior_shape_checked_and_moves_with_module():
    with pytest.raises(ValueError, match=r"prior of shape \(3,\), but got \(2,\)"):
        partial_asymmetric_loss(torch.zeros(1, 3), torch.zeros(1, 3), prior=torch.ones(2))
    loss = PartialAsymmetricLoss(prior=np.array([0.1, 0.2]))
    assert "prior" in dict(loss.named_buffers())
    assert loss.to(torch.float64).prior.dtype == torch.float64


# -- one owner for "does this loss take a mode, and which" ------------------------------------------
def test_resolve_mode_is_the_loss_classes_rule():
    from plbench.losses import resolve_mode, takes_mode

    for name, cls in LOSSES.items():
        assert takes_mode(name) is cls.has_modes is (cls.default_mode is not None)
        kw = {"expected_num_pos": 1.0} if name == "epr" else {}
        built = create_loss(name, **kw)  # the default a run gets is the one the class builds with
        assert resolve_mode(name, None) == (built.mode.value if cls.has_modes else None)
    assert [resolve_mode(n, None) for n in ("pasl", "asl", "bce", "an")] == ["selective", "negative", "negative", None]
    assert resolve_mode("asl", Mode.IGNORE) == "ignore" and type(resolve_mode("asl", Mode.IGNORE)) is str
    assert not takes_mode("nope")
    with pytest.raises(ValueError, match="loss 'an' has no partial-label modes, but got mode 'selective'"):
        resolve_mode("an", "selective")
    with pytest.raises(ValueError, match=r"expected a mode in \{ignore, negative"):
        resolve_mode("pasl", "nope")
    with pytest.raises(ValueError, match="loss 'pasl' needs a mode, but none is given"):
        resolve_mode("pasl", None, default=False)
    assert resolve_mode("an", None, default=False) is None
    with pytest.raises(ValueError, match="unknown loss 'nope'; available: an, an_ls"):
        resolve_mode("nope", None)


def test_a_new_loss_declares_its_mode_on_the_class():
    from plbench.losses import PartialLoss, resolve_mode

    class WithModes(PartialLoss):
        default_mode = Mode.IGNORE

    class WithoutModes(PartialLoss):
        pass

    assert WithModes.has_modes and not WithoutModes.has_modes and not PartialLoss.has_modes
    assert resolve_mode(WithModes, None) == "ignore" and resolve_mode(WithoutModes, None) is None


# -- hyper-parameter defaults are written once, in the functional signature --------------------------
def test_module_defaults_are_the_functional_signature_and_unchanged():
    from plbench.losses import AsymmetricLoss, BCELoss, asymmetric_loss, binary_cross_entropy, hyper_parameters

    assert PartialAsymmetricLoss().hp == hyper_parameters(partial_asymmetric_loss)
    # the numbers as they were (CSL README FPC command; ASL authors' gamma_neg 4, clip 0.05)
    assert AsymmetricLoss().hp == hyper_parameters(asymmetric_loss) == dict(
        gamma_pos=0.0, gamma_neg=4.0, clip=0.05, likelihood_topk=5, prior_threshold=0.5)
    assert BCELoss().hp == hyper_parameters(binary_cross_entropy) == dict(likelihood_topk=5, prior_threshold=0.5)
    assert create_loss("an").ls_coef == 0.0 and create_loss("an_ls").ls_coef == 0.1
    assert list(LOSSES["pasl"].options()) == ["gamma_pos", "gamma_neg", "gamma_unann", "alpha_pos", "alpha_neg",
                                              "alpha_unann", "clip", "likelihood_topk", "prior_threshold"]
    assert LOSSES["ll_r"].options() == {"delta_rel": 0.002, "epoch": 0}
    assert list(LOSSES["epr"].options()) == ["expected_num_pos"] and list(LOSSES["wan"].options()) == []


def test_module_hyper_parameters_are_typed_and_checked():
    loss = PartialAsymmetricLoss(gamma_neg=1, likelihood_topk=3.0, clip=None)
    assert loss.hp["gamma_neg"] == 1.0 and type(loss.hp["gamma_neg"]) is float
    assert loss.hp["likelihood_topk"] == 3 and type(loss.hp["likelihood_topk"]) is int
    assert loss.hp["clip"] == 0.0  # None: the default
    with pytest.raises(ValueError, match="expected an integer likelihood_topk, but got 2.5"):
        PartialAsymmetricLoss(likelihood_topk=2.5)
    with pytest.raises(TypeError, match="PartialAsymmetricLoss does not take gama_neg; it takes: mode, prior"):
        PartialAsymmetricLoss(gama_neg=1)
    with pytest.raises(ValueError, match="loss 'asl' does not take gamma_unann; it takes: gamma_pos, gamma_neg, clip"):
        create_loss("asl", gamma_unann=1)


# -- no device sync per call (issue 18, defect 9): target values are read only when asked -----------
@pytest.fixture
def no_host_reads(monkeypatch):
    """Make every tensor -> Python conversion (a device sync on GPU) raise while the fixture is active."""

    def refuse(self, *args, **kw):
        raise AssertionError("a tensor value was read on the host (a device sync on GPU)")

    for name in ("__bool__", "__int__", "__float__", "__index__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    yield
    monkeypatch.undo()


@pytest.mark.parametrize("name", ["pasl", "asl", "bce", "an", "an_ls", "wan", "epr", "ll_r"])
def test_module_forward_and_backward_read_no_tensor_value(name, no_host_reads):
    kw = {"expected_num_pos": 2.0} if name == "epr" else {}
    loss = create_loss(name, **kw, **({"prior": torch.tensor([0.1, 0.9, 0.3])} if name == "pasl" else {}))
    loss.set_epoch(3)  # LL-R rejects entries from its second epoch on
    x = torch.zeros(4, 3, requires_grad=True)
    loss(x, torch.tensor([[1, -1, 0], [-1, -1, 1], [0, 1, -1], [-1, 0, -1]], dtype=torch.int8)).backward()
    with pytest.raises(AssertionError, match="device sync"):  # the fixture does catch the old per-call check
        create_loss(name, validate=True, **kw)(x, torch.zeros(4, 3))


def test_validate_is_opt_in_for_modules_and_on_for_functions():
    bad = torch.full((2, 3), 2)
    assert create_loss("pasl")(torch.zeros(2, 3), bad).isfinite()  # not checked per call: checked at load
    with pytest.raises(ValueError, match=r"expected target values in \{1, 0, -1\}, but got \[2\]"):
        create_loss("pasl", validate=True)(torch.zeros(2, 3), bad)
    with pytest.raises(ValueError, match=r"expected target values"):
        partial_asymmetric_loss(torch.zeros(2, 3), bad)
    # shapes are metadata: always checked, without a sync
    with pytest.raises(ValueError, match=r"logits \(2, 3\) and targets \(2, 4\)"):
        create_loss("an")(torch.zeros(2, 3), torch.zeros(2, 4))

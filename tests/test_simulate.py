"""Simulators: exact FPC counts, uniform picks, RPS rates, single positives, reproducibility, layouts."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from scipy.stats import binom, chisquare

from plbench import simulate as sim
from plbench.labels import NEG, POS, UNK, PartialLabels
from plbench.simulate import (
    Scheme,
    sample_without_replacement,
    simulate,
    simulate_fpc,
    simulate_rps,
    simulate_single_positive,
)


def random_labels(n: int, c: int, seed: int, complete: bool, p_pos: float = 0.2, p_unk: float = 0.4) -> PartialLabels:
    rng = np.random.default_rng(seed)
    m = np.where(rng.random((n, c)) < p_pos, POS, NEG).astype(np.int8)
    if not complete:
        m[rng.random((n, c)) < p_unk] = UNK
    return PartialLabels.from_dense(m, np.arange(n), [f"c{i}" for i in range(c)], complete=complete)


def arithmetic_labels() -> PartialLabels:
    """Complete 500 x 12 labels built without any RNG (input of the golden-hash test)."""
    i, j = np.meshgrid(np.arange(500), np.arange(12), indexing="ij")
    m = (((i * 7 + j * 13) % 11) < 2 + j % 3).astype(np.int8)
    m[:, 11] = NEG  # a class without positives
    return PartialLabels.from_dense(m, np.arange(500), [f"c{k}" for k in range(12)], complete=True)


def layouts(dense: PartialLabels) -> list[PartialLabels]:
    return [dense, dense.to_sparse()]


def check_kept_are_original(before: PartialLabels, after: PartialLabels) -> None:
    b, a = before.to_dense(), after.to_dense()
    kept = a != UNK
    np.testing.assert_array_equal(a[kept], b[kept])


# -- FPC -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("complete", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n", [0, 1, 7, 40, 500])
def test_fpc_exact_counts_per_class(complete, sparse, n):
    dense = random_labels(120, 9, seed=5, complete=complete)
    dense.matrix[:, 3] = NEG  # a class with no positives at all
    labels = dense.to_sparse() if sparse else dense
    out = simulate_fpc(labels, n, seed=11)
    assert out.is_sparse == sparse and not out.complete
    before, after = dense.counts(), out.counts()
    np.testing.assert_array_equal(after.positives, np.minimum(n, before.positives))
    np.testing.assert_array_equal(after.negatives, np.minimum(n, before.negatives))
    assert after.positives[3] == 0
    check_kept_are_original(dense, out)


def test_fpc_layouts_give_identical_bits():
    for complete in (True, False):
        dense = random_labels(300, 6, seed=6, complete=complete)
        for n in (3, 50, 200):
            a, b = simulate_fpc(dense, n, 1), simulate_fpc(dense.to_sparse(), n, 1)
            assert a.to_dense().tobytes() == b.to_dense().tobytes()


def test_fpc_complete_sparse_draws_from_implicit_complement():
    # 10 images, class 0 positive on 0, 4, 9: negatives are {1, 2, 3, 5, 6, 7, 8}
    lab = PartialLabels.from_sparse([0, 4, 9], [0, 0, 0], [1, 1, 1], range(10), ["a"], complete=True)
    seen = set()
    for seed in range(200):
        out = simulate_fpc(lab, 2, seed).to_dense()[:, 0]
        pos = np.flatnonzero(out == POS)
        assert pos.size == 2 and set(pos.tolist()) <= {0, 4, 9}
        negs = np.flatnonzero(out == NEG)
        assert negs.size == 2 and set(negs.tolist()) <= {1, 2, 3, 5, 6, 7, 8}
        seen.update(negs.tolist())
    assert seen == {1, 2, 3, 5, 6, 7, 8}


def test_complement_select_matches_setdiff():
    rng = np.random.default_rng(0)
    for _ in range(20):
        positives = np.sort(rng.choice(100, size=rng.integers(0, 60), replace=False))
        complement = np.setdiff1d(np.arange(100), positives)
        ranks = np.arange(complement.size)
        np.testing.assert_array_equal(sim._complement_select(positives, ranks), complement)


def _subset_frequencies(population: int, k: int, trials: int) -> np.ndarray:
    index = {s: i for i, s in enumerate(itertools.combinations(range(population), k))}
    freq = np.zeros(len(index))
    for seed in range(trials):
        picked = sample_without_replacement(sim.make_rng(seed), population, k)
        assert picked.size == k and (np.diff(picked) > 0).all()
        freq[index[tuple(picked.tolist())]] += 1
    return freq


@pytest.mark.parametrize("population, k", [(8, 2), (6, 4), (30, 1)])
def test_sample_without_replacement_is_uniform_over_subsets(population, k):
    # (8, 2) and (30, 1) use the draw-until-distinct path, (6, 4) the permutation path
    freq = _subset_frequencies(population, k, trials=3000)
    assert chisquare(freq).pvalue > 1e-3


def test_fpc_picks_positives_and_negatives_uniformly():
    # class 0: 12 positives (rows 0..11) and 28 negatives; keep 3 of each; count how often each row is kept
    m = np.zeros((40, 1), np.int8)
    m[:12] = POS
    for labels in (PartialLabels.from_dense(m, range(40), ["a"], complete=True),
                   PartialLabels.from_dense(m, range(40), ["a"], complete=True).to_sparse()):
        hits = np.zeros(40)
        trials = 2000
        for seed in range(trials):
            hits += simulate_fpc(labels, 3, seed).to_dense()[:, 0] != UNK
        assert chisquare(hits[:12]).pvalue > 1e-3
        assert chisquare(hits[12:]).pvalue > 1e-3
        assert hits[:12].sum() == hits[12:].sum() == 3 * trials


def test_fpc_rejects_bad_count():
    lab = random_labels(5, 2, seed=0, complete=True)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="non-negative integer"):
            simulate_fpc(lab, bad, 0)


# -- RPS -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("complete", [True, False])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_rps_fraction_within_binomial_tolerance(complete, p):
    dense = random_labels(400, 25, seed=7, complete=complete)
    annotated = int((dense.matrix != UNK).sum())
    for labels in layouts(dense):
        out = simulate_rps(labels, p, seed=3)
        kept = int((out.to_dense() != UNK).sum())
        lo, hi = binom.ppf([1e-6, 1 - 1e-6], annotated, 1 - p)
        assert lo <= kept <= hi
        check_kept_are_original(dense, out)
        assert not out.complete and out.is_sparse == labels.is_sparse


def test_rps_extremes_and_layouts():
    dense = random_labels(50, 4, seed=8, complete=False)
    np.testing.assert_array_equal(simulate_rps(dense, 0.0, 1).to_dense(), dense.matrix)
    assert (simulate_rps(dense.to_sparse(), 1.0, 1).to_dense() == UNK).all()
    for complete in (True, False):
        d = random_labels(200, 7, seed=9, complete=complete)
        assert simulate_rps(d, 0.3, 5).to_dense().tobytes() == simulate_rps(d.to_sparse(), 0.3, 5).to_dense().tobytes()


def test_rps_complete_sparse_in_blocks(monkeypatch):
    d = random_labels(101, 7, seed=10, complete=True)
    whole = simulate_rps(d.to_sparse(), 0.4, 2)
    monkeypatch.setattr(sim, "_RPS_CHUNK_ENTRIES", 30)  # blocks of 4 rows
    assert simulate_rps(d.to_sparse(), 0.4, 2) == whole
    monkeypatch.setattr(sim, "MAX_MATERIALISED_ENTRIES", 100)
    with pytest.raises(ValueError, match="use FPC"):
        simulate_rps(d.to_sparse(), 0.4, 2)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_rps_rejects_bad_probability(p):
    with pytest.raises(ValueError, match=r"p in \[0, 1\]"):
        simulate_rps(random_labels(5, 2, seed=0, complete=True), p, 0)


# -- single positive -------------------------------------------------------------------------------
@pytest.mark.parametrize("complete", [True, False])
def test_single_positive_keeps_one_original_positive_per_image(complete):
    dense = random_labels(300, 8, seed=12, complete=complete)
    dense.matrix[:5] = NEG if complete else UNK  # images without positives
    had_pos = (dense.matrix == POS).any(axis=1)
    for labels in layouts(dense):
        out = simulate_single_positive(labels, seed=4)
        m = out.to_dense()
        assert set(np.unique(m).tolist()) <= {POS, UNK}
        np.testing.assert_array_equal((m == POS).sum(axis=1), had_pos.astype(int))
        assert (dense.matrix[m == POS] == POS).all()
    assert simulate_single_positive(dense, 4) == simulate_single_positive(dense.to_sparse(), 4)


def test_single_positive_is_uniform_within_an_image():
    m = np.array([[1, 0, 1, 1, -1, 1]], np.int8)
    labels = PartialLabels.from_dense(m, ["img"], list("abcdef"))
    hits = np.zeros(6)
    for seed in range(2000):
        hits += simulate_single_positive(labels, seed).matrix[0] == POS
    assert hits[[1, 4]].sum() == 0
    assert chisquare(hits[[0, 2, 3, 5]]).pvalue > 1e-3


def test_single_positive_without_any_positive():
    lab = PartialLabels.from_sparse([], [], [], range(4), ["a", "b"], complete=True)
    out = simulate_single_positive(lab, 0)
    assert out.annotated_fraction() == 0.0 and out.shape == (4, 2)


# -- reproducibility and registry ------------------------------------------------------------------
GOLDEN = {
    "fpc": "5837bfb82d36b395d2cfaec62f3af6281b83ec5f0f4e86fdefdb73ffdaaa7d7b",
    "rps": "a3806f87b08a9c4fd16af4adc689ae29c5942f9d0315e24facd56eaca75abf03",
    "spl": "7d8165ca84d5522b815d8f4511ba94bcfb74a9af7ab207174c688527ff94e6b3",
}


@pytest.mark.parametrize("scheme, param", [("fpc", 20), ("rps", 0.5), ("spl", None)])
def test_same_seed_same_bytes_different_seed_differs(scheme, param):
    labels = arithmetic_labels()
    a = simulate(labels, scheme, param, 7)
    b = simulate(labels.to_sparse(), scheme, param, 7)
    c = simulate(labels, scheme, param, 8)
    assert a.to_dense().tobytes() == b.to_dense().tobytes()
    assert a.to_dense().tobytes() != c.to_dense().tobytes()
    # pinned digests: a change here means files simulated elsewhere would no longer match
    assert hashlib.sha256(a.to_dense().tobytes()).hexdigest() == GOLDEN[scheme]


def test_scheme_registry():
    assert [s.value for s in Scheme] == ["fpc", "rps", "spl"]
    assert set(sim.SIMULATORS) == set(Scheme)
    with pytest.raises(ValueError, match="available: fpc, rps, spl"):
        simulate(arithmetic_labels(), "xyz", 1, 0)
    with pytest.raises(ValueError, match="FPC expects a positive integer"):
        simulate(arithmetic_labels(), Scheme.FPC, 0.5, 0)
    with pytest.raises(ValueError, match=r"RPS expects a probability in \[0, 1\]"):
        simulate(arithmetic_labels(), "rps", None, 0)
    with pytest.raises(ValueError, match="seed"):
        simulate(arithmetic_labels(), "spl", None, -1)
    assert simulate(arithmetic_labels(), "fpc", 20.0, 7) == simulate_fpc(arithmetic_labels(), 20, 7)
    assert sim.normalise_param("fpc", 1000.0) == 1000 and sim.normalise_param("spl", 3) is None


def test_fpc_complete_sparse_never_builds_the_dense_matrix():
    import tracemalloc

    n, c = 2_000_000, 50  # dense int8 matrix: 100 MB
    rows = np.arange(0, n, 1000, dtype=np.int64)  # 2,000 images, positive for class (row // 1000) % c
    labels = PartialLabels.from_sparse(rows, (rows // 1000) % c, np.ones(rows.size), np.arange(n),
                                       [f"c{i}" for i in range(c)], complete=True)
    tracemalloc.start()
    try:
        out = simulate_fpc(labels, 100, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10e6
    counts = out.counts()
    assert counts.positives.tolist() == [40] * c and counts.negatives.tolist() == [100] * c
    r, k, v = out.sparse
    negatives = v == NEG
    assert not np.isin(r[negatives] * c + k[negatives], rows * c + (rows // 1000) % c).any()

"""Judging a prior estimate: Spearman, MAE, top-k, naive prior; estimate-prior writes the comparison."""

import numpy as np
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from plbench.prior_quality import average_ranks, comparison_markdown, naive_prior, score_prior, spearman, top_k


def test_ranks_and_spearman_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 5, 30).astype(float)  # many ties
        b = a + rng.normal(0, 2, 30)
        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    from scipy.stats import rankdata

    x = np.array([3.0, 1.0, 3.0, 2.0])
    np.testing.assert_array_equal(average_ranks(x), rankdata(x))
    assert np.isnan(spearman(np.ones(4), np.arange(4.0)))


def test_naive_prior_top_k_and_score_by_hand():
    np.testing.assert_allclose(naive_prior(np.array([1, 0, 3]), np.array([3, 0, 1])), [0.25, np.nan, 0.75])
    assert top_k(np.array([0.1, np.nan, 0.9, 0.5]), 2).tolist() == [2, 3]
    s = score_prior(np.array([0.1, 0.2, 0.3, 0.9]), np.array([0.2, 0.1, 0.3, 0.5]), k=2)
    assert s.mae == pytest.approx((0.1 + 0.1 + 0.0 + 0.4) / 4)
    assert s.top_k_recovered == 2 and s.k == 2  # top-2 {3, 2} in both
    assert s.spearman == pytest.approx(0.8)  # ranks (1,2,3,4) vs (2,1,3,4): 1 - 6*2/(4*15)


def test_comparison_markdown_lists_scores_and_top_classes():
    names = ["cat", "dog", "car", "sky"]
    md = comparison_markdown(names, {"true frequency": np.array([0.1, 0.4, 0.3, 0.2]),
                                     "ignore model": np.array([0.2, 0.5, 0.1, 0.3])}, "true frequency", k=2)
    # ranks (1, 4, 3, 2) vs (2, 4, 1, 3): sum d^2 = 6, rho = 1 - 6 * 6 / (4 * 15) = 0.4; MAE = 0.5 / 4
    assert "| ignore model | 0.400 | 0.1250 | 1/2 |" in md
    assert "| 1 | dog (0.400) | dog (0.500) |" in md and "| 2 | car (0.300) | sky (0.300) |" in md


@pytest.mark.slow
def test_estimate_prior_cli_writes_csv_and_comparison(tmp_path):
    from plbench.cli import app
    from plbench.datasets.synthetic import write_synthetic_coco

    root = tmp_path / "data"
    write_synthetic_coco(root, train=40, val=12, num_classes=4, image_size=32, seed=2)
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(app, [
        "estimate-prior", "--dataset", "synthetic", "--data-root", str(root), "--image-size", "32",
        "--batch-size", "8", "--epochs", "1", "--device", "cpu", "--preload", "--out", str(out), "--compare-modes"])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "p.comparison.md").read_text()
    assert "Scored against: true frequency" in md and "| ignore model (CSL) |" in md and "| negative model |" in md
    assert "Spearman" in result.output and out.read_text().startswith("Classes,avg_pred")

"""Biased single positives from ``plbench simulate --scheme spl --bias ...`` (plbench.simulate_biased)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from plbench.artifacts.simulations import load_simulation
from plbench.cli import app
from plbench.datasets import load_dataset
from plbench.datasets.synthetic import write_synthetic_coco
from plbench.simulate import simulate_single_positive

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("biased") / "synthetic"
    write_synthetic_coco(root, train=60, val=4, num_classes=6, image_size=32, seed=1)
    return root


def _simulate(root, out, *extra):
    result = runner.invoke(app, ["simulate", "--dataset", "synthetic", "--data-root", str(root), "--scheme", "spl",
                                 "--seed", "3", "--out", str(out), *extra])
    return result


def _summed_areas(root, split):
    """(N, C) summed instance area per (image, class), read straight from the annotation file."""
    data = load_dataset("synthetic", root, split)
    ann = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    cats = [c["id"] for c in sorted(ann["categories"], key=lambda c: c["id"])]
    row = {str(i): r for r, i in enumerate(data.labels.image_ids)}
    areas = np.zeros(data.labels.shape)
    for a in ann["annotations"]:
        if str(a["image_id"]) in row:
            areas[row[str(a["image_id"])], cats.index(a["category_id"])] += a["area"]
    return data, areas


def test_uniform_is_plain_spl_bit_for_bit(root, tmp_path):
    assert _simulate(root, tmp_path / "u.parquet", "--bias", "uniform").exit_code == 0
    labels, meta = load_simulation(tmp_path / "u.parquet")
    data = load_dataset("synthetic", root, "train")
    assert np.array_equal(labels.to_dense(), simulate_single_positive(data.labels, 3).to_dense())
    assert meta["scheme"] == "spl" and "bias" not in meta["extra"]  # files as before --bias existed


def test_largest_keeps_the_largest_summed_area(root, tmp_path):
    assert _simulate(root, tmp_path / "l.parquet", "--bias", "largest").exit_code == 0
    labels, meta = load_simulation(tmp_path / "l.parquet")
    assert meta["scheme"] == "spl-largest" and meta["extra"]["bias"] == "largest"
    data, areas = _summed_areas(root, "train")
    kept = labels.to_dense()
    truth = data.labels.to_dense()
    for i in range(truth.shape[0]):
        pos = np.flatnonzero(truth[i] == 1)
        if pos.size == 0:
            assert (kept[i] == -1).all()
            continue
        best = pos[np.argmax(areas[i, pos])]  # ties: lowest class index
        assert np.flatnonzero(kept[i] == 1).tolist() == [best]


def test_size_bias_same_seed_same_bits_and_named_apart(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output folder, simulations/, is relative
    for name in ("a", "b"):
        assert _simulate(root, tmp_path / f"{name}.parquet", "--bias", "size").exit_code == 0
    a, meta = load_simulation(tmp_path / "a.parquet")
    b, _ = load_simulation(tmp_path / "b.parquet")
    assert np.array_equal(a.to_dense(), b.to_dense()) and meta["scheme"] == "spl-size"
    # the default file name carries the bias: runs and report rows (tag spl-size) are told apart
    out = runner.invoke(app, ["simulate", "--dataset", "synthetic", "--data-root", str(root), "--scheme", "spl",
                              "--seed", "3", "--bias", "frequency"], catch_exceptions=False)
    assert out.exit_code == 0 and (tmp_path / "simulations" / "synthetic-spl-frequency-s3.parquet").is_file()


def test_held_out_split_and_bad_combinations(root, tmp_path):
    assert _simulate(root, tmp_path / "h.parquet", "--bias", "largest", "--split", "train-spml-train").exit_code == 0
    labels, _ = load_simulation(tmp_path / "h.parquet")
    data, areas = _summed_areas(root, "train-spml-train")
    assert labels.num_images == len(data)
    rows, cols = np.nonzero(labels.to_dense() == 1)
    assert (areas[rows, cols] == np.where(data.labels.to_dense()[rows] == 1, areas[rows], -1).max(1)).all()
    bad = runner.invoke(app, ["simulate", "--dataset", "synthetic", "--data-root", str(root), "--scheme", "fpc",
                              "--param", "2", "--seed", "0", "--bias", "size", "--out", str(tmp_path / "x.parquet")])
    assert bad.exit_code == 2 and "--bias only with --scheme spl" in bad.output
    bad = runner.invoke(app, ["simulate", "--dataset", "nuswide", "--data-root", str(tmp_path), "--scheme", "spl",
                              "--seed", "0", "--bias", "largest", "--out", str(tmp_path / "y.parquet")])
    assert bad.exit_code == 2 and "areas and boxes" in bad.output
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "y.parquet").exists()

"""End to end: the demo at a reduced size through the same code path as `plbench demo` (the sweep), and
experiments/demo.toml kept equal to the demo's defaults."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from plbench.demo import DemoSettings, FineTunedDemoSettings, demo_spec, run_demo, run_fine_tuned_demo

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "demo.toml"


def test_demo_toml_is_the_demo_default():
    from plbench.sweep.spec import load_spec, parse_spec

    from_file = load_spec(EXPERIMENT)
    epr = [m for m in from_file.methods if m.loss == "epr"][0]
    from_code = parse_spec(demo_spec(DemoSettings(), epr.loss_options["expected_num_pos"]))
    assert dataclasses.replace(from_file, source=None, notes="") == dataclasses.replace(from_code, source=None, notes="")


@pytest.mark.slow
def test_small_linear_demo_end_to_end(tmp_path):
    from scipy.stats import spearmanr

    from plbench.artifacts.features import FeatureStore
    from plbench.datasets import load_dataset
    from plbench.priors import read_prior_csv

    settings = DemoSettings(out=str(tmp_path), train_images=120, val_images=48, num_classes=5, data_image_size=32,
                            image_size=32, epochs=2, fpc=8, rps=0.8, seeds=(0, 1))
    said = []
    paths = run_demo(settings, progress=False, say=said.append)
    assert said[0].startswith("[1/4]") and said[-1].startswith("done in")
    # 5 classes with 5 shapes: no conjunction can be held out with its attributes seen, so no zero-shot block
    assert any(line.startswith("zero-shot block skipped: expected 5") for line in said)
    md = paths["md"].read_text()
    assert "Regenerate with: `plbench demo --out " in md and "--seeds 2" in md
    for row in ("| full |", "| fpc8 |", "| rps0.8 |", "| spl |"):
        assert row in md
    for column in ("Negative P-ASL", "Ignore P-ASL", "Selective P-ASL", "AN", "AN-LS", "WAN", "EPR", "LL-R", "ROLE"):
        assert column in md
    assert "(n=2)" in md and "Paired differences" in md and "No zero-shot block: with 5 classes" in md
    runs = [p for p in (tmp_path / "runs").iterdir() if (p / "summary.json").is_file()]
    assert len(runs) == 2 * (1 + 3 + 3 + 12)
    # the notes' single-positive table: each method against AN on the same seed, from the run summaries
    import json

    maps = {}
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        if s["labels"] == "spl":
            maps.setdefault(s["loss"], {})[s["seed"]] = float(s["val_map"])
    for name, label in (("role", "ROLE"), ("em_apl", "EM+APL"), ("ll_ct", "LL-Ct"), ("gr_loss", "GR-Loss")):
        d = [maps[name][k] - maps["an"][k] for k in (0, 1)]
        row = re.search(rf"\| {re.escape(label)} \| [\d.]+ ± [\d.]+ \| (-?[\d.]+) ± ([\d.]+) \| (\d)/2 \|", md)
        assert row is not None, label
        assert float(row.group(1)) == pytest.approx(np.mean(d), abs=0.006)
        assert float(row.group(2)) == pytest.approx(np.std(d, ddof=1), abs=0.006)
        assert int(row.group(3)) == sum(x > 0 for x in d)
    # the features come from ImageNet weights, never a silent random initialisation
    (store_dir,) = [p for p in (tmp_path / "features").iterdir() if p.is_dir()]
    meta = FeatureStore.open(store_dir / "train").meta
    assert meta["weights"]["pretrained"] is True and meta["weights"]["source"] != "random initialisation"
    assert meta["preprocessing"]["mean"] == [0.5, 0.5, 0.5]  # tf_ models: inputs scaled to [-1, 1]
    # the notes' prior table against scipy on the prior files
    split = load_dataset("synthetic", tmp_path / "data" / "synthetic", "train")
    true = (split.labels.to_dense() == 1).mean(axis=0)
    rhos = []
    for seed in (0, 1):
        (path,) = [p for p in (tmp_path / "priors").glob(f"synthetic-fpc8-s{seed}-*.csv")]
        prior = read_prior_csv(path, split.class_names)
        rhos.append(spearmanr(prior, true)[0])
    row = re.search(r"\| fpc8 \| [^|]+\| [^|]+\| ([-\d.]+) ± ([\d.]+) \|", md)
    assert row is not None
    assert float(row.group(1)) == pytest.approx(np.mean(rhos), abs=0.006)
    assert float(row.group(2)) == pytest.approx(np.std(rhos, ddof=1), abs=0.006)


@pytest.fixture
def one_thread():
    """One intra-op thread: on a busy CI machine two OpenMP threads waiting for each other are slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_small_fine_tuned_demo_end_to_end(tmp_path, one_thread):
    settings = FineTunedDemoSettings(out=str(tmp_path), train_images=120, val_images=60, num_classes=6,
                                     data_image_size=48, image_size=32, epochs=1, batch_size=32, fpc=10, rps=0.8)
    said = []
    paths = run_fine_tuned_demo(settings, progress=False, say=said.append)
    assert said[0].startswith("[1/13]") and said[-1].startswith("done in")
    md = paths["md"].read_text()
    assert "plbench demo --protocol fine-tuned --out " in md
    for row in ("| full |", "| fpc10 |", "| rps0.8 |"):
        assert row in md
    assert len([p for p in (tmp_path / "runs").iterdir()]) == 7
    priors = sorted((tmp_path / "priors").glob("*.csv"))
    assert len(priors) == 2
    # each prior is the mean score of its Ignore-mode run over the training images (CSL), recomputed here with
    # an independent forward pass (the Negative run's scores or the validation images differ by > 1e-2)
    import timm
    import torch

    from plbench.config import TrainConfig
    from plbench.datasets import load_dataset
    from plbench.datasets.images import load_image, resize_square
    from plbench.engine.train import train
    from plbench.priors import read_prior_csv

    split = load_dataset("synthetic", tmp_path / "data" / "synthetic", "train")
    cfg = timm.get_pretrained_cfg("resnet10t").to_dict()
    x = np.stack([np.asarray(resize_square(load_image(p), 32), np.float32) for p in split.image_paths]) / 255
    x = torch.from_numpy(((x - np.array(cfg["mean"])) / np.array(cfg["std"])).astype(np.float32)).permute(0, 3, 1, 2)
    for tag in ("fpc10", "rps0.8"):
        run = tmp_path / "runs" / f"synthetic-{tag}-ignore-resnet10t-gap-s0"
        model = train(TrainConfig.load(run / "config.json"), progress=False).model.eval()  # finished: loaded
        with torch.no_grad():
            expected = torch.sigmoid(model(x)).double().mean(0).numpy()
        (path,) = (tmp_path / "priors").glob(f"synthetic-{tag}-*.csv")
        np.testing.assert_allclose(read_prior_csv(path, split.class_names), expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_small_demo_with_its_zero_shot_block(tmp_path):
    """12 classes let two conjunctions be held out: the block runs beside the sweep, its runs get the report's
    zero-shot section (not the mAP tables), and the notes' numbers are those of the run summaries."""
    import json

    from plbench.demo_zero_shot import ZeroShotDemoSettings

    zs = ZeroShotDemoSettings(num_unseen=2, epochs=2, batch_size=32,
                              head_options=(("embed_dim", 16), ("num_heads", 2), ("ff_dim", 32), ("dropout", 0.0)))
    settings = DemoSettings(out=str(tmp_path), train_images=96, val_images=48, num_classes=12, data_image_size=32,
                            image_size=32, epochs=1, fpc=6, rps=0.8, seeds=(0, 1), zero_shot=zs)
    said = []
    paths = run_demo(settings, progress=False, say=said.append)
    assert any(line.startswith("[3/4] waiting for the zero-shot block") for line in said)
    md = paths["md"].read_text()
    assert "## synthetic · zero-shot (ZSL: unseen classes; GZSL: seen + unseen)" in md
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("synthetic-zero-shot-*/summary.json")]
    assert len(summaries) == 2 * 2  # glove and random, two seeds
    zsl = {(s["zero_shot"]["embeddings"], s["seed"]): s["zero_shot"]["zsl"]["map"] for s in summaries}
    glove = [zsl[("glove", k)] for k in (0, 1)]
    row = re.search(r"\| ZSL: the 2 unseen \| ([\d.]+) ± ([\d.]+) \|", md)
    assert row is not None
    assert float(row.group(1)) == pytest.approx(np.mean(glove), abs=0.06)
    assert float(row.group(2)) == pytest.approx(np.std(glove, ddof=1), abs=0.06)
    # the zero-shot runs' seen-class mAP is not a column of the partial-label tables
    headings = [line for line in md.splitlines() if line.startswith("## synthetic")]
    assert [h for h in headings if "head ml-decoder" in h] == [] and any("head gap" in h for h in headings)

"""`plbench evaluate` on the real COCO 2017 sample and on synthetic data with reordered classes."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from faults_support import synthetic_root
from plbench.artifacts.files import sha256_file
from plbench.artifacts.runs import RunFolder
from plbench.cli import app
from plbench.config import TrainConfig
from plbench.engine.evaluate_run import evaluate_run, match_classes, reorder_groups
from plbench.errors import InputError

runner = CliRunner()


def _train(root, dataset, out, **kw):
    from plbench.engine.train import train

    settings = dict(dataset=dataset, data_root=str(root), backbone="resnet10t", head="gap", image_size=32,
                    batch_size=16, epochs=1, lr=1e-3, seed=1, device="cpu", preload=True, out_dir=str(out),
                    mode="ignore")
    cfg = TrainConfig(**{**settings, **kw})
    return train(cfg, progress=False).run_dir


@pytest.fixture(scope="module")
def coco_run(real_fixtures, tmp_path_factory):
    """A 1-epoch run on the real COCO sample (32 train images, 6 val images, 80 classes)."""
    return _train(real_fixtures / "coco2017_sample", "coco", tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("syn") / "data", train=40, val=24, classes=5, seed=3)


@pytest.fixture(scope="module")
def synthetic_run(synthetic, tmp_path_factory):
    """A 1-epoch run on 5 synthetic classes with an EMA model (decay 0.5): its headline model is the EMA."""
    return _train(synthetic, "synthetic", tmp_path_factory.mktemp("synruns"), ema_decay=0.5)


def _files(run):
    return {p.name: sha256_file(p) for p in sorted(run.iterdir()) if p.is_file()}


@pytest.mark.slow  # trains a tiny run
def test_own_validation_split_reproduces_the_run(coco_run, real_fixtures):
    before = _files(coco_run)
    result = runner.invoke(app, ["evaluate", str(coco_run), "--dataset", "coco", "--data-root",
                                 str(real_fixtures / "coco2017_sample"), "--split", "val"])
    assert result.exit_code == 0, result.output
    folder = coco_run / "eval-coco-val-last"
    assert str(folder) in result.stdout
    assert _files(coco_run) == before  # the run's own files are untouched

    own, ev = RunFolder(coco_run), RunFolder(folder)
    s, run_s = ev.summary(), own.summary()
    assert s["kind"] == "evaluation" and (s["dataset"], s["split"], s["checkpoint"]) == ("coco", "val", "last")
    assert s["map"] == run_s["val_map"]  # exactly: same model, same images, same preprocessing, same batches
    assert s["ap_per_class"] == run_s["ap_per_class"]
    assert (s["cf1"], s["of1"]) == (run_s["cf1"], run_s["of1"])
    assert s["val_images"] == 6 and s["val_images_skipped"] == 0 and not s["classes_reordered"]
    p, q = ev.predictions(), own.predictions()
    np.testing.assert_array_equal(p["scores"], q["scores"])
    np.testing.assert_array_equal(p["targets"], q["targets"])
    assert list(p["image_paths"]) == list(q["image_paths"])
    assert list(p["class_names"]) == run_s["class_names"]
    from plbench.report.records import load_record  # the report reads the folder like a run

    rec = load_record(folder)
    assert (rec.val_map, rec.dataset, rec.val_map_plain, rec.best_val_map) == (s["map"], "coco", s["map"], None)
    # the summary's mAP is the mean AP of the saved scores over classes with a positive (independent AP)
    from sklearn.metrics import average_precision_score

    cols = [c for c in range(80) if 0 < p["targets"][:, c].sum() < 6]
    aps = [average_precision_score(p["targets"][:, c], p["scores"][:, c]) for c in cols]
    assert s["map"] == pytest.approx(100 * np.mean(aps), abs=1e-6)


@pytest.mark.slow  # trains a tiny run
def test_other_classes_are_an_error_naming_them(synthetic_run, real_fixtures):
    result = runner.invoke(app, ["evaluate", str(synthetic_run), "--dataset", "coco", "--data-root",
                                 str(real_fixtures / "coco2017_sample"), "--split", "val"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    names = RunFolder(synthetic_run).summary()["class_names"]
    assert "expected the run's 5 classes, but the split has 80" in result.stderr
    assert repr(names[0]) in result.stderr and "'person'" in result.stderr
    assert not any(p.name.startswith("eval-coco") for p in synthetic_run.iterdir())


def _reversed_categories(src, dst):
    """A copy of the synthetic dataset whose val annotations list the classes in reverse id order."""
    shutil.copytree(src, dst)
    path = dst / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    ids = sorted(c["id"] for c in data["categories"])
    new_id = dict(zip(ids, reversed(ids)))
    for c in data["categories"]:
        c["id"] = new_id[c["id"]]
    for a in data["annotations"]:
        a["category_id"] = new_id[a["category_id"]]
    path.write_text(json.dumps(data))


@pytest.mark.slow  # trains a tiny run
def test_classes_matched_by_name_in_any_order(synthetic_run, synthetic, tmp_path):
    from plbench.datasets import load_dataset

    _reversed_categories(synthetic, tmp_path / "rev")
    split = load_dataset("synthetic", tmp_path / "rev", "val")
    names = RunFolder(synthetic_run).summary()["class_names"]
    assert split.class_names == names[::-1]  # the copy really lists the classes in another order

    plain = evaluate_run(synthetic_run, "synthetic", synthetic, "val", device="cpu")
    rev = evaluate_run(synthetic_run, "synthetic", tmp_path / "rev", "val", device="cpu", out=tmp_path / "ev")
    assert rev.folder == tmp_path / "ev" and plain.folder == synthetic_run / "eval-synthetic-val-last"
    assert rev.summary["classes_reordered"] and not plain.summary["classes_reordered"]
    assert rev.summary["class_names"] == names
    assert rev.summary["ap_per_class"] == plain.summary["ap_per_class"]  # per class, in the model's order
    assert rev.summary["map"] == plain.summary["map"] == RunFolder(synthetic_run).summary()["val_map"]
    np.testing.assert_array_equal(RunFolder(rev.folder).predictions()["targets"],
                                  RunFolder(plain.folder).predictions()["targets"])


def test_match_classes_by_hand():
    assert match_classes(["a", "b", "c"], ["c", "a", "b"], None).tolist() == [1, 2, 0]
    split_targets = np.array([[30, 10, 20]])  # columns c, a, b
    assert split_targets[:, match_classes(["a", "b", "c"], ["c", "a", "b"], None)].tolist() == [[10, 20, 30]]
    with pytest.raises(InputError, match="missing from the split: 'c'; not known to the model: 'd'"):
        match_classes(["a", "b", "c"], ["a", "b", "d"], None)
    with pytest.raises(InputError, match="names a class twice"):
        match_classes(["a", "b"], ["a", "a"], None)


def test_class_groups_follow_the_model_order():
    perm = match_classes(["a", "b", "c", "d"], ["d", "c", "b", "a"], None)  # model j = split perm[j]
    groups = reorder_groups({"rare": np.array([0, 1]), "frequent": np.array([3])}, perm)  # split: d, c / a
    assert groups["rare"].tolist() == [2, 3] and groups["frequent"].tolist() == [0]  # model: c, d / a


@pytest.mark.slow  # trains a tiny run
def test_unreadable_validation_image_is_counted(synthetic_run, synthetic, tmp_path):
    from plbench.datasets import load_dataset

    root = tmp_path / "broken"
    shutil.copytree(synthetic, root)
    victim = sorted(load_dataset("synthetic", root, "val").image_paths)[0]
    with open(victim, "r+b") as f:
        f.truncate(100)
    r = evaluate_run(synthetic_run, "synthetic", root, "val", device="cpu", out=tmp_path / "ev")
    assert r.summary["val_images"] == 23 and r.summary["val_images_skipped"] == 1
    assert r.summary["skipped_images"] == [str(victim)]
    result = runner.invoke(app, ["evaluate", str(synthetic_run), "--dataset", "synthetic", "--data-root", str(root),
                                 "--split", "val", "--strict", "--out", str(tmp_path / "ev2")])
    assert result.exit_code == 2 and str(victim) in result.stderr


@pytest.mark.slow  # trains a tiny run
def test_out_cannot_be_the_run_folder(synthetic_run, synthetic):
    with pytest.raises(InputError, match="the run folder itself"):
        evaluate_run(synthetic_run, "synthetic", synthetic, "val", device="cpu", out=synthetic_run)


@pytest.fixture(scope="module")
def linear_run(synthetic, tmp_path_factory):
    """A linear-protocol run: features of a resnet10t from a weights file, a GAP head trained on them."""
    import timm
    import torch

    from plbench.engine.features import extract_split
    from plbench.engine.train import train

    base = tmp_path_factory.mktemp("linear")
    torch.manual_seed(123)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=0, global_pool="")
    weights = base / "resnet10t.pt"
    torch.save(net.state_dict(), weights)
    for split in ("train", "val"):
        extract_split("synthetic", synthetic, split, base / "features", backbone="resnet10t", image_size=32,
                      checkpoint=weights, batch_size=16, device="cpu")
    cfg = TrainConfig(dataset="synthetic", data_root=str(synthetic), features=str(base / "features"),
                      backbone="resnet10t", checkpoint=str(weights), head="gap", image_size=32, batch_size=16,
                      epochs=2, lr=1e-2, seed=2, device="cpu", out_dir=str(base / "runs"), mode="ignore")
    return train(cfg, progress=False).run_dir, weights


@pytest.mark.slow  # trains a tiny run
def test_linear_protocol_run_rebuilt_from_its_features_backbone(linear_run, synthetic, tmp_path):
    """Backbone from the weights file + the run's head = the run's own scores, up to the float16 features."""
    run, weights = linear_run
    own = RunFolder(run)
    assert own.summary()["protocol"] == "linear"
    r = evaluate_run(run, "synthetic", synthetic, "val", device="cpu")
    got, want = RunFolder(r.folder).predictions()["scores"], own.predictions()["scores"]
    # float16 storage: relative error 2^-11 per feature (measured here: at most 6e-6 on the scores)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)
    assert r.summary["map"] == pytest.approx(own.summary()["val_map"], abs=0.5)

    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "checkpoint": None}))  # as if randomly initialised
    try:
        with pytest.raises(InputError, match="randomly initialised backbone"):
            evaluate_run(run, "synthetic", synthetic, "val", device="cpu", out=tmp_path / "a")
        changed = tmp_path / "changed.pt"
        changed.write_bytes(weights.read_bytes() + b"\0")
        (run / "config.json").write_text(json.dumps({**config, "checkpoint": str(changed)}))
        with pytest.raises(InputError, match="changed since the features were extracted"):
            evaluate_run(run, "synthetic", synthetic, "val", device="cpu", out=tmp_path / "b")
    finally:
        (run / "config.json").write_text(json.dumps(config))


@pytest.mark.slow  # trains a tiny run
def test_ema_run_headline_and_plain_model(synthetic_run, synthetic):
    """A run with EMA: the default evaluation is the headline (EMA) model, --no-ema the plain one."""
    run = synthetic_run
    s = RunFolder(run).summary()
    assert s["val_map_ema"] is not None and s["val_map_ema"] != s["val_map_plain"]  # two different models
    result = runner.invoke(app, ["evaluate", str(run), "--dataset", "synthetic", "--data-root", str(synthetic),
                                 "--split", "val"])
    assert result.exit_code == 0, result.output
    ema = RunFolder(run / "eval-synthetic-val-last").summary()
    assert ema["weights"] == "ema" and ema["map"] == s["val_map"] == s["val_map_ema"]
    result = runner.invoke(app, ["evaluate", str(run), "--dataset", "synthetic", "--data-root", str(synthetic),
                                 "--split", "val", "--no-ema"])
    assert result.exit_code == 0, result.output
    plain = RunFolder(run / "eval-synthetic-val-last-plain").summary()
    assert plain["weights"] == "plain" and plain["map"] == s["val_map_plain"]
    assert (plain["val_map_plain"], plain["val_map_ema"]) == (plain["map"], None)


@pytest.mark.slow  # trains a tiny run
def test_an_empty_class_group_is_null_in_strict_json(synthetic_run, synthetic, tmp_path, monkeypatch):
    """An LVIS-style group without an evaluated class has no mAP: null in summary.json (was a bare NaN)."""
    import dataclasses

    from plbench.datasets import load_dataset

    def with_groups(*args, **kwargs):
        split = load_dataset(*args, **kwargs)
        return dataclasses.replace(split, class_groups={"rare": np.zeros(0, np.int64), "frequent": np.arange(5)})

    monkeypatch.setattr("plbench.engine.evaluate_run.load_dataset", with_groups)
    r = evaluate_run(synthetic_run, "synthetic", synthetic, "val", device="cpu", out=tmp_path / "ev")
    text = (r.folder / "summary.json").read_text()
    s = json.loads(text, parse_constant=lambda c: pytest.fail(f"summary.json holds a bare {c}"))
    assert s["map_rare"] is None and r.summary["map_rare"] is None
    assert s["map_frequent"] == pytest.approx(s["map"])  # every class is frequent here
    assert r.summary == s  # the returned summary is what the file holds

"""`plbench predict` and plbench.engine.predict / run_model on the real JPEG fixtures, with a tiny trained run.

Known outputs come from a run whose head is overwritten with zero weights and chosen biases: every
image then scores sigmoid(bias) per class, so which classes come out, and in which order, is known by hand.
"""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from plbench.artifacts.runs import RunFolder
from plbench.cli import app
from plbench.config import TrainConfig
from plbench.engine.image_files import list_images
from plbench.engine.predict import predict_files, select_classes
from plbench.engine.run_model import load_checkpoint_model, load_run_model
from plbench.errors import InputError

runner = CliRunner()
#: the scores every image gets from the "known" run (plain weights), and from its EMA weights
KNOWN = [0.9, 0.2, 0.6, 0.45, 0.75]
KNOWN_EMA = [0.1, 0.8, 0.3, 0.55, 0.05]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 1-epoch resnet10t run at 32 px on 5 synthetic classes."""
    from plbench.datasets.synthetic import write_synthetic_coco
    from plbench.engine.train import train

    base = tmp_path_factory.mktemp("predict")
    write_synthetic_coco(base / "data", train=40, val=16, num_classes=5, image_size=32, seed=3)
    cfg = TrainConfig(dataset="synthetic", data_root=str(base / "data"), backbone="resnet10t", head="gap",
                      image_size=32, batch_size=16, epochs=1, lr=1e-3, seed=1, device="cpu", preload=True,
                      out_dir=str(base / "runs"), mode="ignore")
    return train(cfg, progress=False).run_dir


def _logit(p):
    return math.log(p / (1 - p))


def _constant_head(weights, probs):
    weights = dict(weights)
    weights["head.fc.weight"] = torch.zeros_like(weights["head.fc.weight"])
    weights["head.fc.bias"] = torch.tensor([_logit(p) for p in probs], dtype=torch.float32)
    return weights


@pytest.fixture(scope="module")
def known_run(trained_run, tmp_path_factory):
    """A copy of the run whose last.pt scores KNOWN (plain) and KNOWN_EMA (EMA) for every image."""
    run = tmp_path_factory.mktemp("known") / trained_run.name
    shutil.copytree(trained_run, run)
    folder = RunFolder(run)
    state = folder.load_checkpoint("last")
    state["model"] = _constant_head(state["model"], KNOWN)
    state["ema"] = {"decay": 0.99, "updates": 3, "module": _constant_head(state["model"], KNOWN_EMA)}
    folder.save_checkpoint("last", state)
    return run


@pytest.fixture(scope="module")
def names(trained_run):
    return RunFolder(trained_run).summary()["class_names"]


@pytest.fixture
def photos(real_fixtures):
    return real_fixtures / "images"


def _lines(output):
    """predict's terminal output -> {image file name: [(class, score), ...]}."""
    out = {}
    for line in output.strip().splitlines():
        path, _, rest = line.partition(": ")
        pairs = [p.rsplit(" ", 1) for p in rest.split(", ")] if rest and not rest.startswith("(") else []
        out[path.rsplit("/", 1)[-1]] = [(n, float(s)) for n, s in pairs]
    return out


@pytest.mark.slow  # trains a tiny run
def test_known_classes_above_threshold(known_run, names, photos):
    result = runner.invoke(app, ["predict", str(known_run), str(photos), "--no-ema"])
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert len(lines) == 9  # the nine real photographs
    want = [(names[0], 0.9), (names[4], 0.75), (names[2], 0.6)]  # >= 0.5, highest first
    for got in lines.values():
        assert [n for n, _ in got] == [n for n, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=5e-4)

    result = runner.invoke(app, ["predict", str(known_run), str(photos), "--no-ema", "--threshold", "0.8"])
    assert all(got == [(names[0], 0.9)] for got in _lines(result.stdout).values())
    result = runner.invoke(app, ["predict", str(known_run), str(photos), "--no-ema", "--threshold", "0.95"])
    assert result.exit_code == 0 and "(no class at or above 0.95)" in result.stdout


@pytest.mark.slow  # trains a tiny run
def test_top_k_ignores_threshold(known_run, names, photos):
    result = runner.invoke(app, ["predict", str(known_run), str(photos / "000000000885.jpg"), "--no-ema",
                                 "--top-k", "4", "--threshold", "0.99"])
    assert result.exit_code == 0, result.output
    (got,) = _lines(result.stdout).values()
    assert [n for n, _ in got] == [names[0], names[4], names[2], names[3]]


@pytest.mark.slow  # trains a tiny run
def test_ema_weights_by_default(known_run, names, photos):
    result = runner.invoke(app, ["predict", str(known_run), str(photos / "000000000885.jpg")])
    assert result.exit_code == 0, result.output
    (got,) = _lines(result.stdout).values()
    assert got == [(names[1], pytest.approx(0.8, abs=5e-4)), (names[3], pytest.approx(0.55, abs=5e-4))]
    _, source = load_checkpoint_model(known_run, "last", ema=True)
    assert (source.weights, source.ema_available) == ("ema", True)
    _, source = load_checkpoint_model(known_run, "last", ema=False)
    assert source.weights == "plain"


@pytest.mark.slow  # trains a tiny run
def test_unreadable_images_counted_and_named(known_run, photos, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(photos, folder)
    (folder / "broken.jpg").write_bytes((photos / "000000000885.jpg").read_bytes()[:300])  # truncated JPEG
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.png").write_text("not an image")
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    result = runner.invoke(app, ["predict", str(known_run), str(folder)])
    assert result.exit_code == 0, result.output
    assert len(_lines(result.stdout)) == 9
    assert "2 unreadable image(s) skipped" in result.stderr
    assert "broken.jpg" in result.stderr and "notes.png" in result.stderr

    result = runner.invoke(app, ["predict", str(known_run), str(folder), "--strict"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "broken.jpg" in result.stderr


@pytest.mark.slow  # trains a tiny run
def test_out_files_jsonl_and_csv(known_run, names, photos, tmp_path):
    out = tmp_path / "p.jsonl"
    result = runner.invoke(app, ["predict", str(known_run), str(photos), "--no-ema", "--out", str(out),
                                 "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "wrote predictions for 9 image(s)" in result.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in sorted(photos.glob("*.jpg"))]
    assert all([p["class"] for p in r["predictions"]] == [names[0], names[4], names[2]] for r in records)

    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(known_run), str(photos), "--no-ema", "--top-k", "2",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 18 and set(rows[0]) == {"image", "class", "score"}
    assert [r["class"] for r in rows[:2]] == [names[0], names[4]]
    assert float(rows[0]["score"]) == pytest.approx(0.9, abs=1e-6)

    result = runner.invoke(app, ["predict", str(known_run), str(photos), "--out", str(tmp_path / "p.txt")])
    assert result.exit_code == 2 and ".jsonl or .csv" in result.stderr


@pytest.mark.slow  # trains a tiny run
def test_batched_scores_equal_one_image_at_a_time(trained_run, photos):
    """The batched pipeline against an independent per-image computation (PIL decode + numpy normalisation)."""
    from plbench.datasets.images import load_image, resize_square

    model, pre, names = load_run_model(trained_run)
    paths = list_images([photos])
    preds = predict_files(model, paths, pre, len(names), batch_size=4)
    assert preds.failed == [] and preds.indices.tolist() == list(range(9))
    mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)
    for i, path in enumerate(paths):
        pixels = resize_square(load_image(path, draft_size=pre["image_size"]), pre["image_size"])
        x = (pixels.astype(np.float32) / np.float32(255) - mean) / std  # (S, S, 3)
        with torch.no_grad():
            logits = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
        ref = 1 / (1 + np.exp(-logits.double().numpy()[0]))
        np.testing.assert_allclose(preds.scores[i], ref, atol=1e-5)
    assert preds.scores.std(axis=0).max() > 1e-4  # a trained model: the images do get different scores


@pytest.mark.slow  # trains a tiny run
def test_gpu_code_path_on_the_cpu(trained_run, photos, monkeypatch):
    """bfloat16 autocast (the one policy: amp means bf16 on the CPU too) and channels-last model and batches,
    as on a GPU: the same classes' scores as float32 within bfloat16's rounding."""
    from plbench.engine.runtime import CHANNELS_LAST_ENV

    model, pre, names = load_run_model(trained_run)
    paths = list_images([photos])
    ref = predict_files(model, paths, pre, len(names), batch_size=4)
    monkeypatch.setenv(CHANNELS_LAST_ENV, "1")
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(
        (args[0].is_contiguous(memory_format=torch.channels_last), torch.is_autocast_enabled("cpu"))))
    got = predict_files(model, paths, pre, len(names), batch_size=4, amp=True)
    hook.remove()
    assert seen and all(s == (True, True) for s in seen)
    assert model.backbone.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert got.scores.dtype == np.float32 and got.indices.tolist() == ref.indices.tolist()
    np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=2e-2)
    assert np.abs(got.scores - ref.scores).max() > 0  # bfloat16 really ran


def test_select_classes_by_hand():
    names = ["a", "b", "c", "d"]
    scores = np.array([0.5, 0.9, 0.49, 0.9])
    assert select_classes(scores, names) == [("b", 0.9), ("d", 0.9), ("a", 0.5)]  # at or above; ties by index
    assert select_classes(scores, names, threshold=0.95) == []
    assert select_classes(scores, names, top_k=3, threshold=0.99) == [("b", 0.9), ("d", 0.9), ("a", 0.5)]
    assert select_classes(scores, names, top_k=10) == [("b", 0.9), ("d", 0.9), ("a", 0.5), ("c", 0.49)]


def test_list_images(photos, tmp_path):
    assert len(list_images([photos])) == 9
    one = photos / "000000000885.jpg"
    assert list_images([one, photos]) [0] == one and len(list_images([one, photos])) == 9  # listed once
    with pytest.raises(InputError, match="no such file or folder"):
        list_images([tmp_path / "absent"])
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no image file"):
        list_images([tmp_path])


@pytest.mark.slow  # trains a tiny run
def test_checkpoint_without_new_fields_falls_back(trained_run, tmp_path):
    """Checkpoints written before ema/preprocessing/class_names: plain model, config size, ImageNet mean/std."""
    run = tmp_path / "old"
    shutil.copytree(trained_run, run)
    folder = RunFolder(run)
    state = folder.load_checkpoint("last")
    for key in ("ema", "preprocessing", "class_names"):
        state.pop(key, None)
    folder.save_checkpoint("last", state)
    (model, pre, names), source = load_checkpoint_model(run, "last")
    assert source.weights == "plain" and not source.ema_available
    assert pre == {"image_size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert names == folder.summary()["class_names"]
    ref, _, _ = load_run_model(trained_run)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


@pytest.mark.slow  # trains a tiny run
def test_bad_runs_are_input_errors(trained_run, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(trained_run, run)
    (run / "best.pt").unlink()
    result = runner.invoke(app, ["predict", str(run), str(tmp_path), "--checkpoint", "best"])
    assert result.exit_code == 2 and "no such checkpoint" in result.stderr
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "head_options": {"bogus": 1}}))
    with pytest.raises(InputError):
        load_run_model(run)
    (run / "config.json").write_text(json.dumps({**config, "backbone": "resnet18"}))
    with pytest.raises(InputError, match="do not fit"):
        load_run_model(run)

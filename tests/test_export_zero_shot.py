"""`plbench export model` of a zero-shot run: the exported graph scores the class list baked into it (`--classes
seen|unseen|all` of the run's split, or any `--class-names`), and its outputs on the validation images equal
what `plbench evaluate` (seen, ZSL, GZSL) and `plbench predict --class-names` score with the PyTorch model; the
metadata's `zero_shot` block says which classes, in output order; the options are refused (exit 2, nothing
written) for runs that are not zero-shot and when given together."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from plbench.artifacts.runs import RunFolder
from plbench.cli import app
from plbench.config import TrainConfig
from plbench.engine.export import export_run, load_exported, metadata_path
from plbench.engine.image_files import load_pixels, preprocess
from plbench.engine.run_model import load_run_model
from test_zero_shot_runs import plain_run  # noqa: F401  (a config.json of a run that is not zero-shot)

try:
    import onnxruntime  # noqa: F401
except ImportError:
    onnxruntime = None

runner = CliRunner()
UNSEEN = ("red_checkered_star", "cyan_dotted_bar", "blue_striped_square")  # classes of the 12-class design
NEW = ("green_circle", "yellow_dotted_triangle")  # not classes of the dataset; GloVe knows their words
TOL = 1e-5  # sigmoid scores, exported vs PyTorch (float32 on the CPU)


@pytest.fixture(scope="module")
def zs_run(tmp_path_factory):
    """A 1-epoch image zero-shot run: resnet10t, 32 px, 12 synthetic classes (3 unseen), GloVe embeddings."""
    from plbench.datasets.synthetic import write_synthetic_coco
    from plbench.engine.train import train

    base = tmp_path_factory.mktemp("zsexport")
    root = base / "data"
    write_synthetic_coco(root, train=48, val=16, num_classes=12, image_size=32, seed=5)
    split = base / "unseen.txt"
    split.write_text("\n".join(UNSEEN) + "\n")
    cfg = TrainConfig(dataset="synthetic", data_root=str(root), backbone="resnet10t", head="ml-decoder",
                      image_size=32, batch_size=16, epochs=1, lr=1e-3, seed=1, device="cpu", preload=True,
                      out_dir=str(base / "runs"), mode="negative", zsl_split=str(split), class_embeddings="glove",
                      head_options={"embed_dim": 32, "num_heads": 2, "ff_dim": 64})
    return train(cfg, progress=False).run_dir


@pytest.fixture(scope="module")
def evaluated(zs_run, tmp_path_factory):
    """`plbench evaluate RUN --classes all`: GZSL scores (seen then unseen columns) of the validation images."""
    from plbench.engine.evaluate_run import evaluate_run

    r = evaluate_run(zs_run, device="cpu", classes=["all"], out=tmp_path_factory.mktemp("ev") / "ev")
    return RunFolder(r.folder).predictions()


@pytest.fixture(scope="module")
def images(zs_run, evaluated):
    """The evaluated images as model input (N, 3, 32, 32), preprocessed as the run says."""
    _, pre, _ = load_run_model(zs_run)
    paths = list(evaluated["image_paths"])
    return preprocess(torch.stack([load_pixels(p, pre["image_size"]) for p in paths]), pre).numpy()


def _export(run, *args):
    result = runner.invoke(app, ["export", "model", str(run), *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow  # trains a tiny run
@pytest.mark.parametrize("choice, columns", [("unseen", slice(9, 12)), ("all", slice(0, 12))])
def test_split_classes_match_the_evaluation(zs_run, evaluated, images, choice, columns):
    _export(zs_run, "--format", "torchscript", "--classes", choice)
    path = zs_run / "export" / f"model-last-{choice}-scores.torchscript.pt"  # the choice names the file
    meta = json.loads(metadata_path(path).read_text())
    want_names = list(evaluated["class_names"][columns])
    assert meta["class_names"] == want_names and meta["output"]["shape"] == ["batch", len(want_names)]
    if choice == "unseen":
        assert sorted(want_names) == sorted(UNSEEN)
    seen = RunFolder(zs_run).summary()["class_names"]
    assert meta["zero_shot"] == {
        "split": str(zs_run.parent.parent / "unseen.txt"), "classes": choice, "embeddings": "glove",
        "prompt": None, "embedding_dim": 50, "oov_words": {}, "seen_classes": seen}
    got = load_exported(path)(images)
    np.testing.assert_allclose(got, evaluated["scores"][:, columns], rtol=0, atol=TOL)


@pytest.mark.slow  # trains a tiny run
def test_default_is_the_seen_classes_as_trained(zs_run, evaluated, images):
    _export(zs_run, "--format", "torchscript")
    path = zs_run / "export" / "model-last-seen-scores.torchscript.pt"
    meta = json.loads(metadata_path(path).read_text())
    seen = RunFolder(zs_run).summary()["class_names"]
    assert meta["class_names"] == seen and len(seen) == 9
    assert meta["zero_shot"]["classes"] == "seen" and meta["zero_shot"]["oov_words"] is None
    assert meta["zero_shot"]["embedding_dim"] == 50
    got = load_exported(path)(images)
    np.testing.assert_allclose(got, evaluated["scores"][:, :9], rtol=0, atol=TOL)  # the GZSL seen columns
    own = RunFolder(zs_run).predictions()  # the run's last-epoch validation scores, same image order
    assert list(own["image_paths"]) == list(evaluated["image_paths"])
    np.testing.assert_allclose(got, own["scores"], rtol=0, atol=TOL)


@pytest.mark.slow  # trains a tiny run
def test_class_names_match_predict(zs_run, evaluated, images, tmp_path):
    names = [*NEW, UNSEEN[0]]
    out = tmp_path / "open.torchscript.pt"
    _export(zs_run, "--format", "torchscript", "--class-names", ",".join(names), "--out", str(out))
    meta = json.loads(metadata_path(out).read_text())
    assert meta["class_names"] == names and meta["output"]["shape"] == ["batch", 3]
    assert meta["zero_shot"]["classes"] == "names" and meta["zero_shot"]["oov_words"] == {}
    got = load_exported(out)(images)
    assert got.shape == (len(images), 3)

    preds = tmp_path / "p.jsonl"
    result = runner.invoke(app, ["predict", str(zs_run), *map(str, evaluated["image_paths"]), "--class-names",
                                 ",".join(names), "--top-k", "3", "--device", "cpu", "--out", str(preds)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    want = np.array([[{d["class"]: d["score"] for d in r["predictions"]}[n] for n in names] for r in rows])
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)  # predict's file rounds to 6 decimals
    # an unseen class scores the same by name as in the split's ZSL columns
    col = list(evaluated["class_names"]).index(UNSEEN[0])
    np.testing.assert_allclose(got[:, 2], evaluated["scores"][:, col], rtol=0, atol=TOL)

    # the default file name holds a digest of the names: two lists do not overwrite each other
    _export(zs_run, "--format", "torchscript", "--class-names", NEW[0], "--no-check")
    _export(zs_run, "--format", "torchscript", "--class-names", NEW[1], "--no-check")
    files = sorted(p.name for p in (zs_run / "export").glob("model-last-names-*-scores.torchscript.pt"))
    assert len(files) == 2
    assert {json.loads(metadata_path(zs_run / "export" / f).read_text())["class_names"][0] for f in files} == set(NEW)


@pytest.mark.slow  # trains a tiny run
@pytest.mark.skipif(onnxruntime is None, reason="onnxruntime not installed (pip install 'plbench[onnx]')")
def test_onnx_gzsl_export(zs_run, evaluated, images, tmp_path):
    result = export_run(zs_run, "onnx", tmp_path / "gzsl.onnx", classes="all")
    assert result.max_abs_diff is not None and result.max_abs_diff <= TOL  # the built-in check ran
    assert result.metadata["zero_shot"]["classes"] == "all" and result.metadata["opset"] == 17
    got = load_exported(result.path)(images)
    np.testing.assert_allclose(got, evaluated["scores"], rtol=0, atol=TOL)


@pytest.mark.slow  # trains a tiny run
def test_export_leaves_the_run_scoring_what_it_did(zs_run, evaluated, images):
    """Exports bake their own queries: a later default export still scores the seen classes."""
    export_run(zs_run, "torchscript", zs_run / "export" / "u.torchscript.pt", classes="unseen", check=False)
    model, _, names = load_run_model(zs_run)
    assert len(names) == 9
    with torch.no_grad():
        got = torch.sigmoid(model(torch.from_numpy(images))).numpy()
    np.testing.assert_allclose(got, evaluated["scores"][:, :9], rtol=0, atol=TOL)


@pytest.mark.slow  # trains a tiny run
def test_names_the_source_cannot_embed_are_refused(zs_run, tmp_path):
    out = tmp_path / "bad.torchscript.pt"
    result = runner.invoke(app, ["export", "model", str(zs_run), "--format", "torchscript", "--class-names",
                                 "green_circle,qqxzv_wqpt", "--out", str(out)])
    assert result.exit_code == 2 and "no vector for 1 of the 2 names: 'qqxzv_wqpt'" in " ".join(result.output.split())
    assert not out.exists() and not metadata_path(out).exists()


@pytest.mark.parametrize("option, value", [("--classes", "unseen"), ("--class-names", "dog,sky"), ("--class-names", ",")])
def test_zero_shot_options_need_a_zero_shot_run(plain_run, option, value):
    result = runner.invoke(app, ["export", "model", str(plain_run), "--format", "torchscript", option, value])
    assert result.exit_code == 2 and f"{option} is for zero-shot runs" in " ".join(result.output.split())
    assert not (plain_run / "export").exists()


def test_classes_and_class_names_are_exclusive(plain_run):
    config = json.loads((plain_run / "config.json").read_text())
    (plain_run / "config.json").write_text(json.dumps({**config, "zsl_split": "unseen.txt", "head": "ml-decoder"}))
    result = runner.invoke(app, ["export", "model", str(plain_run), "--format", "torchscript", "--classes", "all",
                                 "--class-names", "dog"])
    assert result.exit_code == 2 and "--classes and --class-names" in " ".join(result.output.split())
    assert not (plain_run / "export").exists()

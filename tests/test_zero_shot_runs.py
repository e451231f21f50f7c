"""Trained zero-shot runs after training: `plbench evaluate RUN` scores ZSL (unseen) and GZSL (all) with the run's
recorded split and class embeddings, and its numbers equal an independent computation (sklearn AP, a numpy
top-K) from the evaluation's own predictions; `plbench predict RUN IMAGES --class-names ...` embeds the names
with the run's source and reproduces the run's own scores for its seen classes; runs that are not zero-shot and
names the source cannot embed are InputErrors that say why (and which names)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner

from plbench.artifacts.runs import RunFolder
from plbench.cli import app
from plbench.config import TrainConfig
from plbench.errors import InputError

runner = CliRunner()
UNSEEN = ("red_checkered_star", "cyan_dotted_bar", "blue_striped_square")  # classes of the 12-class design
EXTRA = ("purple_thing", "green_blob")  # names the embedding file holds beyond the dataset's classes


@pytest.fixture(scope="module")
def zs_run(tmp_path_factory):
    """A 1-epoch image (not linear) zero-shot run: resnet10t, 32 px, 12 synthetic classes, 3 unseen, class
    embeddings from a CSV file of seeded random 16-d vectors (the 12 classes and two extra names)."""
    from plbench.datasets import load_dataset
    from plbench.datasets.synthetic import write_synthetic_coco
    from plbench.engine.train import train

    base = tmp_path_factory.mktemp("zsrun")
    root = base / "data"
    write_synthetic_coco(root, train=48, val=16, num_classes=12, image_size=32, seed=5)
    names = list(load_dataset("synthetic", root, "train").class_names) + list(EXTRA)
    vectors = np.random.default_rng(0).standard_normal((len(names), 16))
    emb = base / "emb.csv"
    with open(emb, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", *[f"d{i}" for i in range(16)]])
        w.writerows([n, *(repr(float(x)) for x in v)] for n, v in zip(names, vectors))
    split = base / "unseen.txt"
    split.write_text("\n".join(UNSEEN) + "\n")
    cfg = TrainConfig(dataset="synthetic", data_root=str(root), backbone="resnet10t", head="ml-decoder",
                      image_size=32, batch_size=16, epochs=1, lr=1e-3, seed=1, device="cpu", preload=True,
                      out_dir=str(base / "runs"), mode="negative", zsl_split=str(split), class_embeddings=str(emb),
                      head_options={"embed_dim": 32, "num_heads": 2, "ff_dim": 64})
    return train(cfg, progress=False).run_dir


@pytest.fixture()
def plain_run(tmp_path):
    """A folder whose config.json describes a run that is not zero-shot (the checks come before any loading)."""
    run = tmp_path / "plain"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"dataset": "synthetic", "data_root": str(tmp_path), "head": "gap"}))
    return run


def _top_k_f1(scores, targets, k):
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    tp = sum(int((targets[i, top[i]] == 1).sum()) for i in range(len(scores)))
    p, r = tp / (len(scores) * k), tp / int((targets == 1).sum())
    return 100 * 2 * p * r / (p + r) if p + r else 0.0


def _map(scores, targets):
    return 100 * np.mean([average_precision_score(targets[:, j] == 1, scores[:, j]) if (targets[:, j] == 1).any()
                          else 0.0 for j in range(scores.shape[1])])


def test_evaluate_scores_zsl_and_gzsl_as_an_independent_computation(zs_run, tmp_path):
    from plbench.engine.evaluate_run import evaluate_run

    seen = RunFolder(zs_run).summary()["class_names"]
    r = evaluate_run(zs_run, device="cpu", out=tmp_path / "ev")  # the run's dataset and validation split
    zs = r.summary["zero_shot"]
    p = RunFolder(r.folder).predictions()
    names = list(p["class_names"])
    assert names == seen + [c for c in names if c in UNSEEN] and len(names) == 12  # seen, then unseen
    assert zs["classes"] == ["unseen", "all"] and (zs["num_seen"], zs["num_unseen"]) == (9, 3)
    s, t = p["scores"].astype(np.float64), p["targets"]
    u = slice(9, 12)
    assert zs["zsl"]["map"] == pytest.approx(_map(s[:, u], t[:, u]), abs=1e-4)
    assert zs["gzsl"]["map"] == pytest.approx(_map(s, t), abs=1e-4)
    for k in (3, 5):
        assert zs["gzsl"][f"f1@{k}"] == pytest.approx(_top_k_f1(s, t, k), abs=1e-4)
    assert zs["zsl"]["f1@3"] == pytest.approx(_top_k_f1(s[:, u], t[:, u], 3), abs=1e-4)
    keep = (t[:, u] == 1).any(1)
    assert zs["images"] == {"zsl": 16, "gzsl": 16, "zsl_unseen_positive": int(keep.sum())}
    assert zs["zsl_unseen_positive"]["map"] == pytest.approx(_map(s[keep][:, u], t[keep][:, u]), abs=1e-4)
    assert r.summary["map"] == zs["zsl"]["map"] and json.loads((r.folder / "summary.json").read_text())[
        "zero_shot"]["gzsl"] == pytest.approx(zs["gzsl"])
    # the run's own last-epoch zero-shot evaluation, same images and batch size: the same numbers
    trained = RunFolder(zs_run).summary()["zero_shot"]
    assert zs["zsl"]["map"] == pytest.approx(trained["zsl"]["map"], abs=1e-3)
    assert zs["gzsl"]["f1@5"] == pytest.approx(trained["gzsl"]["f1@5"], abs=1e-3)


def test_evaluate_seen_classes_only(zs_run, tmp_path):
    full = RunFolder(tmp_path / "all")
    from plbench.engine.evaluate_run import evaluate_run

    evaluate_run(zs_run, device="cpu", out=full.path, classes=["all"])
    result = runner.invoke(app, ["evaluate", str(zs_run), "--classes", "seen", "--device", "cpu",
                                 "--out", str(tmp_path / "seen")])
    assert result.exit_code == 0, result.output
    assert "SEEN mAP" in result.stdout and "ZSL" not in result.stdout
    s = RunFolder(tmp_path / "seen").summary()
    assert list(s["zero_shot"]) [:1] == ["seen"] and "zsl" not in s["zero_shot"] and "gzsl" not in s["zero_shot"]
    seen_p, all_p = RunFolder(tmp_path / "seen").predictions(), full.predictions()
    assert list(seen_p["class_names"]) == list(all_p["class_names"][:9])
    # each class is scored by its own query: the seen scores do not depend on which other classes are scored
    np.testing.assert_allclose(seen_p["scores"], all_p["scores"][:, :9], atol=1e-5)
    assert s["zero_shot"]["seen"]["map"] == pytest.approx(_map(seen_p["scores"].astype(np.float64),
                                                               seen_p["targets"]), abs=1e-4)


def test_classes_option_needs_a_zero_shot_run(plain_run, tmp_path):
    result = runner.invoke(app, ["evaluate", str(plain_run), "--classes", "unseen", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 2 and "--classes is for zero-shot runs" in result.output
    assert not (tmp_path / "ev").exists()


def test_predict_seen_names_reproduce_the_runs_scores(zs_run, tmp_path):
    run = RunFolder(zs_run)
    own = run.predictions()
    seen = list(own["class_names"])
    order = seen[::-1]  # any order: each name is scored by its own query
    out = tmp_path / "p.jsonl"
    result = runner.invoke(app, ["predict", str(zs_run), *map(str, own["image_paths"]), "--class-names",
                                 ",".join(order), "--top-k", "9", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["image"] for r in rows] == [str(p) for p in own["image_paths"]]
    got = np.array([[{d["class"]: d["score"] for d in r["predictions"]}[n] for n in seen] for r in rows])
    np.testing.assert_allclose(got, own["scores"], atol=2e-6)  # the file rounds to 6 decimals


def test_predict_new_names_and_names_the_source_lacks(zs_run, tmp_path):
    image = str(RunFolder(zs_run).predictions()["image_paths"][0])
    names = tmp_path / "names.txt"
    names.write_text("# open vocabulary\npurple_thing\n\ngreen_blob\nred_checkered_star\n")
    result = runner.invoke(app, ["predict", str(zs_run), image, "--class-names", str(names), "--top-k", "3",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    got = [p.rsplit(" ", 1)[0] for p in result.stdout.split(": ", 1)[1].strip().split(", ")]
    assert sorted(got) == sorted(["purple_thing", "green_blob", "red_checkered_star"])

    out = tmp_path / "none.jsonl"
    result = runner.invoke(app, ["predict", str(zs_run), image, "--class-names", "purple_thing,zebra,unicorn",
                                 "--out", str(out)])
    assert result.exit_code == 2 and not out.exists()
    text = " ".join(result.output.split())
    assert "no vector for 2 of the 3 names: 'zebra', 'unicorn'" in text and "emb.csv" in text


def test_predict_class_names_need_a_zero_shot_run(plain_run, tmp_path):
    result = runner.invoke(app, ["predict", str(plain_run), str(tmp_path), "--class-names", "a,b"])
    assert result.exit_code == 2 and "--class-names is for zero-shot runs" in result.output


def test_parse_class_names(tmp_path):
    from plbench.engine.zero_shot import parse_class_names

    assert parse_class_names(" sky, dog ,,water") == ["sky", "dog", "water"]
    f = tmp_path / "n.txt"
    f.write_text("a\r\n# no\n\nb c\n")
    assert parse_class_names(str(f)) == ["a", "b c"]
    with pytest.raises(InputError, match="repeat"):
        parse_class_names("a,b,a")
    with pytest.raises(InputError, match="at least one"):
        parse_class_names(" , ")

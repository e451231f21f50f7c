"""The [zero_shot] sweep axis: splits x class_embeddings x prompts x alignment_weights; experiments without it keep
their hashes (tests/test_sweep_plan.py pins them); the example experiment lists its grid; a tiny zero-shot sweep
writes the papers' table (ZSL and GZSL: mAP, F1@3, F1@5) with the runs' own numbers; bad tables are
InputErrors naming the key."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plbench.cli import app
from plbench.errors import InputError
from plbench.sweep import StageKind, expand, parse_spec, read_experiment, run_sweep

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "experiments" / "zsl_synthetic.toml"
runner = CliRunner()


def example(**changes):
    data = read_experiment(EXAMPLE)
    zs = data["zero_shot"]
    zs["splits"] = [str(ROOT / s) for s in zs["splits"]]  # relative to the repository root
    data.update(changes)
    return data


def _train_configs(plan):
    return [s.settings["config"] for s in plan.stages if s.kind is StageKind.TRAIN]


def test_axis_is_the_product_of_its_lists(tmp_path):
    data = example()
    data["zero_shot"].update(prompts=["a photo of a {}", "{}"], alignment_weights=[0, 1.5])
    data["zero_shot"]["class_embeddings"] = ["glove"]
    spec = parse_spec(data)
    assert len(spec.zero_shot) == 2 * 1 * 2 * 2
    configs = _train_configs(expand(spec, tmp_path))
    got = sorted((Path(c["zsl_split"]).name, c["class_embeddings"], c["prompt"], c["alignment_weight"])
                 for c in configs)
    want = sorted((s, "glove", p, w) for s in ("synthetic_unseen_a.txt", "synthetic_unseen_b.txt")
                  for p in ("a photo of a {}", "{}") for w in (0.0, 1.5))
    assert got == want
    names = [s.name for s in expand(spec, tmp_path).stages if s.kind is StageKind.TRAIN]
    assert len(set(names)) == 8 and all("-zsl_synthetic_unseen_" in n for n in names)
    assert sum("_prompt_a1.5-" in n for n in names) == 4  # 2 splits x 2 prompts at weight 1.5


def test_without_the_axis_nothing_changes(tmp_path):
    data = example()
    no_axis = copy.deepcopy(data)
    del no_axis["zero_shot"]
    no_axis["heads"] = ["gap"]
    with_axis = parse_spec(data)
    plain = expand(parse_spec(no_axis), tmp_path)
    assert parse_spec(no_axis).zero_shot == ()
    assert all(c["zsl_split"] is None for c in _train_configs(plain))
    # the axis adds its own fields to the hash only when used: pinned hashes (test_sweep_plan.py) stay
    from plbench.sweep.plan import hashed_fields

    assert not {"zsl_split", "class_embeddings", "alignment_weight"} & hashed_fields(parse_spec(no_axis))
    assert {"zsl_split", "class_embeddings", "prompt", "alignment_weight"} <= hashed_fields(with_axis)


def test_dry_run_lists_the_example_grid(tmp_path):
    result = runner.invoke(app, ["sweep", str(EXAMPLE), "--out", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 0, result.output
    trains = [line.split()[-1] for line in result.stdout.splitlines() if line.split()[1:2] == ["train"]]
    assert sorted(t.split("-ml-decoder-")[1].rsplit("-s0-", 1)[0] for t in trains) == [
        "zsl_synthetic_unseen_a_glove", "zsl_synthetic_unseen_a_random",
        "zsl_synthetic_unseen_b_glove", "zsl_synthetic_unseen_b_random"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, where", [
    ({"training": {"zsl_split": "nuswide"}}, "training.zsl_split"),
    ({"heads": ["gap"]}, "heads[0]"),
    ({"zero_shot": {"splits": ["nuswide"], "class_embeddings": ["glove"], "prompts": ["no braces"]}},
     "zero_shot.prompts[0]"),
    ({"zero_shot": {"splits": ["nuswide"], "class_embeddings": ["glove", "glove"]}}, "zero_shot.class_embeddings"),
    ({"zero_shot": {"splits": ["nuswide"]}}, "zero_shot.class_embeddings"),
    ({"zero_shot": {"splits": ["nuswide"], "class_embeddings": ["glove"], "prompt": ["{}"]}}, "zero_shot.prompt"),
    ({"zero_shot": {"splits": ["nuswide"], "class_embeddings": ["glove"], "alignment_weights": [-1.0]}},
     "zero_shot.alignment_weights[0]"),
])
def test_bad_zero_shot_tables(change, where):
    data = example()
    for key, value in change.items():
        data[key] = {**data.get(key, {}), **value} if key == "training" else value
    with pytest.raises(InputError) as e:
        parse_spec(data, "x.toml")
    assert e.value.field == where


@pytest.mark.slow  # four 1-epoch runs
def test_tiny_sweep_writes_the_papers_table(tmp_path):
    from plbench.artifacts.runs import RunFolder

    data = example(training={"image_size": 32, "batch_size": 16, "epochs": 1, "lr": 1e-3, "device": "cpu"})
    data["datasets"][0]["synthetic"] = {"train": 48, "val": 16, "num_classes": 12, "image_size": 32, "seed": 0}
    data["heads"] = [{"name": "ml-decoder", "options": {"embed_dim": 32, "num_heads": 2, "ff_dim": 64}}]
    out = tmp_path / "out"
    result = run_sweep(data, out=out)
    table = out / "reports" / "zsl_synthetic" / "table-zero-shot-synthetic.csv"
    rows = list(csv.DictReader(table.open()))
    ours = [r for r in rows if r["published"] == "0"]
    assert {r["task"] for r in ours} == {"zsl", "gzsl"}
    assert {r["metric"] for r in ours if r["task"] == "gzsl"} == {"map", "f1@3", "f1@5"}
    assert {r["metric"] for r in ours if r["task"] == "zsl"} == {"map", "f1@3"}  # 3 unseen classes: no top-5
    runs = [RunFolder(p) for p in result.runs]
    assert len(runs) == 4 and len({r["method"] for r in ours}) == 4  # a row pair per split x embeddings
    for run in runs:
        z = run.summary()["zero_shot"]
        split = "synthetic_unseen_a" if z["split"].endswith("_a.txt") else "synthetic_unseen_b"
        mine = [r for r in ours if f"{z['embeddings']} queries" in r["method"] and split in r["method"]]
        assert len(mine) == 5, (z["embeddings"], split, [r["method"] for r in ours])  # zsl: 2 metrics, gzsl: 3
        for r in mine:
            assert float(r["mean"]) == pytest.approx(z[r["task"]][r["metric"]], abs=1e-5) and r["n"] == "1"

"""``heads = [...]`` in a ``[[methods]]`` table: that method's heads instead of the grid's (LL-R + BoostLU
next to the other methods without running every method with BoostLU), and its report column."""

from __future__ import annotations

import json

import pytest

from sweep_support import assert_refused, changed
from plbench.report.published import load_published
from plbench.report.records import column_label, column_sort_key, load_records
from plbench.report.tables import build_tables
from plbench.sweep import StageKind, expand, parse_spec, run_sweep
from plbench.sweep.spec import HeadSpec

BASE = {
    "sweep": {"name": "mh"},
    "datasets": [{"name": "synthetic", "data_root": "{out}/data",
                  "synthetic": {"train": 24, "val": 12, "num_classes": 3, "image_size": 32, "seed": 0}}],
    "labels": [{"scheme": "spl"}],
    "methods": [{"loss": "an"}, {"loss": "ll_r", "loss_options": {"delta_rel": 0.002}}],
    "protocols": ["linear"],
    "training": {"recipe": "light", "epochs": 1, "image_size": 32, "batch_size": 8, "device": "cpu"},
}


def experiment(*extra_methods, **changes):
    data = changed(BASE, **changes)
    data["methods"] += [dict(m) for m in extra_methods]
    return data


BOOSTLU = {"loss": "ll_r", "loss_options": {"delta_rel": 0.002}, "heads": ["boostlu"]}


def runs(plan):
    return [(s.settings["config"]["loss"], s.settings["config"]["head"]) for s in plan.stages
            if s.kind is StageKind.TRAIN]


def test_a_method_with_its_own_heads_runs_with_those_only(tmp_path):
    spec = parse_spec(experiment(BOOSTLU))
    assert spec.methods[2].heads == (HeadSpec("boostlu"),) and spec.methods[0].heads is None
    assert spec.head_axis() == (HeadSpec("gap"), HeadSpec("boostlu"))
    assert runs(expand(spec, tmp_path)) == [("an", "gap"), ("ll_r", "gap"), ("ll_r", "boostlu")]
    # with two grid heads, the others run with both and LL-R + BoostLU still once
    spec = parse_spec(experiment(BOOSTLU, heads=["gap", "ml-decoder"]))
    assert runs(expand(spec, tmp_path)) == [("an", "gap"), ("ll_r", "gap"), ("an", "ml-decoder"),
                                            ("ll_r", "ml-decoder"), ("ll_r", "boostlu")]


def test_the_other_methods_keep_their_stages_and_the_features_get_tokens(tmp_path):
    before = expand(parse_spec(experiment()), tmp_path)
    after = expand(parse_spec(experiment(BOOSTLU)), tmp_path)
    trains_before = [s.hash for s in before.stages if s.kind is StageKind.TRAIN]
    trains_after = [s.hash for s in after.stages if s.kind is StageKind.TRAIN]
    assert trains_after[:2] != trains_before  # the gap runs read a feature store with tokens now ...
    (feats,) = [s for s in after.stages if s.kind is StageKind.FEATURES]
    assert feats.settings["tokens"] is True  # ... because the boostlu head reads the spatial features
    fine = {"protocols": ["fine-tuned"]}
    assert [s.hash for s in expand(parse_spec(experiment(**fine)), tmp_path).stages if s.kind is StageKind.TRAIN] \
        == [s.hash for s in expand(parse_spec(experiment(BOOSTLU, **fine)), tmp_path).stages
            if s.kind is StageKind.TRAIN][:2]  # fine-tuned: nothing shared changes


def test_method_heads_take_tables_and_method_tables(tmp_path):
    spec = parse_spec(experiment({"method": "ll_ct", "heads": [{"name": "boostlu", "options": {}}, "gap"]}))
    assert spec.methods[2].heads == (HeadSpec("boostlu"), HeadSpec("gap")) and spec.methods[2].method == "ll_ct"
    got = [(s.settings["config"]["method"], s.settings["config"]["head"]) for s in expand(spec, tmp_path).stages
           if s.kind is StageKind.TRAIN]
    assert got == [(None, "gap"), (None, "gap"), ("ll_ct", "gap"), ("ll_ct", "boostlu")]


@pytest.mark.parametrize("method, changes, where, words", [
    ({"loss": "an", "heads": []}, {}, "methods[2].heads", ["non-empty list"]),
    ({"loss": "an", "heads": ["nonesuch"]}, {}, "methods[2].heads[0]", ["nonesuch"]),
    ({"loss": "an", "heads": ["gap", "gap"]}, {}, "methods[2].heads", ["appears twice"]),
    ({"loss": "an", "heads": [{"name": "gap", "option": 1}]}, {}, "methods[2].heads[0].option", ["unknown key"]),
    ({"loss": "an", "heads": ["boostlu"]}, {"heads": ["ml-decoder"], "zero_shot": {"splits": ["nuswide"],
                                                                               "class_embeddings": ["random"]}},
     "methods[2].heads[0]", ["zero-shot runs need the ml-decoder head", "boostlu"]),
])
def test_bad_method_heads_are_refused_naming_the_key(method, changes, where, words):
    assert_refused(experiment(method, **changes), where, words)


def _summary(run, **fields):
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "dataset": "coco", "labels": "spl", "mode": None, "val_map": 70.0, "backbone": "resnet50", "seed": 0,
        "protocol": "fine-tuned", "simulation": {"scheme": "spl", "param": None, "seed": 0}, **fields}))


def test_the_report_matches_ll_r_with_boostlu_to_the_published_ll_r_boostlu_row(tmp_path):
    _summary(tmp_path / "boost", loss="ll_r", head="boostlu")
    _summary(tmp_path / "plain", loss="ll_r", head="gap")
    records = {r.head: r for r in load_records([tmp_path])}
    assert records["boostlu"].column == "ll_r_boostlu" and records["gap"].column == "ll_r"
    assert column_label("ll_r_boostlu") == "LL-R + BoostLU" and column_label("ll_ct_boostlu") == "LL-Ct + BoostLU"
    assert sorted(["ll_r_boostlu", "an", "ll_r"], key=column_sort_key) == ["an", "ll_r", "ll_r_boostlu"]
    tables = {t.key["head"]: t for t in build_tables(list(records.values()), "val_map", load_published())}
    rows = {s: {c: p.map for c, p in r.items()} for s, r in tables["boostlu"].published_rows("spl")}
    assert rows == {"Kim et al. 2023, ResNet-50, 448 px": {"ll_r_boostlu": 72.89}}
    rows = {s: {c: p.map for c, p in r.items()} for s, r in tables["gap"].published_rows("spl")}
    assert rows == {"Kim et al. 2022, ResNet-50, 448 px": {"ll_r": 71.0}}


@pytest.mark.slow
def test_a_tiny_sweep_trains_ll_r_with_boostlu_beside_the_gap_runs(tmp_path):
    pytest.importorskip("plbench.engine.features", reason="the linear protocol needs plbench.engine.features")
    out = tmp_path / "sweep"
    result = run_sweep(experiment(BOOSTLU), out=out)
    got = sorted((r.loss, r.head, r.column) for r in load_records(result.runs))
    assert got == [("an", "gap", "an"), ("ll_r", "boostlu", "ll_r_boostlu"), ("ll_r", "gap", "ll_r")]
    md = (out / "reports" / "mh" / "report.md").read_text()
    assert "LL-R + BoostLU" in md


def test_spml_coco_runs_the_ll_methods_with_boostlu_once_per_seed_and_the_rest_with_gap():
    from pathlib import Path

    from plbench.sweep import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "experiments" / "spml_coco.toml")
    trains = [s.settings["config"] for s in expand(spec, "out").stages if s.kind is StageKind.TRAIN]
    boost = [c for c in trains if c["head"] == "boostlu"]
    assert sorted((c["loss"] if c["method"] is None else c["method"], c["loss_options"], c["seed"]) for c in boost) \
        == sorted([("ll_r", {"delta_rel": 0.005}, s) for s in (0, 1, 2)] + [("ll_ct", {}, s) for s in (0, 1, 2)]
                  + [("ll_cp", {}, s) for s in (0, 1, 2)])  # LL-Ct / LL-Cp: their defaults are the authors' rates
    ll_r = [c for c in trains if c["loss"] == "ll_r" and c["method"] is None and c["head"] == "gap"]
    assert [c["loss_options"] for c in ll_r] == [{"delta_rel": 0.005}] * 3  # the same LL-R, another head
    assert len(trains) == 51 and sum(c["head"] == "gap" for c in trains) == 42  # 14 methods x 3 seeds with gap
    # each BoostLU run's report column has a published COCO number beside it
    from plbench.report.records import column_key

    published = {p.column for p in load_published() if p.dataset == "coco"}
    assert {column_key(c["method"] or c["loss"], None, "boostlu") for c in boost} == \
        {"ll_r_boostlu", "ll_ct_boostlu", "ll_cp_boostlu"} <= published

"""Experiment files: validation messages, and every shipped grid dry-runs without its data."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plbench.cli import app
from plbench.errors import InputError
from plbench.sweep import StageKind, expand, format_plan, load_spec, parse_spec, plan_sweep
from plbench.sweep.spec import LabelSource

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

BASE = {
    "sweep": {"name": "t"},
    "datasets": [{"name": "synthetic", "data_root": "{out}/data"}],
    "labels": [{"scheme": "fpc", "params": [5]}],
    "methods": [{"loss": "pasl", "mode": "negative"}],
    "training": {"epochs": 1},
}


def spec_with(**changes):
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def error_of(data) -> InputError:
    with pytest.raises(InputError) as info:
        parse_spec(data, "x.toml")
    return info.value


def test_unknown_top_level_key_is_named_with_the_allowed_ones():
    e = error_of(spec_with(seed=[0]))
    assert e.field == "seed" and "unknown key 'seed'" in e.problem
    assert "seeds" in e.fix and "datasets" in e.fix and "training" in e.fix
    assert str(e.path) == "x.toml"


def test_unknown_training_key_lists_trainconfig_fields():
    e = error_of(spec_with(training={"epochz": 3}))
    assert e.field == "training.epochz"
    for allowed in ("epochs", "image_size", "batch_size", "lr", "torchrun_nproc"):
        assert allowed in e.fix
    # fields the grid sets are not allowed in [training]
    for owned in ("seed", "backbone", "mode", "simulation"):
        assert f" {owned}," not in f" {e.fix},"


def test_top_level_key_inside_a_table_gets_a_toml_hint():
    e = error_of(spec_with(sweep={"name": "t", "seeds": [0]}))
    assert e.field == "sweep.seeds" and "before the first [table]" in e.problem


@pytest.mark.parametrize("bad, field, words", [
    ({"datasets": [{"name": "nope", "data_root": "x"}]}, "datasets[0].name", "unknown dataset"),
    ({"datasets": [{"name": "coco"}]}, "datasets[0].data_root", "required"),
    ({"labels": [{"scheme": "full", "params": [1]}]}, "labels[0].params", "no parameter"),
    ({"labels": [{"scheme": "fpc", "params": [0.5]}]}, "labels[0].params[0]", ""),
    ({"labels": [{"scheme": "xyz"}]}, "labels[0].scheme", "full, natural, fpc, rps, spl"),
    ({"methods": [{"loss": "pasl"}]}, "methods[0].mode", "needs a mode"),
    ({"methods": [{"loss": "an", "mode": "ignore"}]}, "methods[0].mode", "no partial-label mode"),
    ({"methods": [{"loss": "pasl", "mode": "negative", "loss_options": {"gama_neg": 1}}]},
     "methods[0].loss_options.gama_neg", "unknown key"),
    ({"methods": [{"loss": "epr"}]}, "methods (epr)", "expected_num_pos"),
    ({"methods": [{"loss": "pasl", "mode": "negative", "schemes": ["rps"]}]}, "methods.schemes", "none of"),
    ({"seeds": [0, 0]}, "seeds", "twice"),
    ({"heads": ["mlp"]}, "heads[0]", "gap, ml-decoder"),
    ({"protocols": ["frozen"]}, "protocols[0]", "fine-tuned, linear"),
    ({"training": {"epochs": "3"}}, "training.epochs", "expected int"),
    ({"training": {"torchrun_nproc": 0}}, "training.torchrun_nproc", ">= 1"),
    ({"prior": {"loss": "an"}}, "prior.loss", "no modes"),
    ({"slurm": {"partitio": "gpu"}}, "slurm.partitio", "unknown key"),
    # the schema's types, at any depth, named by their dotted path
    ({"datasets": ["x"]}, "datasets[0]", "expected a table, but got 'x'"),
    ({"datasets": [{"name": "synthetic", "data_root": "x", "cache": "yes"}]}, "datasets[0].cache", "true or false"),
    ({"datasets": [{"name": "synthetic", "data_root": "x", "synthetic": {"trian": 3}}]},
     "datasets[0].synthetic.trian", "use only: train, val, num_classes, image_size, seed"),
    ({"backbones": [{"name": "resnet10t", "pretraind": True}]}, "backbones[0].pretraind",
     "use only: name, pretrained, checkpoint"),
    ({"methods": [{"loss": "pasl", "mode": ["ignore", "nope"]}]}, "methods[0].mode[1]", "expected a mode in {"),
    ({"heads": [{"name": "mlp"}]}, "heads[0].name", "gap, ml-decoder"),
    ({"sweep": {"title": "x"}}, "sweep.name", "required, but missing"),
    ({"training": {"ema_decay": 1.0}}, "training.ema_decay", "expected a value in [0, 1), but got 1.0"),
    ({"training": {"max_train_images": 2.5}}, "training.max_train_images", "expected int or null, but got 2.5"),
    # accepted before (types of these tables were not checked): a string where submitit wants a list, a count
    ({"slurm": {"setup": "module load x"}}, "slurm.setup", "expected a non-empty list"),
    ({"features": {"batch_size": "3"}}, "features.batch_size", "expected an integer, but got '3'"),
])
def test_bad_values_are_input_errors_naming_the_field(bad, field, words):
    e = error_of(spec_with(**bad))
    assert e.field == field, e.message
    assert words in e.message


def test_tables_keep_only_the_keys_given():
    """Stage hashes are taken over these dicts: schema defaults must not leak into them."""
    spec = parse_spec(spec_with(
        datasets=[{"name": "synthetic", "data_root": "{out}/data", "synthetic": {"train": 40}}],
        features={"batch_size": 8}, slurm={"mem_gb": 4, "setup": ["module load cuda"]},
        prior={"loss": "bce"},
    ))
    assert spec.datasets[0].synthetic == {"train": 40}
    assert spec.features == {"batch_size": 8}
    assert spec.slurm == {"mem_gb": 4, "setup": ["module load cuda"]}
    assert spec.prior == {"loss": "bce", "loss_options": {}}
    assert spec.training == {"epochs": 1} and spec.torchrun_nproc == 1


def test_modes_list_expands_and_label_params_expand():
    spec = parse_spec(spec_with(
        labels=[{"scheme": "rps", "params": [0.5, 0.9]}, {"scheme": "full"}],
        methods=[{"loss": "pasl", "mode": ["ignore", "selective"]}, {"loss": "an", "schemes": ["rps"]}],
    ))
    assert [lab.tag for lab in spec.labels] == ["rps0.5", "rps0.9", "full"]
    assert [(m.loss, m.mode) for m in spec.methods] == [("pasl", "ignore"), ("pasl", "selective"), ("an", None)]
    assert spec.labels[2].source is LabelSource.FULL and not spec.labels[2].source.simulated


def test_load_spec_reports_toml_syntax_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep\nname = 1\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_spec(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")


SHIPPED = sorted(EXPERIMENTS.glob("*.toml"))


def test_the_shipped_grids_are_all_there():
    assert {p.name for p in SHIPPED} >= {"csl_coco.toml", "csl_openimages.toml", "lvis.toml", "known_ratio_coco.toml",
                                         "single_positive_coco.toml", "demo.toml"}
    for p in SHIPPED:
        assert p.read_text().startswith("#"), f"{p.name} needs a header comment citing its source"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_grid_dry_runs_without_its_data(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data roots such as data/coco do not exist here
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", "out", "--dry-run"])
    assert result.exit_code == 0, result.output
    spec = load_spec(path)
    assert f"sweep {spec.name}:" in result.output
    assert "report" in result.output and "train" in result.output
    if all(ds.synthetic is None for ds in spec.datasets):  # real datasets: the dry run names what is missing
        assert "missing inputs" in result.output
        for ds in spec.datasets:
            assert ds.data_root in result.output
    assert not (tmp_path / "out").exists(), "a dry run writes nothing"


def test_csl_coco_grid_shape():
    plan = expand(load_spec(EXPERIMENTS / "csl_coco.toml"), "out")
    kinds = [s.kind for s in plan.stages]
    # 2 label settings x 3 seeds: one simulation, 4 trainings (the prior model is the Ignore CE run), one prior
    assert kinds.count(StageKind.SIMULATE) == 6
    assert kinds.count(StageKind.TRAIN) == 24 and len(plan.grid) == 24
    assert kinds.count(StageKind.PRIOR) == 6 and kinds.count(StageKind.REPORT) == 1
    stages = plan.by_hash()
    for prior in (s for s in plan.stages if s.kind is StageKind.PRIOR):
        model = stages[prior.deps[0]]
        assert model.hash in plan.grid
        assert model.settings["config"]["loss"] == "bce" and model.settings["config"]["mode"] == "ignore"
    sel = [s for s in plan.stages if s.kind is StageKind.TRAIN and s.settings["config"]["mode"] == "selective"]
    gammas = {s.settings["config"]["tag"]: s.settings["config"]["loss_options"]["gamma_neg"] for s in sel}
    assert gammas == {"fpc1000": 3, "rps0.5": 1}
    cfg = sel[0].settings["config"]
    assert cfg["backbone"] == "tresnet_m.miil_in21k" and cfg["pretrained"] is True
    assert cfg["image_size"] == 448 and cfg["recipe"] == "csl" and cfg["train_split"] == "train2014"


def test_known_ratio_is_rps_with_one_minus_the_proportion():
    spec = load_spec(EXPERIMENTS / "known_ratio_coco.toml")
    proportions = sorted(round(1 - lab.param, 10) for lab in spec.labels)
    assert proportions == [round(0.1 * k, 10) for k in range(1, 10)]
    assert {lab.source for lab in spec.labels} == {LabelSource.RPS}


def test_dry_run_lists_actions(tmp_path):
    plan = plan_sweep(parse_spec(spec_with()), tmp_path)
    text = format_plan(plan)
    lines = text.splitlines()
    assert lines[0].startswith("sweep t: 3 stages") and "3 to run, 0 reused" in lines[0]
    assert lines[1].split() == ["run", "simulate", "synthetic-fpc5-s0"]
    assert lines[3].split() == ["run", "report", "t"]
    assert lines[4] == "missing inputs (needed before these stages can run):"
    assert lines[5].split() == [f"{tmp_path}/data", "(needed", "by:", "simulate,", "train)"]

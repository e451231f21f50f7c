"""Protocol ``linear-init`` in experiment files (Cole et al. 2021's LinearInit.): each grid run is a linear
run on frozen features, then an end-to-end run whose head starts from that run's best checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from plbench.artifacts.runs import RunFolder
from plbench.config import TrainConfig
from sweep_support import assert_refused, changed, stages_of
from plbench.report.published import load_published
from plbench.report.records import load_records
from plbench.report.tables import build_tables
from plbench.sweep import StageKind, expand, format_plan, parse_spec, plan_sweep, run_sweep
from plbench.sweep.stages import Stage

BASE = {
    "sweep": {"name": "li"},
    "datasets": [{"name": "synthetic", "data_root": "{out}/data",
                  "synthetic": {"train": 24, "val": 12, "num_classes": 3, "image_size": 32, "seed": 0}}],
    "labels": [{"scheme": "spl"}],
    "methods": [{"loss": "an"}],
    "protocols": ["linear-init"],
    "training": {"recipe": "light", "epochs": 1, "image_size": 32, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
}


def experiment(**changes):
    return changed(BASE, **changes)


def trains(plan):
    return stages_of(plan, StageKind.TRAIN)


def test_a_linear_run_then_a_fine_tuned_run_from_its_head(tmp_path):
    plan = expand(parse_spec(experiment()), tmp_path)
    assert [s.kind.value for s in plan.stages] == ["data", "simulate", "features", "train", "train", "report"]
    data, sim, feats, linear, tuned, report = plan.stages
    lin, ft = linear.settings["config"], tuned.settings["config"]
    assert lin["features"] == feats.output and lin["init_head"] is None and lin["epochs"] == 25  # the default
    assert ft["features"] is None and ft["init_head"] == linear.output == f"{tmp_path}/runs/{linear.name}"
    assert ft["epochs"] == 1 and ft["simulation"] == lin["simulation"] == sim.output
    assert set(linear.deps) == {data.hash, sim.hash, feats.hash}
    assert set(tuned.deps) == {data.hash, sim.hash, linear.hash}  # the worker (or Slurm afterok) waits for it
    assert plan.grid == [tuned.hash] and report.deps == (tuned.hash,)  # the linear run is not reported
    assert "-gap-linear-s0-" in linear.name and "-gap-linear-init-s0-" in tuned.name
    assert TrainConfig.from_dict(ft).protocol == "linear-init" and TrainConfig.from_dict(lin).protocol == "linear"


def test_paths_follow_a_relative_output_root_and_survive_the_worker_round_trip():
    plan = expand(parse_spec(experiment()), "out")
    linear, tuned = trains(plan)
    assert tuned.settings["config"]["init_head"] == linear.output == f"out/runs/{linear.name}"
    again = Stage.from_dict(json.loads(json.dumps(tuned.to_dict())))  # what a Slurm job or worker receives
    assert again == tuned


def test_linear_settings_change_both_runs_and_fine_tuned_settings_only_the_second(tmp_path):
    def hashes(**changes):
        linear, tuned = trains(expand(parse_spec(experiment(**changes)), tmp_path))
        return linear.hash, tuned.hash

    base = hashes()
    assert hashes(linear_init={"epochs": 25}) == base  # the default, written out
    for table in ({"epochs": 3}, {"lr": 1e-4}, {"batch_size": 4}):
        lin, ft = hashes(linear_init=table)
        assert lin != base[0] and ft != base[1], table
    lin, ft = hashes(training={**BASE["training"], "weight_decay": 0.0})  # [training] reaches both phases
    assert lin != base[0] and ft != base[1]
    lin_only = expand(parse_spec(experiment(linear_init={"lr": 1e-4})), tmp_path)
    assert trains(lin_only)[0].settings["config"]["lr"] == 1e-4 and trains(lin_only)[1].settings["config"]["lr"] == 1e-3


def test_next_to_the_other_protocols_and_existing_hashes_kept(tmp_path):
    alone = {s.hash for s in trains(expand(parse_spec(experiment(protocols=["fine-tuned", "linear"])), tmp_path))}
    plan = expand(parse_spec(experiment(protocols=["fine-tuned", "linear", "linear-init"])), tmp_path)
    assert alone <= {s.hash for s in trains(plan)}  # adding linear-init re-runs nothing that exists
    assert len(plan.grid) == 3 and len(trains(plan)) == 4  # the linear-init pair's linear run has 25 epochs
    assert sum(s.kind is StageKind.FEATURES for s in plan.stages) == 1  # one feature store for both
    listing = format_plan(plan_sweep(plan.spec, tmp_path))
    assert listing.count("-linear-init-") == 1 and listing.count("features") == 1


def test_selective_runs_get_a_prior_model_of_their_own_protocol(tmp_path):
    plan = expand(parse_spec(experiment(labels=[{"scheme": "fpc", "params": [2]}],
                                        methods=[{"loss": "pasl", "mode": "selective"}])), tmp_path)
    by, outputs = plan.by_hash(), {s.output: s for s in plan.stages}

    def prior_model(stage):
        (prior,) = [by[d] for d in stage.deps if by[d].kind is StageKind.PRIOR]
        assert stage.settings["config"]["prior"] == prior.output
        return by[prior.deps[0]]

    tuned = by[plan.grid[0]]
    model = prior_model(tuned)  # a linear-init Ignore run, itself started from a linear Ignore run
    assert model.settings["config"]["mode"] == "ignore" and "-linear-init-" in model.name
    assert outputs[model.settings["config"]["init_head"]].settings["config"]["features"] is not None
    linear = outputs[tuned.settings["config"]["init_head"]]  # the linear Selective run ...
    assert linear.settings["config"]["mode"] == "selective" and linear.settings["config"]["features"] is not None
    linear_model = prior_model(linear)  # ... with a linear Ignore prior model: the one the Ignore pair starts from
    assert linear_model.output == model.settings["config"]["init_head"]
    assert len(trains(plan)) == 4 and sum(s.kind is StageKind.PRIOR for s in plan.stages) == 2


@pytest.mark.parametrize("changes, where, words", [
    ({"protocols": ["fine-tuned"], "linear_init": {"epochs": 3}}, "linear_init", ["no linear-init"]),
    ({"linear_init": {"epoch": 3}}, "linear_init.epoch", ["unknown key 'epoch'"]),
    ({"linear_init": {"recipe": "spml"}}, "linear_init.recipe", ["unknown key 'recipe'"]),
    ({"linear_init": {"init_head": "x"}}, "linear_init.init_head", ["unknown key"]),
    ({"linear_init": {"epochs": 0}}, "linear_init.epochs", []),
    ({"training": {"init_head": "runs/x"}}, "training.init_head", ["unknown key"]),
    ({"protocols": ["linear-start"]}, "protocols[0]", ["linear-init"]),
])
def test_bad_linear_init_settings_are_refused_naming_the_key(changes, where, words):
    assert_refused(experiment(**changes), where, words)


def _summary(run, **fields):
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "dataset": "coco", "labels": "spl", "loss": "an", "mode": None, "val_map": 60.0, "backbone": "resnet50",
        "head": "gap", "seed": 0, "simulation": {"scheme": "spl", "param": None, "seed": 0}, **fields}))


def test_the_report_matches_linear_init_runs_to_the_published_linear_init_rows(tmp_path):
    _summary(tmp_path / "li", protocol=TrainConfig(init_head="runs/linear").protocol)
    _summary(tmp_path / "ft", protocol=TrainConfig().protocol)
    tables = {t.key["protocol"]: t for t in build_tables(load_records([tmp_path]), "val_map", load_published())}
    assert set(tables) == {"fine-tuned", "linear-init"}
    rows = {s: {c: p.map for c, p in r.items()} for s, r in tables["linear-init"].published_rows("spl")}
    assert rows == {"Cole et al. 2021, ResNet-50, 448 px": {"an": 68.7}}
    rows = {s: {c: p.map for c, p in r.items()} for s, r in tables["fine-tuned"].published_rows("spl")}
    assert rows == {"Cole et al. 2021, ResNet-50, 448 px": {"an": 64.1}}


def test_a_summary_without_protocol_counts_init_head_as_linear_init(tmp_path):
    _summary(tmp_path / "old")
    (tmp_path / "old" / "config.json").write_text(json.dumps({"init_head": "runs/linear", "features": None}))
    (record,) = load_records([tmp_path / "old"])
    assert record.protocol == "linear-init"


@pytest.mark.slow
def test_a_tiny_linear_init_sweep_starts_the_fine_tuned_head_from_the_linear_best(tmp_path, monkeypatch):
    pytest.importorskip("plbench.engine.features", reason="linear-init needs plbench.engine.features")
    import plbench.engine.run_model as run_model

    real, loaded = run_model.load_head_from_run, []

    def spy(model, run_dir, class_names, head):  # the head as the fine-tuned run starts (step 0)
        epoch = real(model, run_dir, class_names, head)
        loaded.append((str(run_dir), {k: v.detach().clone() for k, v in model.head.state_dict().items()}))
        return epoch

    monkeypatch.setattr(run_model, "load_head_from_run", spy)
    out = tmp_path / "sweep"
    result = run_sweep(experiment(linear_init={"epochs": 2}), out=out)
    linear_stage, tuned_stage = trains(result.plan)
    assert [RunFolder(p).path for p in result.runs] == [RunFolder(tuned_stage.output).path]
    tuned, linear = RunFolder(tuned_stage.output), RunFolder(linear_stage.output)
    assert tuned.config()["init_head"] == linear_stage.output and linear.config()["epochs"] == 2
    assert tuned.summary()["protocol"] == "linear-init" and linear.summary()["protocol"] == "linear"
    best = {k[len("head."):]: v for k, v in linear.load_checkpoint("best")["model"].items() if k.startswith("head.")}
    assert [d for d, _ in loaded] == [linear_stage.output]
    start = loaded[0][1]
    assert set(start) == set(best) and all(torch.equal(start[k], best[k]) for k in best)
    last = tuned.load_checkpoint("last")["model"]
    assert not torch.equal(last["head.fc.weight"], best["fc.weight"])  # then it trained
    md = (out / "reports" / "li" / "report.md").read_text()
    assert "linear-init" in md
    (record,) = load_records(result.runs)
    assert record.protocol == "linear-init"
    assert {st.action for st in plan_sweep(result.plan.spec, out).status.values()} == {"reuse"}


@pytest.mark.slow
def test_linear_init_through_submitit_jobs_with_a_relative_output_root(tmp_path, monkeypatch):
    """As --launcher slurm runs it: each stage a job in its own process, the paths relative to the folder the
    sweep was planned in, the fine-tuned job submitted after the linear job (local executor: it waits)."""
    pytest.importorskip("submitit", reason="the slurm extra (pip install -e '.[slurm]') is not installed")
    pytest.importorskip("plbench.engine.features", reason="linear-init needs plbench.engine.features")
    monkeypatch.chdir(tmp_path)
    said: list[str] = []
    result = run_sweep(experiment(linear_init={"epochs": 1}), out="out", launcher="submitit-local", say=said.append)
    assert [i.split()[0] for i in result.ran] == ["data", "simulate", "features", "train", "train", "report"]
    linear, tuned = trains(result.plan)
    assert [s.split(" as job")[0] for s in said if s.startswith("submitted train")] == \
        [f"submitted {linear.id}", f"submitted {tuned.id}"]
    config = RunFolder(tmp_path / tuned.output).config()
    assert config["init_head"] == f"out/runs/{linear.name}" and RunFolder(tmp_path / tuned.output).is_finished

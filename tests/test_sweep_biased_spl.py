"""``[[labels]] scheme = "spl"`` with ``bias = ...`` (Arroyo et al. 2023's biased single positives, as
``plbench simulate --scheme spl --bias``): its own simulation stage, names and tag; uniform is plain spl."""

from __future__ import annotations


import numpy as np
import pytest

from plbench.artifacts.simulations import load_simulation
from plbench.datasets import load_dataset
from plbench.datasets.coco import coco_instances
from plbench.errors import InputError
from sweep_support import assert_refused, changed, stages_of
from plbench.simulate_biased import simulate_biased_spl
from plbench.sweep import StageKind, expand, parse_spec
from plbench.sweep.execute import execute_stage
from plbench.sweep.spec import LabelSetting, LabelSource

BASE = {
    "sweep": {"name": "b"},
    "datasets": [{"name": "synthetic", "data_root": "{out}/data",
                  "synthetic": {"train": 40, "val": 8, "num_classes": 5, "image_size": 32, "seed": 3}}],
    "labels": [{"scheme": "spl"}],
    "methods": [{"loss": "an"}],
    "training": {"recipe": "light", "epochs": 1, "image_size": 32},
}


def experiment(*labels, **changes):
    if labels:
        changes = {"labels": [dict(t) for t in labels], **changes}
    return changed(BASE, **changes)


def sims(plan):
    return stages_of(plan, StageKind.SIMULATE)


def test_uniform_is_plain_spl_with_the_same_stages(tmp_path):
    plain = expand(parse_spec(experiment()), tmp_path)
    uniform = expand(parse_spec(experiment({"scheme": "spl", "bias": "uniform"})), tmp_path)
    assert [s.hash for s in uniform.stages] == [s.hash for s in plain.stages]
    assert parse_spec(experiment({"scheme": "spl", "bias": "uniform"})).labels == (LabelSetting(LabelSource.SPL),)
    assert "bias" not in sims(plain)[0].settings


def test_each_bias_has_its_own_simulation_names_and_tag(tmp_path):
    biases = ["size", "largest", "location", "frequency"]
    spec = parse_spec(experiment({"scheme": "spl"}, *({"scheme": "spl", "bias": b} for b in biases)))
    assert [lab.tag for lab in spec.labels] == ["spl", "spl-size", "spl-largest", "spl-location", "spl-frequency"]
    plan = expand(spec, tmp_path)
    stages = sims(plan)
    assert [s.name for s in stages] == ["synthetic-spl-s0", *(f"synthetic-spl-{b}-s0" for b in biases)]
    assert [s.settings.get("bias") for s in stages] == [None, *biases]
    assert len({s.hash for s in stages}) == 5
    trains = [s for s in plan.stages if s.kind is StageKind.TRAIN]
    assert [s.name.split("-none-")[0] for s in trains] == ["synthetic-spl", *(f"synthetic-spl-{b}" for b in biases)]
    assert [s.settings["config"]["tag"] for s in trains] == [lab.tag for lab in spec.labels]
    assert [s.settings["config"]["simulation"] for s in trains] == [s.output for s in stages]


@pytest.mark.parametrize("labels, changes, where, words", [
    ({"scheme": "fpc", "params": [5], "bias": "size"}, {}, "labels[0].bias",
     ["only with scheme \"spl\"", "'fpc'"]),
    ({"scheme": "full", "bias": "uniform"}, {}, "labels[0].bias", ["only with scheme \"spl\"", "'full'"]),
    ({"scheme": "spl", "bias": "tallest"}, {}, "labels[0].bias", ["uniform", "size", "largest"]),
    ({"scheme": "spl", "bias": "size"}, {"datasets": [{"name": "lvis", "data_root": "data/lvis"}]},
     "labels[0].bias", ["reads object areas and boxes", "lvis", "coco, synthetic"]),
])
def test_bad_biases_are_refused_at_spec_check_time(labels, changes, where, words):
    assert_refused(experiment(labels, **changes), where, words)


def test_frequency_needs_no_instances_so_any_dataset_takes_it():
    spec = parse_spec(experiment({"scheme": "spl", "bias": "frequency"},
                                 datasets=[{"name": "lvis", "data_root": "data/lvis"}]))
    assert spec.labels[0].tag == "spl-frequency"


def test_two_spellings_of_one_setting_are_refused():
    with pytest.raises(InputError) as info:
        parse_spec(experiment({"scheme": "spl"}, {"scheme": "spl", "bias": "uniform"}))
    assert "appears twice" in info.value.message


@pytest.mark.parametrize("bias", ["size", "uniform"])
def test_the_simulation_stage_writes_what_plbench_simulate_writes(tmp_path, bias):
    plan = expand(parse_spec(experiment({"scheme": "spl", "bias": bias})), tmp_path)
    data = next(s for s in plan.stages if s.kind is StageKind.DATA)
    (sim,) = sims(plan)
    execute_stage(data)
    execute_stage(sim)
    labels, meta = load_simulation(sim.output)
    split = load_dataset("synthetic", tmp_path / "data", "train")
    instances = coco_instances(tmp_path / "data", "train", split.labels) if bias == "size" else None
    expected = simulate_biased_spl(split.labels, bias, 0, instances)
    assert np.array_equal(labels.to_dense(), expected.to_dense())
    assert meta["scheme"] == ("spl-size" if bias == "size" else "spl")
    assert meta["extra"].get("bias") == (bias if bias == "size" else None)
    if bias == "size":  # another draw than the uniform one (on these 40 images)
        assert not np.array_equal(labels.to_dense(), simulate_biased_spl(split.labels, "uniform", 0).to_dense())


@pytest.mark.slow
def test_a_tiny_sweep_trains_and_reports_the_biased_labels_apart(tmp_path):
    pytest.importorskip("plbench.engine.features", reason="the linear protocol needs plbench.engine.features")
    from plbench.report.records import load_records
    from plbench.sweep import run_sweep

    result = run_sweep(experiment({"scheme": "spl"}, {"scheme": "spl", "bias": "largest"}, protocols=["linear"],
                                  training={**BASE["training"], "batch_size": 8, "device": "cpu"}),
                       out=tmp_path / "sweep")
    records = load_records(result.runs)
    assert sorted((r.labels, r.scheme) for r in records) == [("spl", "spl"), ("spl-largest", "spl-largest")]
    assert "spl-largest" in (tmp_path / "sweep" / "reports" / "b" / "report.md").read_text()

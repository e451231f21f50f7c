"""Sweep expansion and content hashes: what a change re-runs, what a new seed adds (no training here)."""

from __future__ import annotations

import copy
import hashlib
import json

from plbench.sweep import StageKind, expand, parse_spec, plan_sweep
from plbench.sweep.stages import stage_hash

BASE = {
    "sweep": {"name": "t"},
    "datasets": [{"name": "synthetic", "data_root": "/nonexistent/data"}],
    "labels": [{"scheme": "fpc", "params": [5]}, {"scheme": "full"}],
    "methods": [{"loss": "pasl", "mode": "negative"}, {"loss": "pasl", "mode": "selective", "schemes": ["fpc"]}],
    "seeds": [0],
    "training": {"epochs": 1, "image_size": 32, "recipe": "light"},
}


def spec(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        data[key] = value
    return parse_spec(data)


def by_id(plan):
    return {s.id: s.hash for s in plan.stages}


def test_pipeline_and_dependencies(tmp_path):
    plan = expand(spec(), tmp_path)
    stages = plan.by_hash()
    kinds = [s.kind.value for s in plan.stages]
    # fpc: simulate, negative, ignore (prior model), prior, selective; full: negative; report
    assert kinds == ["simulate", "train", "train", "estimate-prior", "train", "train", "report"]
    order = {s.hash: i for i, s in enumerate(plan.stages)}
    assert all(order[d] < order[s.hash] for s in plan.stages for d in s.deps), "dependencies come first"
    sim, neg, ignore, prior, sel, full, report = plan.stages
    assert neg.deps == (sim.hash,) and ignore.deps == (sim.hash,) and prior.deps == (ignore.hash,)
    assert set(sel.deps) == {sim.hash, prior.hash} and full.deps == ()
    assert set(report.deps) == {neg.hash, sel.hash, full.hash}, "the prior-only Ignore run is not a grid run"
    assert sel.settings["config"]["prior"] == prior.output and prior.output.endswith(".csv")
    assert sel.settings["config"]["simulation"] == sim.output == f"{tmp_path}/simulations/synthetic-fpc5-s0.parquet"
    assert ignore.settings["config"]["mode"] == "ignore" and ignore.settings["config"]["prior"] is None
    assert stages[prior.deps[0]].output == f"{tmp_path}/runs/{ignore.name}"
    assert full.settings["config"]["tag"] == "full" and full.settings["config"]["simulation"] is None
    assert [s.gpus for s in plan.stages] == [0, 1, 1, 1, 1, 1, 0]


def test_ignore_in_the_grid_is_the_prior_model(tmp_path):
    plan = expand(spec(methods=[{"loss": "pasl", "mode": ["ignore", "selective"]}], labels=[{"scheme": "fpc",
                                                                                           "params": [5]}]), tmp_path)
    trains = [s for s in plan.stages if s.kind is StageKind.TRAIN]
    assert len(trains) == 2  # trained once, used twice
    prior = next(s for s in plan.stages if s.kind is StageKind.PRIOR)
    assert prior.deps[0] in plan.grid


def test_a_changed_setting_changes_only_what_depends_on_it(tmp_path):
    before = by_id(expand(spec(), tmp_path))
    methods = copy.deepcopy(BASE["methods"])
    methods[0]["loss_options"] = {"gamma_neg": 2}  # the Negative runs only
    after = by_id(expand(spec(methods=methods), tmp_path))
    changed = [k for k in before if before[k] != after.get(k)]
    assert [k.split()[0] for k in changed] == ["train", "train", "report"]
    assert all("-negative-" in k for k in changed[:2])  # fpc and full Negative runs (ids carry the hash)
    same = [k for k in before if before[k] == after.get(k)]
    assert [k.split()[0] for k in same] == ["simulate", "train", "estimate-prior", "train"]  # ignore, selective
    assert "-ignore-" in same[1] and "-selective-" in same[3]


def test_epochs_change_every_training_but_no_simulation(tmp_path):
    a = expand(spec(), tmp_path)
    b = expand(spec(training={"epochs": 2, "image_size": 32, "recipe": "light"}), tmp_path)
    ha, hb = {s.hash for s in a.stages}, {s.hash for s in b.stages}
    for s in a.stages:
        assert (s.hash in hb) == (s.kind is StageKind.SIMULATE), s.id


def test_a_new_seed_adds_only_its_stages(tmp_path):
    one = expand(spec(), tmp_path)
    two = expand(spec(seeds=[0, 1]), tmp_path)
    old = {s.hash for s in one.stages if s.kind is not StageKind.REPORT}
    new = [s for s in two.stages if s.hash not in old]
    assert old <= {s.hash for s in two.stages}
    assert [s.kind for s in new].count(StageKind.REPORT) == 1
    for s in new:
        if s.kind is not StageKind.REPORT:
            assert s.name.endswith("-s1") or "-s1-" in s.name, s.id
    assert len(new) == len(one.stages)  # the same pipeline once more, plus the new report


def test_moving_the_sweep_root_keeps_hashes(tmp_path):
    a = expand(spec(), tmp_path / "a")
    b = expand(spec(), tmp_path / "b")
    assert [s.hash for s in a.stages if s.kind is not StageKind.REPORT] == \
           [s.hash for s in b.stages if s.kind is not StageKind.REPORT]
    assert a.stages[0].output != b.stages[0].output


def test_checkpoint_content_is_part_of_the_hash(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    kw = {"backbones": [{"name": "resnet10t", "checkpoint": str(weights)}]}
    first = {s.hash for s in expand(spec(**kw), tmp_path).stages if s.kind is StageKind.TRAIN}
    weights.write_bytes(b"two")
    second = {s.hash for s in expand(spec(**kw), tmp_path).stages if s.kind is StageKind.TRAIN}
    assert not first & second


def test_stage_hash_is_order_free_and_setting_sensitive():
    a = stage_hash(StageKind.TRAIN, {"x": 1, "y": [1, 2]}, ["b", "a"])
    assert a == stage_hash(StageKind.TRAIN, {"y": [1, 2], "x": 1}, ["a", "b"])
    assert a != stage_hash(StageKind.TRAIN, {"x": 2, "y": [1, 2]}, ["a", "b"])
    assert a != stage_hash(StageKind.SIMULATE, {"x": 1, "y": [1, 2]}, ["a", "b"])
    # the SHA-256 of the canonical JSON spelled out by hand: sorted keys, no spaces, deps sorted, the hash
    # version in it (a change of any of these would silently orphan every finished stage of existing sweeps)
    text = '{"deps":["a","b"],"files":{},"kind":"%s","settings":{"x":1,"y":[1,2]},"version":1}' % StageKind.TRAIN.value
    assert a == hashlib.sha256(text.encode()).hexdigest()


def test_finished_runs_make_their_inputs_unneeded(tmp_path):
    """A deleted simulation whose runs are finished is not regenerated; the report still runs."""
    plan = plan_sweep(spec(), tmp_path)
    assert {st.action for st in plan.status.values()} == {"run"}
    for s in plan.stages:
        if s.kind is StageKind.TRAIN and s.hash in plan.grid:
            (tmp_path / "runs" / s.name).mkdir(parents=True)
            (tmp_path / "runs" / s.name / "summary.json").write_text(json.dumps({}))
    plan = plan_sweep(spec(), tmp_path)
    actions = {s.id.split()[0] + ("-grid" if s.hash in plan.grid else ""): plan.status[s.hash].action
               for s in plan.stages}
    assert actions == {"simulate": "skip", "train-grid": "reuse", "train": "skip", "estimate-prior": "skip",
                       "report": "run"}


def test_values_plbench_fills_in_are_not_hashed(tmp_path, monkeypatch):
    """A newer plbench (other recipe values, new TrainConfig defaults) does not re-run a finished grid."""
    from plbench.sweep import plan as plan_module

    before = {s.id: s.hash for s in expand(spec(), tmp_path).stages}
    real = plan_module.recipe_values
    monkeypatch.setattr(plan_module, "recipe_values", lambda r, d: {**real(r, d), "warmup_fraction": 0.3})
    after = expand(spec(), tmp_path)
    assert {s.id: s.hash for s in after.stages} == before
    assert all(s.settings["config"]["warmup_fraction"] == 0.3 for s in after.stages if s.kind is StageKind.TRAIN)
    # ... but a value the experiment sets is hashed
    changed = expand(spec(training={**BASE["training"], "warmup_fraction": 0.3}), tmp_path)
    assert all(s.hash not in before.values() for s in changed.stages if s.kind is StageKind.TRAIN)

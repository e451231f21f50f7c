"""A tiny sweep end to end: interrupted and resumed, re-run (all reused), a seed added, a setting changed."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from plbench.artifacts.runs import RunFolder
from plbench.priors import read_prior_table
from plbench.sweep import SweepError, StageKind, plan_sweep, run_sweep
from plbench.sweep import execute as sweep_execute

TINY = {
    "sweep": {"name": "tiny", "title": "tiny sweep"},
    "datasets": [{"name": "synthetic", "data_root": "{out}/data",
                  "synthetic": {"train": 40, "val": 16, "num_classes": 4, "image_size": 32, "seed": 0}}],
    "labels": [{"scheme": "fpc", "params": [6]}],
    "methods": [{"loss": "pasl", "mode": "negative"}, {"loss": "pasl", "mode": "selective"}],
    "backbones": ["resnet10t"],
    "seeds": [0],
    "training": {"recipe": "light", "epochs": 1, "image_size": 32, "batch_size": 16, "device": "cpu"},
}


def tiny(**changes):
    data = copy.deepcopy(TINY)
    data.update(changes)
    return data


def kinds(ids):
    return [i.split()[0] for i in ids]


@pytest.mark.slow
def test_sweep_resume_reuse_new_seed_and_changed_setting(tmp_path, monkeypatch):
    """On the linear protocol (features extracted once, heads trained on them: fast); the stage logic is the
    same for fine-tuned runs, which the other tests train."""
    pytest.importorskip("plbench.engine.features", reason="the linear protocol needs plbench.engine.features")
    out = tmp_path / "sweep"

    def linear(**changes):
        return tiny(protocols=["linear"], **changes)

    # 1. interrupted (Ctrl-C) while estimating the prior: what finished before stays finished
    real_prior = sweep_execute._EXECUTORS[StageKind.PRIOR]

    def interrupted(stage, progress):
        raise KeyboardInterrupt

    monkeypatch.setitem(sweep_execute._EXECUTORS, StageKind.PRIOR, interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(linear(), out=out)
    monkeypatch.setitem(sweep_execute._EXECUTORS, StageKind.PRIOR, real_prior)
    plan = plan_sweep(run_sweep(linear(), out=out, dry_run=True).plan.spec, out)
    assert [s.kind.value for s in plan.stages] == ["data", "simulate", "features", "train", "train",
                                                   "estimate-prior", "train", "report"]
    assert [plan.status[s.hash].action for s in plan.stages] == \
        ["reuse", "reuse", "reuse", "reuse", "reuse", "run", "run", "run"]  # negative, ignore done; prior not

    # 2. resumed: only the missing stages run
    said: list[str] = []
    result = run_sweep(linear(), out=out, say=said.append)
    assert kinds(result.ran) == ["estimate-prior", "train", "report"]
    assert any("done   estimate-prior" in s for s in said)
    assert result.report is not None and result.report["md"].is_file()
    runs = {RunFolder(p).config()["mode"]: RunFolder(p) for p in result.runs}
    assert set(runs) == {"negative", "selective"} and all(r.is_finished for r in runs.values())
    features = next(s for s in plan.stages if s.kind is StageKind.FEATURES)
    assert all(r.config()["features"] == features.output and r.summary()["protocol"] == "linear"
               for r in runs.values())
    assert sorted(p.name for p in Path(features.output).iterdir()) == ["train", "val"]
    sel = runs["selective"].config()
    prior = read_prior_table(sel["prior"])
    assert len(prior.class_names) == 4 and np.all((prior.values > 0) & (prior.values < 1))
    assert sel["simulation"].endswith("simulations/synthetic-fpc6-s0.parquet")
    ignore_run = next(p for p in (out / "runs").iterdir() if "-ignore-" in p.name)
    assert RunFolder(ignore_run).is_finished  # the prior model, kept (not part of the report's grid)
    assert "tiny sweep" in result.report["md"].read_text()

    # 3. the same command again: nothing to do
    again = run_sweep(linear(), out=out)
    assert again.ran == []
    assert {st.action for st in again.plan.status.values()} == {"reuse"}

    # 4. a changed setting of the Negative method: only the Negative run and the report
    methods = copy.deepcopy(TINY["methods"])
    methods[0]["loss_options"] = {"gamma_neg": 2}
    stamps = {p.name: (p / "summary.json").stat().st_mtime_ns for p in (out / "runs").iterdir()}
    changed = run_sweep(linear(methods=methods), out=out)
    assert kinds(changed.ran) == ["train", "report"] and "-negative-" in changed.ran[0]

    # 5. a new seed: only its stages (and the report) run; no finished run is touched
    grown = run_sweep(linear(methods=methods, seeds=[0, 1]), out=out)
    assert kinds(grown.ran) == ["simulate", "train", "train", "estimate-prior", "train", "report"]
    assert all("-s1" in i for i in grown.ran if not i.startswith("report"))
    for name, stamp in stamps.items():
        assert (out / "runs" / name / "summary.json").stat().st_mtime_ns == stamp, f"{name} was retrained"
    assert len(grown.runs) == 4 and len(list((out / "runs").iterdir())) == 7  # 2 seeds x 3, + the old Negative


@pytest.mark.slow
def test_a_failing_stage_blocks_only_its_dependents(tmp_path, monkeypatch):
    out = tmp_path / "sweep"

    def broken(stage, progress):
        raise RuntimeError("simulated crash")

    monkeypatch.setitem(sweep_execute._EXECUTORS, StageKind.SIMULATE, broken)
    data = tiny(labels=[{"scheme": "fpc", "params": [6]}, {"scheme": "full"}],
                methods=[{"loss": "pasl", "mode": "negative"}])
    with pytest.raises(SweepError) as info:
        run_sweep(data, out=out)
    failures = {f.stage.kind.value: f for f in info.value.failures}
    assert set(failures) == {"simulate", "train", "report"}
    assert "simulated crash" in failures["simulate"].reason and failures["simulate"].log.is_file()
    assert failures["train"].reason.startswith("not started: simulate")
    assert "run the same command again" in str(info.value)
    finished = [p.name for p in (out / "runs").iterdir() if (p / "summary.json").is_file()]
    assert len(finished) == 1 and finished[0].startswith("synthetic-full-negative")  # the independent run ran


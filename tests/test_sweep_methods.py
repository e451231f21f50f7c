"""Methods in experiment files: ``method = ...`` in a ``[[methods]]`` table (built-in names, installed entry
points, ``package.module:Name``), checked before anything runs and trained by the sweep like losses."""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest

from plbench.artifacts.runs import RunFolder
from plbench.errors import InputError
from plbench.sweep import plan_sweep, run_sweep
from plbench.sweep.spec import parse_spec
from plugin_support import EXAMPLE

BASE = {
    "sweep": {"name": "m"},
    "datasets": [{"name": "synthetic", "data_root": "{out}/data",
                  "synthetic": {"train": 32, "val": 16, "num_classes": 4, "image_size": 32, "seed": 0}}],
    "labels": [{"scheme": "spl"}],
    "methods": [{"loss": "an"}],
    "protocols": ["linear"],
    "training": {"recipe": "light", "epochs": 2, "image_size": 32, "batch_size": 16, "device": "cpu"},
}


def experiment(*methods):
    data = copy.deepcopy(BASE)
    data["methods"] = [dict(m) for m in methods]
    return data


@pytest.fixture(autouse=True)
def forget_plugins():
    yield
    for name in [n for n in sys.modules if n.startswith("plbench_example_method")]:
        del sys.modules[name]


def test_a_method_table_sets_the_config_method_and_its_options():
    spec = parse_spec(experiment({"loss": "an"}, {"method": "role", "loss_options": {"expected_num_pos": 1.5}},
                                 {"method": "em_apl", "loss_options": {"warmup_epoch": 1}}))
    got = [(m.name, m.method, m.mode, m.loss_options) for m in spec.methods]
    assert got == [("an", None, None, {}), ("role", "role", None, {"expected_num_pos": 1.5}),
                   ("em_apl", "em_apl", None, {"warmup_epoch": 1})]


def test_runs_without_a_method_keep_their_hash_and_a_method_changes_it(tmp_path):
    """``method`` unset is not hashed (tests/test_sweep_plan.py pins the hashes of experiments written before
    it existed); set, it is."""
    from plbench.sweep.plan import expand

    def train_stages(*methods):
        return [s for s in expand(parse_spec(experiment(*methods)), tmp_path).stages if s.kind.value == "train"]

    (an,) = train_stages({"loss": "an"})
    assert an.settings["config"]["method"] is None
    (role,) = train_stages({"method": "role"})
    assert role.settings["config"]["method"] == "role" and role.hash != an.hash
    assert "-none-role-" in role.name
    (as_method,) = train_stages({"method": "an"})  # the same loss named as a method is another run
    assert as_method.hash != an.hash


@pytest.mark.parametrize("table, words", [
    ({"loss": "an", "method": "role"}, ["methods[0]", "exactly one of loss and method", "both"]),
    ({"mode": "ignore"}, ["methods[0]", "exactly one of loss and method"]),
    ({"method": "nonesuch"}, ["methods[0].method", "unknown method 'nonesuch'", "role"]),
    ({"method": "no_such_module_xyz:Thing"}, ["methods[0].method", "cannot import module 'no_such_module_xyz'"]),
    ({"method": "role", "loss_options": {"alpha": 1}}, ["methods[0].loss_options", "does not take alpha",
                                                        "expected_num_pos"]),
    ({"method": "role", "mode": "ignore"}, ["methods[0].mode", "role"]),
])
def test_bad_method_tables_are_refused_naming_the_key(table, words, tmp_path):
    path = tmp_path / "e.toml"
    with pytest.raises(InputError) as info:
        parse_spec(experiment(table), source=path)
    message = info.value.message
    assert str(path) in message
    for word in words:
        assert word in message, message


@pytest.mark.slow
def test_a_sweep_trains_built_in_and_imported_methods_next_to_a_loss(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLE))
    data = experiment({"loss": "an"}, {"method": "role", "loss_options": {"expected_num_pos": 1.0}},
                      {"method": "plbench_example_method:SoftTargets"})
    out = tmp_path / "sweep"
    result = run_sweep(data, out=out)
    summaries, scores = {}, {}
    for run in sorted((out / "runs").iterdir()):
        s = json.loads((run / "summary.json").read_text())
        summaries[s["loss"]] = s
        scores[s["loss"]] = RunFolder(run).predictions()["scores"]
    assert sorted(summaries) == ["SoftTargets", "an", "role"]
    assert summaries["role"]["method"]["spec"] == "role"
    assert summaries["SoftTargets"]["method"]["import_path"] == "plbench_example_method:SoftTargets"
    # another method, not AN again (scores: 2 epochs may leave the rankings, hence the APs, the same)
    assert not np.array_equal(scores["role"], scores["an"])
    report = (out / "reports" / "m" / "report.md").read_text()
    assert "role" in report.lower() and "SoftTargets" in report
    again = plan_sweep(result.plan.spec, out)  # finished: everything is reused
    assert {st.action for st in again.status.values()} == {"reuse"}


@pytest.mark.slow
def test_a_sweep_trains_the_installed_plugin_by_its_entry_point_name(tmp_path, tmp_path_factory, monkeypatch):
    from plugin_support import install_example

    site = install_example(tmp_path_factory.mktemp("site"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    out = tmp_path / "sweep"
    run_sweep(experiment({"method": "soft_targets", "loss_options": {"momentum": 0.5}}), out=out)
    (run,) = (out / "runs").iterdir()
    assert "-soft_targets-" in run.name
    rec = json.loads((run / "summary.json").read_text())["method"]
    assert (rec["spec"], rec["package"], rec["version"]) == ("soft_targets", "plbench-example-method", "0.1.0")
    assert rec["source_file"].startswith(str(site))


@pytest.mark.slow
def test_a_sweep_runs_the_example_plugin_in_worker_processes(tmp_path, monkeypatch):
    """``--jobs 2``: every stage runs in ``python -m plbench.sweep.worker``, a fresh process that must import the
    plug-in from ``module:Name`` itself (PYTHONPATH), and records it as a run in this process would."""
    import os

    from plbench.sweep import StageKind
    from plbench.sweep import run as sweep_run
    from plbench.sweep.local import log_path

    def in_process(*args, **kwargs):
        raise AssertionError("--jobs 2 ran a stage in the parent process")

    monkeypatch.setattr(sweep_run, "run_in_process", in_process)
    monkeypatch.syspath_prepend(str(EXAMPLE))  # the parent checks the experiment file
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "sweep"
    data = experiment({"method": "plbench_example_method:SoftTargets", "loss_options": {"momentum": 0.5}})
    # three stages (data, train, report): full labels need no simulation, fine-tuning no feature store
    data.update(labels=[{"scheme": "full"}], protocols=["fine-tuned"])
    data["training"]["epochs"] = 1
    result = run_sweep(data, out=out, jobs=2)  # raises SweepError when a stage fails
    (stage,) = [s for s in result.plan.stages if s.kind is StageKind.TRAIN]
    assert log_path(stage).is_file()  # the worker's log
    (run,) = (out / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["loss"] == "SoftTargets" and summary["method"]["import_path"] == \
        "plbench_example_method:SoftTargets"
    assert summary["method"]["source_file"] == str((EXAMPLE / "plbench_example_method" / "__init__.py").resolve())
    running = RunFolder(run).load_checkpoint("last")["extra"]["method"]["running"]
    assert running.shape == (32, 4) and (running > 0).all()

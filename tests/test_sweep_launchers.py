"""Launchers: the local process pool (dependencies, GPUs, failures), torchrun, and submitit (local executor)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from plbench.errors import InputError
from plbench.sweep import Stage, StageKind, plan_sweep, parse_spec, run_sweep
from plbench.sweep import execute as sweep_execute
from plbench.sweep import local
from plbench.sweep.slurm import stage_parameters
from plbench.sweep.stages import is_done


def fake_stage(name: str, kind: StageKind, deps=(), gpus=None, root="/tmp") -> Stage:
    return Stage(kind, name, name, {}, tuple(deps), f"{root}/{name}", root,
                 gpus=int(kind in (StageKind.TRAIN, StageKind.PRIOR)) if gpus is None else gpus)


class FakeProcess:
    """Finishes with ``code`` at its second poll, then calls ``on_end(name)`` once."""

    def __init__(self, name: str, code: int, on_end) -> None:
        self.name, self.code, self.on_end, self.polls = name, code, on_end, 0

    def poll(self):
        self.polls += 1
        if self.polls < 2:
            return None
        if self.polls == 2:
            self.on_end(self.name)
        return self.code


def run_fake(monkeypatch, stages, *, jobs, gpus, failing=(), tmp_path):
    """run_parallel with fake child processes; returns (start/end events, failures, peak concurrency)."""
    events: list[tuple[str, str, tuple[str, ...]]] = []
    running: dict[str, tuple[str, ...]] = {}
    peak = {"jobs": 0}
    monkeypatch.setattr(local, "_POLL_S", 0.0)

    def on_end(name):
        del running[name]
        events.append(("end", name, ()))

    def launch(stage, assigned, any_gpu, threads=None):
        for other, held in running.items():
            assert not set(held) & set(assigned), f"{stage.name} got a GPU that {other} holds"
        running[stage.name] = tuple(assigned)
        peak["jobs"] = max(peak["jobs"], len(running))
        events.append(("start", stage.name, tuple(assigned)))
        log = tmp_path / f"{stage.name}.log"
        log.write_text("boom\n" if stage.name in failing else "")
        proc = FakeProcess(stage.name, 1 if stage.name in failing else 0, on_end)
        return local._Running(stage, proc, list(assigned), 0.0, log)

    monkeypatch.setattr(local, "_launch", launch)
    failures = local.run_parallel(stages, jobs=jobs, say=lambda s: None, gpus=gpus)
    return events, failures, peak["jobs"]


def test_parallel_respects_dependencies_gpus_and_job_limit(monkeypatch, tmp_path):
    a = fake_stage("sim", StageKind.SIMULATE)
    b, c, d = (fake_stage(n, StageKind.TRAIN, deps=["sim"]) for n in ("t1", "t2", "t3"))
    e = fake_stage("report", StageKind.REPORT, deps=["t1", "t2", "t3"])
    events, failures, peak = run_fake(monkeypatch, [a, b, c, d, e], jobs=3, gpus=["0", "1"], tmp_path=tmp_path)
    assert failures == []
    order = [(kind, name) for kind, name, _ in events]
    assert order[:2] == [("start", "sim"), ("end", "sim")]
    assert order[-2:] == [("start", "report"), ("end", "report")]
    starts = {name: gpus for kind, name, gpus in events if kind == "start"}
    assert starts["sim"] == () and starts["report"] == ()  # CPU stages get no GPU
    assert all(len(starts[t]) == 1 for t in ("t1", "t2", "t3"))
    assert peak == 2  # three jobs allowed, but only two GPUs for the three trainings
    t3_start = order.index(("start", "t3"))
    assert t3_start > min(order.index(("end", "t1")), order.index(("end", "t2")))


def test_parallel_on_cpu_uses_the_job_limit(monkeypatch, tmp_path):
    stages = [fake_stage(f"t{i}", StageKind.TRAIN) for i in range(5)]
    events, failures, peak = run_fake(monkeypatch, stages, jobs=3, gpus=[], tmp_path=tmp_path)
    assert failures == [] and peak == 3
    assert all(gpus == () for kind, _, gpus in events if kind == "start")


def test_a_failure_blocks_its_dependents_only(monkeypatch, tmp_path):
    a, b = fake_stage("simA", StageKind.SIMULATE), fake_stage("simB", StageKind.SIMULATE)
    ta, tb = fake_stage("tA", StageKind.TRAIN, deps=["simA"]), fake_stage("tB", StageKind.TRAIN, deps=["simB"])
    rep = fake_stage("report", StageKind.REPORT, deps=["tA", "tB"])
    events, failures, _ = run_fake(monkeypatch, [a, b, ta, tb, rep], jobs=2, gpus=[], failing={"simA"},
                                   tmp_path=tmp_path)
    started = {name for kind, name, _ in events if kind == "start"}
    assert started == {"simA", "simB", "tB"}
    reasons = {f.stage.name: f.reason for f in failures}
    assert reasons["simA"] == "boom"
    assert reasons["tA"] == "not started: simulate simA failed"
    assert reasons["report"].startswith("not started: train tA")


def test_a_torchrun_stage_larger_than_the_gpus_is_refused():
    big = fake_stage("t", StageKind.TRAIN, gpus=4)
    with pytest.raises(InputError, match="needs 4 GPUs, but 2 are visible"):
        local.run_parallel([big], jobs=2, say=lambda s: None, gpus=["0", "1"])


SMALL = {
    "sweep": {"name": "small"},
    "datasets": [{"name": "synthetic", "data_root": "{out}/data",
                  "synthetic": {"train": 40, "val": 16, "num_classes": 4, "image_size": 32, "seed": 0}}],
    "labels": [{"scheme": "fpc", "params": [4]}, {"scheme": "rps", "params": [0.5]}, {"scheme": "full"}],
    "methods": [{"loss": "pasl", "mode": "negative"}],
    "training": {"recipe": "light", "epochs": 1, "image_size": 32, "batch_size": 16, "device": "cpu"},
}


def test_child_processes_run_real_stages(tmp_path):
    """--jobs 2 through `python -m plbench.sweep.worker`: data, then both simulations at once."""
    plan = plan_sweep(parse_spec(SMALL), tmp_path)
    stages = [s for s in plan.stages if s.kind in (StageKind.DATA, StageKind.SIMULATE)]
    said: list[str] = []
    failures = local.run_parallel(stages, jobs=2, say=said.append, gpus=[])
    assert failures == [], [f.reason for f in failures]
    assert all(is_done(s) for s in stages)
    assert (tmp_path / "simulations" / "synthetic-rps0.5-s0.parquet").is_file()
    assert said[0].startswith("[1/3] run    data") and sum(s.startswith("done") for s in said) == 3
    stage_file = tmp_path / ".sweep" / "stages" / f"{stages[1].hash}.json"
    assert Stage.from_dict(json.loads(stage_file.read_text())) == stages[1]


def test_torchrun_training_runs_the_train_command(tmp_path, monkeypatch):
    calls = []

    class Done:
        returncode = 0

    def fake_run(cmd, check):
        calls.append(cmd)
        run_dir = Path(stage.output)
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text("{}")
        return Done()

    data = copy.deepcopy(SMALL)
    data["training"]["torchrun_nproc"] = 2
    data["labels"] = [{"scheme": "full"}]
    plan = plan_sweep(parse_spec(data), tmp_path)
    stage = next(s for s in plan.stages if s.kind is StageKind.TRAIN)
    assert stage.gpus == 2 and stage.settings["torchrun_nproc"] == 2
    monkeypatch.setattr(sweep_execute.subprocess, "run", fake_run)
    sweep_execute.execute_stage(stage)
    cmd = calls[0]
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--nproc-per-node=2" in cmd
    assert cmd[-5:-1] == ["-m", "plbench", "train", "--config"]
    config = json.loads(Path(cmd[-1]).read_text())
    assert config == stage.settings["config"] and config["run_name"] == stage.name


def test_slurm_parameters_keep_dependencies_and_validate_with_submitit(tmp_path):
    submitit = pytest.importorskip("submitit", reason="the slurm extra (pip install -e '.[slurm]') is not installed")
    slurm = {"partition": "gpu", "timeout_min": 60, "cpus_per_task": 4, "gpus_per_node": 1,
             "additional_parameters": {"qos": "normal"}}
    train = fake_stage("t", StageKind.TRAIN)
    params = stage_parameters(train, slurm, "slurm", ["101", "102"])
    assert params["slurm_additional_parameters"] == {"qos": "normal", "dependency": "afterok:101:102"}
    assert params["gpus_per_node"] == 1 and params["slurm_partition"] == "gpu" and params["timeout_min"] == 60
    assert stage_parameters(fake_stage("r", StageKind.REPORT), slurm, "slurm", [])["gpus_per_node"] == 0
    assert stage_parameters(fake_stage("big", StageKind.TRAIN, gpus=4), slurm, "slurm", [])["gpus_per_node"] == 4
    no_deps = stage_parameters(fake_stage("s", StageKind.SIMULATE), {}, "slurm", [])
    assert "slurm_additional_parameters" not in no_deps
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="local")
    executor.update_parameters(**params)  # every key is one submitit knows (slurm_* checked against Slurm's)


@pytest.mark.slow
def test_submitit_local_executor_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("submitit", reason="the slurm extra (pip install -e '.[slurm]') is not installed")
    monkeypatch.chdir(tmp_path)
    data = copy.deepcopy(SMALL)
    data["labels"] = [{"scheme": "full"}]
    said: list[str] = []
    result = run_sweep(data, out="out", launcher="submitit-local", say=said.append)
    assert [i.split()[0] for i in result.ran] == ["data", "train", "report"]
    assert len(result.job_ids) == 3 and sum(s.startswith("submitted") for s in said) == 3
    assert result.report is not None and result.report["md"].is_file()
    assert (tmp_path / "out" / ".sweep" / "submitit").is_dir()
    again = run_sweep(data, out="out", launcher="submitit-local")
    assert again.ran == [] and again.job_ids == []


def test_ctrl_c_in_a_training_stops_the_sweep_and_the_cli_says_how_to_resume(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from plbench.cli import app
    from plbench.engine.train import TrainingInterrupted

    ran = []

    def execute(stage, progress=False):
        ran.append(stage.name)
        raise TrainingInterrupted(tmp_path / "runs" / stage.name, 0, 3)

    monkeypatch.setattr(local, "execute_stage", execute)
    stages = [fake_stage("t1", StageKind.TRAIN), fake_stage("t2", StageKind.TRAIN)]
    with pytest.raises(TrainingInterrupted):
        local.run_in_process(stages, progress=False, say=lambda s: None)
    assert ran == ["t1"]  # not recorded as a failure, and nothing after it runs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("plbench.sweep.run_sweep", interrupted)
    toml = tmp_path / "e.toml"
    toml.write_text('[sweep]\nname = "e"\n')
    result = CliRunner().invoke(app, ["sweep", str(toml)])
    assert result.exit_code == 130
    assert "Interrupted" in result.output and f"plbench sweep {toml}" in result.output


def test_an_existing_run_folder_resumes_with_its_own_config(tmp_path, monkeypatch):
    """Values plbench filled in when the run started (maybe an older version) are kept on resume."""
    data = copy.deepcopy(SMALL)
    data["labels"] = [{"scheme": "full"}]
    plan = plan_sweep(parse_spec(data), tmp_path)
    stage = next(s for s in plan.stages if s.kind is StageKind.TRAIN)
    run_dir = Path(stage.output)
    run_dir.mkdir(parents=True)
    old = {**stage.settings["config"], "warmup_fraction": 0.5}  # not set by the experiment: not hashed
    (run_dir / "config.json").write_text(json.dumps(old))
    seen = []
    monkeypatch.setattr("plbench.engine.train.train", lambda config, progress=False: seen.append(config))
    monkeypatch.setattr(sweep_execute, "write_record", lambda stage, seconds: None)
    sweep_execute.execute_stage(stage)
    assert seen[0].warmup_fraction == 0.5 and seen[0].to_dict() == old

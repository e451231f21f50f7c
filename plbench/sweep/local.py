"""Run a plan's stages on this machine: in this process (``jobs=1``) or as up to N child processes.

Children are ``python -m plbench.sweep.worker STAGE.json`` with their own ``CUDA_VISIBLE_DEVICES``: a
GPU stage gets one free GPU (a torchrun training ``torchrun_nproc`` of them), a CPU stage none; without
GPUs every stage runs on the CPU, each child with ``OMP_NUM_THREADS`` = cores / N unless that is set. A stage starts once the stages it depends on have finished; when one
fails, the stages that depend on it are not started and the others go on.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from plbench.artifacts.atomic import write_json, write_text
from plbench.errors import InputError
from plbench.progress import ENV_VAR as PROGRESS_ENV_VAR, ProgressMode
from plbench.sweep.execute import execute_stage
from plbench.sweep.stages import STATE_DIR, Stage

log = logging.getLogger(__name__)
_POLL_S = 0.2
_GRACE_S = 120.0  # how long an interrupted child may take to save its checkpoint


@dataclass
class StageFailure:
    """A stage that failed (``reason``), or that was not started because a dependency failed."""

    stage: Stage
    reason: str
    log: Path | None = None


def visible_gpus() -> list[str]:
    """GPU ids this process may hand out: ``CUDA_VISIBLE_DEVICES`` when set, else every CUDA device."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a dependency
        return []


def log_path(stage: Stage) -> Path:
    return Path(stage.root) / STATE_DIR / "logs" / f"{stage.kind.value}-{stage.name}.log"


def is_interrupt(error: BaseException) -> bool:
    """Ctrl-C: a KeyboardInterrupt, or a training that saved its checkpoint and raised TrainingInterrupted."""
    if isinstance(error, KeyboardInterrupt):
        return True
    train = sys.modules.get("plbench.engine.train")  # not loaded: no training ran, so it cannot be one
    return train is not None and isinstance(error, getattr(train, "TrainingInterrupted", ()))


def blocked_by(stage: Stage, failed: dict[str, StageFailure]) -> StageFailure | None:
    """The failure that keeps ``stage`` from starting (a dependency in ``failed``), or None."""
    bad = [failed[d] for d in stage.deps if d in failed]
    if not bad:
        return None
    return StageFailure(stage, f"not started: {bad[0].stage.id} failed")


def run_in_process(stages: list[Stage], *, progress: bool, say: Callable[[str], None]) -> list[StageFailure]:
    """Run ``stages`` (in dependency order) one after the other in this process."""
    failed: dict[str, StageFailure] = {}
    for i, stage in enumerate(stages, 1):
        blocked = blocked_by(stage, failed)
        if blocked is not None:
            failed[stage.hash] = blocked
            say(f"[{i}/{len(stages)}] skip   {stage.id} ({blocked.reason})")
            continue
        say(f"[{i}/{len(stages)}] run    {stage.id}")
        try:
            seconds = execute_stage(stage, progress=progress)
        except InputError as e:
            failed[stage.hash] = StageFailure(stage, e.message)
        except Exception as e:  # noqa: BLE001 - one failed stage must not stop the independent ones
            if is_interrupt(e):
                raise
            path = log_path(stage)
            write_text(path, traceback.format_exc())
            failed[stage.hash] = StageFailure(stage, f"{type(e).__name__}: {e}", path)
        else:
            say(f"[{i}/{len(stages)}] done   {stage.id} ({seconds:.1f} s)")
            continue
        say(f"[{i}/{len(stages)}] FAILED {stage.id}: {failed[stage.hash].reason}")
    return list(failed.values())


@dataclass
class _Running:
    stage: Stage
    process: subprocess.Popen
    gpus: list[str]
    started: float
    log: Path


def _launch(stage: Stage, gpus: list[str], any_gpu: bool, threads: int | None = None) -> _Running:
    state = Path(stage.root) / STATE_DIR
    stage_file = state / "stages" / f"{stage.hash}.json"
    write_json(stage_file, stage.to_dict())
    env = dict(os.environ)
    if any_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)  # "" hides every GPU from a CPU stage
    env.setdefault(PROGRESS_ENV_VAR, ProgressMode.OFF.value)
    if threads is not None and "OMP_NUM_THREADS" not in env:  # N children x all cores would oversubscribe
        env["OMP_NUM_THREADS"] = str(threads)
    path = log_path(stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "plbench.sweep.worker", str(stage_file)], env=env,
                                stdout=logf, stderr=subprocess.STDOUT)
    return _Running(stage, proc, gpus, time.perf_counter(), path)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_parallel(stages: list[Stage], *, jobs: int, say: Callable[[str], None],
                 gpus: list[str] | None = None) -> list[StageFailure]:
    """Run ``stages`` as up to ``jobs`` child processes, each started once its dependencies are done.

    Args:
        gpus: GPU ids to hand out (default :func:`visible_gpus`); empty = CPU only.
    Raises:
        InputError: a stage needs more GPUs than there are (torchrun_nproc).
    """
    free = list(visible_gpus() if gpus is None else gpus)
    any_gpu = bool(free)
    too_big = [s for s in stages if any_gpu and s.gpus > len(free)]
    if too_big:
        raise InputError(None, "training.torchrun_nproc", f"{too_big[0].id} needs {too_big[0].gpus} GPUs, but "
                         f"{len(free)} are visible", "lower torchrun_nproc, or run on a machine with more GPUs")
    in_plan = {s.hash for s in stages}
    pending = list(stages)
    running: dict[str, _Running] = {}
    finished: set[str] = set()
    failed: dict[str, StageFailure] = {}
    total, started = len(stages), 0
    threads = max(1, (os.cpu_count() or 1) // jobs)
    try:
        while pending or running:
            for stage in list(pending):
                if len(running) >= jobs:
                    break
                blocked = blocked_by(stage, failed)
                if blocked is not None:
                    pending.remove(stage)
                    failed[stage.hash] = blocked
                    say(f"skip   {stage.id} ({blocked.reason})")
                    continue
                if any(d in in_plan and d not in finished for d in stage.deps):
                    continue
                need = stage.gpus if any_gpu else 0
                if need > len(free):
                    continue
                assigned, free = free[:need], free[need:]
                pending.remove(stage)
                started += 1
                running[stage.hash] = _launch(stage, assigned, any_gpu, threads)
                where = f" on GPU {','.join(assigned)}" if assigned else ""
                say(f"[{started}/{total}] run    {stage.id}{where}")
            time.sleep(_POLL_S)
            for h, r in list(running.items()):
                code = r.process.poll()
                if code is None:
                    continue
                del running[h]
                free.extend(r.gpus)
                seconds = time.perf_counter() - r.started
                if code == 0:
                    finished.add(h)
                    say(f"done   {r.stage.id} ({seconds:.1f} s)")
                else:
                    reason = _last_line(r.log) or f"exit status {code}"
                    failed[h] = StageFailure(r.stage, reason, r.log)
                    say(f"FAILED {r.stage.id}: {reason} (log: {r.log})")
    except BaseException as e:
        # Ctrl-C in a terminal reaches our children too (same process group): a training finishes its step
        # and saves; anything else (an error here) is passed on to them as SIGINT. Stragglers are stopped.
        for r in running.values():
            if not isinstance(e, KeyboardInterrupt):
                r.process.send_signal(signal.SIGINT)
        for r in running.values():
            try:
                r.process.wait(timeout=_GRACE_S)
            except subprocess.TimeoutExpired:
                r.process.terminate()
                r.process.wait()
        raise
    return list(failed.values())

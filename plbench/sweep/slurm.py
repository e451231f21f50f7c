"""Send a plan's stages to Slurm through submitit (``pip install plbench[slurm]``), dependencies kept.

Every stage is one job running :func:`plbench.sweep.execute.run_stage_job`. On Slurm, a stage's job is
submitted at once with ``--dependency=afterok:<the jobs of its dependencies>``, so the cluster starts it
when they have succeeded (and never, if one failed). submitit's local executor (``cluster="local"``, used
to test this path on a workstation) has no job dependencies: there a stage is submitted once its
dependencies' jobs have finished.

GPU stages (train, estimate-prior, features) ask for ``[slurm] gpus_per_node`` GPUs (default 1; a torchrun
training: ``torchrun_nproc``), the others for none.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from plbench.errors import InputError
from plbench.sweep.execute import run_stage_job
from plbench.sweep.local import StageFailure, blocked_by
from plbench.sweep.spec import SLURM_GENERIC, SLURM_SPECIFIC
from plbench.sweep.stages import GPU_KINDS, STATE_DIR, Stage


def stage_parameters(stage: Stage, slurm: dict[str, Any], cluster: str, dependencies: list[str]) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` keywords for one stage.

    Args:
        slurm: the experiment's ``[slurm]`` table.
        cluster: ``slurm`` or ``local``.
        dependencies: Slurm job ids the stage must wait for (``afterok``).
    """
    params: dict[str, Any] = {k: slurm[k] for k in SLURM_GENERIC if k in slurm}
    params.update({f"slurm_{k}": slurm[k] for k in SLURM_SPECIFIC if k in slurm and k != "additional_parameters"})
    params["name"] = f"plbench-{stage.kind.value}-{stage.name}"[:120]
    gpus = 0
    if stage.kind in GPU_KINDS:
        gpus = stage.gpus if stage.gpus > 1 else int(slurm.get("gpus_per_node", 1))
    if cluster == "local":
        from plbench.sweep.local import visible_gpus

        gpus = min(gpus, len(visible_gpus()))
    params["gpus_per_node"] = gpus
    params.setdefault("tasks_per_node", 1)  # one process per job; torchrun starts the others itself
    additional = dict(slurm.get("additional_parameters", {}))
    if dependencies:
        additional["dependency"] = "afterok:" + ":".join(dependencies)
    if additional:
        params["slurm_additional_parameters"] = additional
    return params


def run_submitit(stages: list[Stage], *, slurm: dict[str, Any], folder: str | Path, cluster: str | None = None,
                 wait: bool = True, say: Callable[[str], None]) -> tuple[list[str], list[StageFailure]]:
    """Submit ``stages`` (in dependency order) as submitit jobs.

    Args:
        slurm: the experiment's ``[slurm]`` table.
        folder: submitit's log/pickle folder (``%j`` is the job id).
        cluster: ``None`` (detect: Slurm where ``sbatch`` exists), ``"slurm"`` or ``"local"``.
        wait: wait for every job and collect failures (always waits on the local executor).
    Returns:
        the job ids, and the stages that failed (empty when not waiting on Slurm).
    Raises:
        InputError: submitit is not installed, or no cluster was found.
    """
    try:
        import submitit
    except ImportError:
        raise InputError(None, "--launcher", "the slurm launcher needs submitit, which is not installed",
                         "pip install 'plbench[slurm]'") from None
    try:
        executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    except RuntimeError as e:
        raise InputError(None, "--launcher", f"no Slurm cluster found ({e})",
                         "run on a Slurm login node, or use --launcher local") from None
    kind = executor.cluster
    cwd = os.getcwd()
    by_hash = {s.hash: s for s in stages}
    jobs: dict[str, Any] = {}
    checked: set[str] = set()
    failed: dict[str, StageFailure] = {}

    def collect(h: str) -> None:
        if h in checked:
            return
        checked.add(h)
        error = _outcome(jobs[h])
        if error is not None:
            failed[h] = StageFailure(by_hash[h], error, Path(str(jobs[h].paths.stderr)))
            say(f"FAILED {by_hash[h].id}: {error}")

    for stage in stages:
        deps = [d for d in stage.deps if d in jobs]
        if kind != "slurm":
            for d in deps:  # this executor has no job dependencies: wait for them here
                collect(d)
        blocked = blocked_by(stage, failed)
        if blocked is not None:
            failed[stage.hash] = blocked
            say(f"skip   {stage.id} ({blocked.reason})")
            continue
        ids = [jobs[d].job_id for d in deps] if kind == "slurm" else []
        executor.update_parameters(**stage_parameters(stage, slurm, kind, ids))
        jobs[stage.hash] = executor.submit(run_stage_job, stage.to_dict(), cwd)
        say(f"submitted {stage.id} as job {jobs[stage.hash].job_id}")
    if wait or kind != "slurm":
        for h in jobs:
            collect(h)
    return [j.job_id for j in jobs.values()], list(failed.values())


def _outcome(job: Any) -> str | None:
    """None when the job succeeded, else the last line of its error."""
    try:
        job.result()
    except Exception as e:  # noqa: BLE001 - submitit wraps the job's exception
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        return lines[-1] if lines else type(e).__name__
    return None


def submitit_folder(out: str | Path) -> Path:
    return Path(out) / STATE_DIR / "submitit" / "%j"

"""``run_sweep``: plan a sweep, then run what is missing locally or through submitit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from plbench.choices import Choice
from plbench.errors import InputError
from plbench.sweep.local import StageFailure, run_in_process, run_parallel
from plbench.sweep.plan import Plan, plan_sweep
from plbench.sweep.spec import SweepSpec, load_spec, parse_spec

log = logging.getLogger(__name__)


class Launcher(Choice):
    """Where the stages run."""

    LOCAL = "local"  # this machine: in this process (--jobs 1) or child processes
    SLURM = "slurm"  # a Slurm cluster through submitit, with job dependencies
    SUBMITIT_LOCAL = "submitit-local"  # submitit's local executor: the Slurm code path on a workstation


class SweepError(RuntimeError):
    """Some stages failed; ``failures`` says which and why (stages depending on them were not started)."""

    def __init__(self, failures: list[StageFailure]) -> None:
        self.failures = failures
        lines = [f"{len(failures)} stage(s) failed or could not start:"]
        for f in failures:
            lines.append(f"  {f.stage.id}: {f.reason}" + (f" (log: {f.log})" if f.log else ""))
        lines.append("Fix the cause and run the same command again: finished stages are reused.")
        super().__init__("\n".join(lines))


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        plan: every stage with its action (run / reuse / skip), decided before running.
        ran: ids of the stages that ran (or were submitted, with Slurm).
        runs: the grid's run folders.
        report: ``{"md": ..., "html": ...}`` paths of the report, once it exists.
        job_ids: submitted job ids (submitit launchers).
    """

    plan: Plan
    ran: list[str] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)
    report: dict[str, Path] | None = None
    job_ids: list[str] = field(default_factory=list)


def _as_spec(spec: SweepSpec | str | Path | Mapping[str, Any]) -> SweepSpec:
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, (str, Path)):
        return load_spec(spec)
    return parse_spec(spec)


def _check_inputs(plan: Plan) -> None:
    missing = plan.missing_inputs()
    if missing:
        path, users = next(iter(missing.items()))
        more = f" (and {len(missing) - 1} more missing input(s); see --dry-run)" if len(missing) > 1 else ""
        raise InputError(path, "input", f"does not exist, but {len(users)} stage(s) need it, e.g. {users[0].id}{more}",
                         "download/prepare the dataset there or fix data_root / checkpoint in the experiment file")


def run_sweep(
    spec: SweepSpec | str | Path | Mapping[str, Any],
    *,
    out: str | Path = ".",
    dry_run: bool = False,
    jobs: int = 1,
    launcher: Launcher | str = Launcher.LOCAL,
    wait: bool = True,
    progress: bool = False,
    command: str | None = None,
    say: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run (or list) the stages of an experiment that are not finished yet.

    Args:
        spec: a :class:`SweepSpec`, an experiment TOML path, or its parsed dict.
        out: sweep root: ``simulations/``, ``priors/``, ``runs/``, ``features/``, ``reports/<name>/`` and the
            bookkeeping folder ``.sweep/`` go here.
        dry_run: plan only; ``result.plan`` (see :func:`plbench.sweep.plan.format_plan`) says what would run.
        jobs: stages run at once (local launcher); >1 runs each stage in a child process with its own GPU.
        launcher: ``local``, ``slurm`` or ``submitit-local``.
        wait: with ``slurm``, wait for the jobs (else return once submitted; re-run later to finish).
        progress: progress bars (in-process stages only).
        command: the command line the report shows.
        say: receives one line per stage event (default: logging).
    Returns:
        a :class:`SweepResult`.
    Raises:
        InputError: a bad experiment, or an input (dataset root, checkpoint) that a stage to run needs is missing.
        SweepError: some stages failed (the others finished and are reused next time).
    """
    say = say or log.info
    spec = _as_spec(spec)
    launcher = Launcher.parse(launcher)
    if jobs < 1:
        raise InputError(None, "--jobs", f"expected at least 1, but got {jobs}", "pass --jobs 1 or more")
    plan = plan_sweep(spec, out, command=command)
    result = SweepResult(plan, runs=plan.run_dirs())
    report = Path(plan.report_stage().output)
    if dry_run:
        return result
    _check_inputs(plan)
    stages = plan.to_run()
    result.ran = [s.id for s in stages]
    if launcher is Launcher.LOCAL:
        failures = (run_in_process(stages, progress=progress, say=say) if jobs == 1
                    else run_parallel(stages, jobs=jobs, say=say))
    else:
        from plbench.sweep.slurm import run_submitit, submitit_folder

        cluster = "local" if launcher is Launcher.SUBMITIT_LOCAL else "slurm"
        result.job_ids, failures = run_submitit(stages, slurm=spec.slurm, folder=submitit_folder(out),
                                                cluster=cluster, wait=wait, say=say)
    if failures:
        raise SweepError(failures)
    if (report / "report.md").is_file():
        result.report = {"md": report / "report.md", "html": report / "report.html"}
    return result

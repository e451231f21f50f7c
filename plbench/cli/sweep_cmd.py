"""``plbench sweep EXPERIMENT.toml``: run a grid of experiments, reusing whatever is already finished."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from plbench.cli.app import app, command, fail
from plbench.sweep.run import Launcher


@command(app, "sweep")
def sweep_command(
    experiment: Annotated[Path, typer.Argument(dir_okay=False, help="Experiment TOML, e.g. experiments/csl_coco.toml.")],
    out: Annotated[Path, typer.Option(help="Sweep root: simulations/, priors/, runs/, reports/<name>/ go here.")]
    = Path("."),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the stages and whether each would run or be "
                                                            "reused; run nothing.")] = False,
    jobs: Annotated[int, typer.Option(min=1, help="Independent stages run at once (local launcher), one GPU each "
                                                  "when GPUs exist.")] = 1,
    launcher: Annotated[Launcher, typer.Option(help="local: this machine; slurm: a Slurm cluster through submitit "
                                                    "(install the slurm extra); submitit-local: the same path "
                                                    "on this machine.")] = Launcher.LOCAL,
    wait: Annotated[bool, typer.Option(help="slurm: wait for the jobs to finish (else return once submitted).")]
    = False,
) -> None:
    """Expand an experiment into stages (simulate -> estimate-prior -> train -> report) and run what is missing."""
    from plbench.sweep import SweepError, format_plan, run_sweep

    argv = ["plbench", "sweep", str(experiment)] + (["--out", str(out)] if out != Path(".") else [])
    say = lambda s: typer.echo(s, err=True)  # noqa: E731
    try:
        result = run_sweep(experiment, out=out, dry_run=dry_run, jobs=jobs, launcher=launcher,
                           wait=wait or launcher is not Launcher.SLURM, progress=jobs == 1,
                           command=shlex.join(argv), say=say)
    except SweepError as e:
        fail(str(e), code=1)
        return
    except (KeyboardInterrupt, Exception) as e:
        from plbench.sweep.local import is_interrupt

        if not is_interrupt(e):
            raise
        fail("Interrupted. Finished stages are kept and an interrupted training resumes from its checkpoint: "
             f"run `{shlex.join(argv)}` again.", code=130)
        return
    if dry_run:
        typer.echo(format_plan(result.plan))
    elif result.report is not None:
        typer.echo(f"wrote {result.report['md']} and {result.report['html']}")
    elif result.job_ids:
        typer.echo(f"submitted {len(result.job_ids)} jobs; run the same command again once they finish "
                   "(finished stages are reused)")

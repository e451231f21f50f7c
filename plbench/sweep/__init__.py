"""Experiment grids: ``plbench sweep EXPERIMENT.toml``.

* :mod:`~plbench.sweep.spec`: the TOML schema, parsed and validated into a :class:`SweepSpec`;
* :mod:`~plbench.sweep.stages`: stage kinds, content hashes, reuse records;
* :mod:`~plbench.sweep.plan`: expansion into stages with dependencies, and what runs or is reused;
* :mod:`~plbench.sweep.execute`: one stage through the library;
* :mod:`~plbench.sweep.local` / :mod:`~plbench.sweep.slurm`: launchers (processes; submitit);
* :mod:`~plbench.sweep.run`: :func:`run_sweep`, which ties them together.
"""

from plbench.sweep.plan import Plan, expand, format_plan, plan_sweep
from plbench.sweep.run import Launcher, SweepError, SweepResult, run_sweep
from plbench.sweep.spec import SweepSpec, load_spec, parse_spec, read_experiment
from plbench.sweep.stages import Stage, StageKind

__all__ = ["Launcher", "Plan", "Stage", "StageKind", "SweepError", "SweepResult", "SweepSpec", "expand",
           "format_plan", "load_spec", "parse_spec", "plan_sweep", "read_experiment", "run_sweep"]

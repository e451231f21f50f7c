"""Run one stage through the library (never the CLI, except a torchrun training, which is a process).

:func:`execute_stage` is what every launcher calls: in this process (``--jobs 1``), in a child process
(``python -m plbench.sweep.worker``), or in a Slurm job (:func:`run_stage_job`, pickled by submitit).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from plbench.artifacts.atomic import write_json
from plbench.artifacts.runs import CONFIG, RunFolder
from plbench.config import TrainConfig
from plbench.errors import InputError
from plbench.sweep.stages import STATE_DIR, Stage, StageKind, write_record

log = logging.getLogger(__name__)


def _data(stage: Stage, progress: bool) -> None:
    from plbench.datasets.synthetic import write_synthetic_coco

    write_synthetic_coco(stage.output, **stage.settings["synthetic"], progress=progress)


def _cache(stage: Stage, progress: bool) -> None:
    from plbench.datasets import load_dataset
    from plbench.datasets.images import build_image_cache

    s = stage.settings
    split = load_dataset(s["dataset"], s["data_root"], s["split"], **s["options"])
    build_image_cache(split.image_paths, s["image_size"], stage.output, progress=progress)


def _simulate(stage: Stage, progress: bool) -> None:
    from plbench.artifacts.simulations import save_simulation
    from plbench.datasets import load_dataset
    from plbench.simulate import simulate

    s = stage.settings
    split = load_dataset(s["dataset"], s["data_root"], s["split"], **s["options"])
    bias = s.get("bias")  # spl only; absent for the uniform draw
    extra = {"split": s["split"], "dataset_options": s["options"], "sweep_stage": stage.hash}
    if bias is None:
        labels, scheme = simulate(split.labels, s["scheme"], s["param"], s["seed"]), s["scheme"]
    else:  # as `plbench simulate --scheme spl --bias`: the file records scheme spl-<bias> and the bias
        from plbench.simulate_biased import Bias, biased_scheme_name, simulate_biased_spl

        instances = None
        if Bias.parse(bias).needs_instances:
            from plbench.datasets.coco import coco_instances

            instances = coco_instances(Path(s["data_root"]), s["split"], split.labels,
                                       include_crowd=s["options"].get("include_crowd", True))
        labels, scheme = simulate_biased_spl(split.labels, bias, s["seed"], instances), biased_scheme_name(bias)
        extra["bias"] = bias
    save_simulation(stage.output, labels, dataset=split.dataset, fingerprint=split.fingerprint, scheme=scheme,
                    param=s["param"], seed=s["seed"], extra=extra)


def _features(stage: Stage, progress: bool) -> None:
    try:
        from plbench.engine.features import extract_split
    except ImportError:
        raise InputError(None, "protocols", "the linear protocol needs `plbench features extract` "
                         "(plbench.engine.features), which this plbench installation lacks",
                         "upgrade plbench, or use protocols = [\"fine-tuned\"]") from None
    s = stage.settings
    for split in s["splits"]:
        extract_split(s["dataset"], s["data_root"], split, stage.output, dataset_options=s["options"],
                      backbone=s["backbone"], image_size=s["image_size"], pretrained=s["pretrained"],
                      checkpoint=s["checkpoint"], tokens=s["tokens"], cache_dir=s["cache_dir"],
                      progress=progress, **s["extract_options"])


def torchrun_command(config_path: str | Path, nproc: int) -> list[str]:
    """``torchrun --nproc-per-node N -m plbench train --config CONFIG`` with this interpreter's torch."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "plbench", "train", "--config", str(config_path)]


def _own_config(config: TrainConfig) -> TrainConfig:
    """The config an existing run folder was started with, else ``config``.

    The folder name carries the hash of the fields the experiment sets, so both agree on those; the values
    plbench filled in (possibly by an older version) are the run's own, and resuming must keep them.
    """
    run = RunFolder(Path(config.out_dir) / str(config.run_name))
    if not run.file(CONFIG).is_file():
        return config
    return TrainConfig.from_dict(run.config(), run.file(CONFIG))


def _train(stage: Stage, progress: bool) -> None:
    from plbench.engine.train import train

    config = _own_config(TrainConfig.from_dict(stage.settings["config"]))
    nproc = int(stage.settings.get("torchrun_nproc", 1))
    if nproc <= 1:
        train(config, progress=progress)
        return
    path = Path(stage.root) / STATE_DIR / "configs" / f"{config.run_name}.json"
    write_json(path, config.to_dict())
    cmd = torchrun_command(path, nproc)
    log.info("running %s", " ".join(cmd))
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun exited with status {done.returncode}: {' '.join(cmd)}")
    if not RunFolder(stage.output).is_finished:
        raise RuntimeError(f"torchrun finished but {stage.output} has no summary.json")


def _prior(stage: Stage, progress: bool) -> None:
    from plbench.engine.prior import prior_from_model
    from plbench.engine.train import train
    from plbench.priors import write_prior_csv

    config = _own_config(TrainConfig.from_dict(stage.settings["config"]))
    # the Ignore-mode run is finished (a dependency): train() returns it with its headline model loaded
    result = train(config, progress=progress)
    names, prior = prior_from_model(config, result.model, progress=progress)
    write_prior_csv(stage.output, names, prior)


def _report(stage: Stage, progress: bool) -> None:
    from plbench.report import write_report

    s = stage.settings
    write_report([Path(r) for r in s["runs"]], stage.output, title=s["title"], command=s.get("command"),
                 notes=s["notes"], reference=s.get("reference") or None)


_EXECUTORS: dict[StageKind, Callable[[Stage, bool], None]] = {
    StageKind.DATA: _data, StageKind.CACHE: _cache, StageKind.SIMULATE: _simulate, StageKind.FEATURES: _features,
    StageKind.TRAIN: _train, StageKind.PRIOR: _prior, StageKind.REPORT: _report,
}


def execute_stage(stage: Stage, *, progress: bool = False) -> float:
    """Produce the stage's output, then record it as finished.

    Returns:
        seconds it took.
    Raises:
        InputError: bad inputs (missing data, mismatched files); anything else the library raises.
    """
    t0 = time.perf_counter()
    _EXECUTORS[stage.kind](stage, progress)
    seconds = time.perf_counter() - t0
    write_record(stage, seconds)
    return seconds


def run_stage_job(payload: dict[str, Any], cwd: str) -> str:
    """Entry point of a submitit job: run one stage (given as :meth:`Stage.to_dict`) from ``cwd``.

    Relative paths in the stage are relative to the folder the sweep was planned in, hence ``cwd``.
    """
    os.chdir(cwd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stage = Stage.from_dict(payload)
    seconds = execute_stage(stage)
    return f"{stage.id}: {seconds:.1f} s"

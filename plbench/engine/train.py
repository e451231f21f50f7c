"""The one training code path: every command that trains (train, estimate-prior, sweep, demo) calls :func:`train`.

Read top to bottom: :func:`train` checks every input before it writes anything
(:func:`plbench.engine.inputs.load_inputs`), builds the model, loss and optimizer, opens the run folder
(:class:`plbench.artifacts.runs.RunFolder` owns its files), resumes from ``last.pt``
(:mod:`plbench.engine.checkpoints`), then per epoch :func:`~plbench.engine.loop.train_one_epoch`,
:func:`~plbench.engine.loop.evaluate_models` (on the validation split, and on the selection split when the
run has one) and ``run.save_epoch``, and finally writes the predictions and the summary
(:mod:`plbench.engine.summary`, which also states the evaluation protocol and the epoch selection).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from plbench.artifacts.runs import RunFolder
from plbench.choices import Checkpoint
from plbench.config import DEFAULTS, TrainConfig
from plbench.engine import distributed as dist
from plbench.engine import runtime, zero_shot, zero_shot_alignment
from plbench.engine.checkpoints import checkpoint_state, restore
from plbench.engine.data import EpochBatchSampler, ImageLabelDataset, train_batch_count
from plbench.engine.ema import ModelEma
from plbench.engine.inputs import (TrainingData, check_loss, default_run_name, load_inputs, make_criterion,
                                   make_dataset, make_loader, normalization)
from plbench.engine.loop import EpochState, InterruptFlag, NonFiniteLoss, Trainer, evaluate_models, train_one_epoch
from plbench.engine.method_run import MethodTrainer, make_method, training_set_scorer
from plbench.engine.model import build_model
from plbench.engine.provenance import track_inputs
from plbench.engine.runtime import resolve_device
from plbench.engine.summary import (AUTHORS_PROTOCOL, build_summary, epoch_line, epoch_record, selected_record,
                                    selection_key)
from plbench.errors import InputError
from plbench.methods.api import Method
from plbench.progress import is_bar_mode, progress_line

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What :func:`train` returns: the run folder, its summary, and the headline model (EMA under csl)."""

    run_dir: Path
    summary: dict[str, Any]
    model: nn.Module


class TrainingInterrupted(Exception):
    """Ctrl-C: the current step finished and a checkpoint was saved; ``run_dir/config.json`` resumes it."""

    def __init__(self, run_dir: Path, epoch: int, step: int) -> None:
        self.run_dir, self.epoch, self.step = run_dir, epoch, step
        super().__init__(f"interrupted at epoch {epoch + 1}, step {step}; checkpoint saved in {run_dir}")


def make_model(config: TrainConfig, data: TrainingData, device: torch.device) -> nn.Module:
    """The image model (backbone + head), or the head alone on a linear run's (already checked) feature store,
    on ``device`` in the runtime's layout."""
    if config.features is not None:
        from plbench.engine.features import build_head_model

        model = build_head_model(config, len(data.class_names), store=data.feature_stores[config.train_split],
                                 extra=zero_shot.head_kwargs(data))
    else:
        model = build_model(config.backbone, config.head, len(data.class_names), pretrained=config.pretrained,
                            checkpoint=config.checkpoint,
                            head_options={**config.head_options, **zero_shot.head_kwargs(data)})
    return runtime.prepare_model(model, device)


def _decay_groups(params: list[nn.Parameter], weight_decay: float, **extra: Any) -> list[dict[str, Any]]:
    decay = [p for p in params if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay, **extra}, {"params": no_decay, "weight_decay": 0.0, **extra}]


def parameter_groups(model: nn.Module, weight_decay: float, head_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Weight decay on weights only: biases and normalisation parameters (1-D) are not decayed. The head
    trains at ``head_lr_mult`` times the learning rate (the spml recipe: 10), else at the multiple it declares
    (``lr_mult``; BoostLU: 10, as its authors train the 1x1 convolution), in two more groups (``lr_mult`` of
    a group is read by :func:`plbench.engine.loop.train_step`). The two are one setting, never multiplied."""
    head = getattr(model, "head", None)
    declared = float(getattr(head, "lr_mult", 1.0)) if isinstance(head, nn.Module) else 1.0
    lr_mult = head_lr_mult if head_lr_mult != 1.0 else declared
    if lr_mult == 1.0 or not isinstance(head, nn.Module):
        return _decay_groups(list(model.parameters()), weight_decay)
    in_head = {id(p) for p in head.parameters()}
    rest = [p for p in model.parameters() if id(p) not in in_head]
    return (_decay_groups(rest, weight_decay)
            + _decay_groups(list(head.parameters()), weight_decay, lr_mult=lr_mult))


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    resume_from: str = "last",
    command: str | None = None,
) -> RunResult:
    """Train (or resume, or return) the run that ``config`` describes.

    Args:
        progress: progress bars (on a terminal) or plain progress lines.
        on_epoch: called with each epoch's metrics record.
        resume_from: ``last`` (default) or ``best``: the checkpoint to continue from when the run folder
            has one (``best`` after a damaged ``last.pt``).
        command: the command line recorded in the summary's provenance.
    Raises:
        InputError: bad dataset, simulation, prior, option, image (``--strict``) or checkpoint; a run folder
            that holds a different configuration or is in use; a NaN/inf loss (the last good checkpoint is kept).
        TrainingInterrupted: Ctrl-C; a checkpoint of the finished step was saved.
    """
    started = time.time()
    check_loss(config)
    Checkpoint.parse(resume_from)
    device = resolve_device(config.device) if not dist.is_distributed() else dist.device_for_rank(config.device)
    with runtime.numerics(device, linear=config.features is not None):
        torch.manual_seed(config.seed)
        zero_shot_alignment.check_config(config)  # CLIP-Decoder's weights, before anything is loaded
        data = load_inputs(config, prepare=zero_shot.prepare)
        model = make_model(config, data, device)
        if config.init_head is not None:  # linear init: the head of another run (its best epoch)
            from plbench.engine.run_model import load_head_from_run

            load_head_from_run(model, config.init_head, list(data.class_names), config.head)
        # the method (or loss) after the model, so the model's initialisation draws the same random numbers
        criterion = make_method(config, data, model, device,
                                train_batch_count(len(data.train_paths), config.batch_size)[1])
        run = RunFolder(Path(config.out_dir) / (config.run_name or default_run_name(config, data.tag)))
        if dist.is_main():
            run.lock()
        try:
            if dist.is_main():
                run.open(config.to_dict(), DEFAULTS)  # the first write, after every input has been checked
                track_inputs(run, config.input_files())  # sha256 of the split / embedding / checkpoint files
            dist.barrier()
            return _train_in(run, config, data, model, criterion, device, progress=progress, on_epoch=on_epoch,
                             resume_from=resume_from, command=command, started=started)
        finally:
            if dist.is_main():
                run.unlock()


def make_trainer(config: TrainConfig, model: nn.Module, criterion: nn.Module, device: torch.device,
                 num_train: int, empty: tuple[torch.Tensor, torch.Tensor] | None) -> Trainer:
    """The :class:`Trainer` of a run: EMA, DDP / compile wrappers, Adam, the one-cycle step count, a GradScaler
    under float16 autocast."""
    ema = ModelEma(model, config.ema_decay) if config.ema_decay > 0 else None
    stepped = dist.wrap_model(model, device)
    if config.compile:
        stepped = torch.compile(stepped)
    # fused Adam: one kernel for all parameters on CUDA
    groups = parameter_groups(model, config.weight_decay, config.head_lr_mult)
    if isinstance(criterion, Method):
        groups += criterion.parameter_groups()  # the method's own parameters, at their lr_mult
    optimizer = torch.optim.Adam(groups, lr=config.lr, fused=device.type == "cuda")
    dtype = runtime.amp_dtype(config.amp, device)
    scaler = torch.amp.GradScaler("cuda") if runtime.needs_grad_scaler(dtype) else None
    _, steps_per_epoch = train_batch_count(num_train, config.batch_size)
    sum_loss = getattr(criterion, "reduction", "mean") == "sum"
    mean, std = normalization(config)
    kind = MethodTrainer if isinstance(criterion, Method) else Trainer
    return kind(config, stepped, criterion, optimizer, ema, device, mean, std, steps_per_epoch,
                   steps_per_epoch * config.epochs, loss_scale=float(dist.world_size()) if sum_loss else 1.0,
                   scaler=scaler, empty=empty)


def _train_in(run: RunFolder, config: TrainConfig, data: TrainingData, model: nn.Module, criterion: nn.Module,
              device: torch.device, *, progress: bool, on_epoch: Callable[[dict[str, Any]], None] | None,
              resume_from: str, command: str | None, started: float) -> RunResult:
    n_train = len(data.train_paths)
    t = make_trainer(config, model, criterion, device, n_train, None)
    zero_shot_alignment.attach(t, config, data, model, device)  # CLIP-Decoder's term; nothing at weight 0
    headline = config.headline_model

    start_epoch, best_map, partial, history = 0, float("-inf"), None, []
    if run.has_checkpoint(resume_from):
        start_epoch, best_map, partial, history = restore(t, run, data, resume_from)
        if start_epoch >= config.epochs and run.is_finished:
            return RunResult(run.path, run.summary(), t.ema.module if t.ema is not None else model)
        log.info("resuming %s at epoch %d", run.path, (partial.epoch if partial else start_epoch) + 1)

    # images are decoded (or their cache opened) only once a finished run has been ruled out
    zs = data.zero_shot  # zero-shot: the datasets read the split's rows, the training set the kept ones
    train_set = make_dataset(config, config.train_split, data.train_paths if zs is None else zs.train_paths_all_rows,
                             data.train_labels if zs is None else zs.train_labels_all_rows, train=True,
                             fingerprint=data.train_split.fingerprint,
                             store=data.feature_stores.get(config.train_split))
    if zs is not None:
        train_set = zero_shot.RowSubset(train_set, zs.train_rows)
    val_set = make_dataset(config, config.val_split, data.val_split.image_paths, data.val_split.labels, train=False,
                           fingerprint=data.val_split.fingerprint, store=data.feature_stores.get(config.val_split))
    select_loader = None  # the epoch-selection split's, sharded and gathered as the validation split's
    if data.select_split is not None:
        sel = data.select_split
        select_loader = make_loader(dist.shard_dataset(make_dataset(
            config, config.select_split, sel.image_paths, sel.labels, train=False, fingerprint=sel.fingerprint,
            store=data.feature_stores.get(config.select_split))), config, device=device)
    t.empty = train_set.empty_batch() if hasattr(train_set, "empty_batch") else None
    if isinstance(t, MethodTrainer):
        t.num_images, t.train_scores = n_train, training_set_scorer(config, data, t)
    val_loader = make_loader(dist.shard_dataset(val_set), config, device=device)
    sampler = EpochBatchSampler(n_train, config.batch_size, config.seed, rank=dist.rank(),
                                world_size=dist.world_size(), with_epoch=isinstance(train_set, ImageLabelDataset))
    train_loader = make_loader(train_set, config, sampler, device)
    results: dict[str, Any] | None = None  # {} on ranks other than 0
    steps = t.steps_per_epoch
    # bars on a terminal; elsewhere (CI, Slurm, a log file) one line per epoch, written after validation
    bars = progress and is_bar_mode()
    with t.interrupt.installed():
        for epoch in range(partial.epoch if partial else start_epoch, config.epochs):
            state = partial if partial is not None and partial.epoch == epoch else EpochState(epoch)
            if state.batches_done == 0:
                torch.manual_seed(config.seed * 100_003 + epoch)  # dropout etc.: depends on (seed, epoch) only
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            t.on_epoch_start(epoch)
            sampler.set_epoch(epoch, start_batch=state.batches_done)
            try:
                train_one_epoch(t, train_loader, state, progress=bars,
                                desc=f"{run.name} epoch {epoch + 1}/{config.epochs}")
            except NonFiniteLoss as e:
                raise InputError(run.path, "loss", f"the loss became {e.value} at epoch {e.epoch + 1}, step "
                                 f"{e.step}; training stopped and the last good checkpoint (last.pt) is kept",
                                 "lower --lr or check the labels; re-running resumes from last.pt") from None
            if state.batches_done < steps:  # Ctrl-C inside the epoch
                if dist.is_main():
                    run.save_checkpoint("last", checkpoint_state(t, data, state, best_map, history,
                                                                 finished_epoch=False))
                raise TrainingInterrupted(run.path, epoch, epoch * steps + state.batches_done)
            t.after_training_epoch(epoch)  # the method's epoch-end hook, saved with this epoch's checkpoint
            results = evaluate_models(t, val_loader, data.val_split, progress=bars)
            selection = None if select_loader is None else evaluate_models(
                t, select_loader, data.select_split, progress=bars, only=headline, desc="select")
            record: dict[str, Any] = {}
            if dist.is_main():
                record = epoch_record(state, results, headline, selection)
                progress_line(epoch_line(run.name, record, config.epochs), enabled=progress)
                history.append(record)
                is_best = selected_record(history, selection_key(config)) is record  # best.pt: the chosen epoch
                best_map = max(best_map, record["val_map"])
                run.save_epoch(checkpoint_state(t, data, state, best_map, history, finished_epoch=True), record,
                               is_best=is_best)
                if on_epoch is not None:
                    on_epoch(record)
            t.on_epoch_end(epoch, record)
            dist.barrier()
            if t.interrupt.flag:
                raise TrainingInterrupted(run.path, epoch, (epoch + 1) * steps)

    if results is None:  # resumed after the last epoch but before the summary was written
        results = evaluate_models(t, val_loader, data.val_split, progress=bars)
    headline_model = t.ema.module if (t.ema is not None and headline == "ema") else model
    summary: dict[str, Any] = {}
    if dist.is_main():
        ev, scores, targets, index = results[headline]
        run.write_predictions(scores, targets, np.asarray(data.val_split.image_paths, dtype=str)[index],
                              np.asarray(data.val_split.labels.image_ids)[index], data.class_names)
        summary = build_summary(config, run, data, results, history, best_map, len(val_set), t.mean, t.std,
                                started=started, command=command)
        if zs is not None:
            summary["zero_shot"] = zero_shot.evaluate_zero_shot(headline_model, config, data, device, t.mean, t.std)
        run.write_summary(summary)
    dist.barrier()
    return RunResult(run.path, summary, headline_model)


# re-exported for tests and benchmarks/bench_train.py: AUTHORS_PROTOCOL, InterruptFlag, make_criterion, resolve_device
__all__ = ["AUTHORS_PROTOCOL", "InterruptFlag", "RunResult", "TrainingInterrupted", "make_criterion", "make_dataset",
           "make_loader", "make_model", "make_trainer", "normalization", "parameter_groups", "resolve_device", "train"]

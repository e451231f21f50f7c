"""The training loop: what one step needs (:class:`Trainer`), the epoch in progress (:class:`EpochState`),
one step (:func:`train_step`), one epoch (:func:`train_one_epoch`), the per-epoch evaluation
(:func:`evaluate_models`) and Ctrl-C (:class:`InterruptFlag`).

Extension points (for methods that keep per-image state or extra parameters): the loss is computed by
:meth:`Trainer.compute_loss`, which sees the :class:`Batch` (dataset indices, epoch, global step);
:meth:`Trainer.on_epoch_start` / :meth:`Trainer.on_epoch_end` run around each epoch; whatever
:meth:`Trainer.extra_state` returns travels in the checkpoints and comes back through
:meth:`Trainer.load_extra_state`. Parameters outside the model go into the optimizer through
:func:`plbench.engine.train.parameter_groups`' caller.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from plbench.config import TrainConfig
from plbench.datasets import DatasetSplit
from plbench.engine import distributed as dist
from plbench.engine import runtime
from plbench.engine.data import EpochBatchSampler
from plbench.engine.ema import ModelEma
from plbench.engine.evaluate import evaluate_scores, predict
from plbench.engine.schedule import one_cycle_lr
from plbench.progress import progress as progress_bar

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One step's batch of this process, on the device.

    ``inputs``: (B, 3, S, S) normalised images in the runtime's layout, or (B, L, D) features; ``targets``:
    int8 (B, C) in {1, 0, -1}; ``index``: int64 (B,) dataset indices (CPU). B is 0 for the empty batch a
    process trains on under torchrun when its share of the global batch is empty or undecodable.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    index: torch.Tensor
    epoch: int
    step: int  # global optimizer step, from 0

    @property
    def size(self) -> int:
        return int(self.targets.shape[0])


@dataclass
class EpochState:
    """Accumulators of the epoch in progress (saved with a mid-epoch checkpoint)."""

    epoch: int
    batches_done: int = 0  # global batches finished in this epoch
    loss_sum: float = 0.0
    seen: int = 0  # images trained on by this process
    skipped: int = 0  # images of this process's batches that could not be decoded (non-strict loading)
    seconds: float = 0.0
    lr: float = 0.0

    def record(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "train_loss": self.loss_sum / max(self.batches_done, 1), "lr_end": self.lr,
                "train_seconds": self.seconds, "train_images_per_s": self.seen / max(self.seconds, 1e-9),
                "train_images_skipped": self.skipped}


class NonFiniteLoss(Exception):
    def __init__(self, epoch: int, step: int, value: float) -> None:
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(f"loss is {value} at epoch {epoch + 1}, step {step}")


class InterruptFlag:
    """Set by SIGINT while training; the loop finishes its step, saves and stops. A second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.flag = False

    def is_set(self, device: torch.device) -> bool:
        return dist.any_rank(self.flag, device)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum: int, frame: Any) -> None:
            if self.flag:
                raise KeyboardInterrupt
            self.flag = True
            log.warning("Ctrl-C: finishing the current step and saving a checkpoint (press again to abort)")

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass
class Trainer:
    """What one optimizer step needs; built once per run. Subclass it to hook a method in (see the module)."""

    config: TrainConfig
    model: nn.Module  # the module that is stepped (DDP-wrapped under torchrun)
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    ema: ModelEma | None
    device: torch.device
    mean: list[float]
    std: list[float]
    steps_per_epoch: int
    total_steps: int
    loss_scale: float = 1.0  # world size: DDP averages gradients, the loss is a sum over the global batch
    scaler: torch.amp.GradScaler | None = None  # fp16 autocast only
    empty: tuple[torch.Tensor, torch.Tensor] | None = None  # loader (inputs (0, ...), labels (0, C)): torchrun
    interrupt: InterruptFlag = field(default_factory=InterruptFlag)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype (:func:`plbench.engine.runtime.amp_dtype`)."""
        return runtime.amp_dtype(self.config.amp, self.device)

    def compute_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The scalar loss of float32 logits (B, C) on ``batch`` (B > 0)."""
        return self.criterion(logits, batch.targets)

    def empty_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The zero-weight loss of an empty batch (B = 0, torchrun only): every parameter gets a zero gradient.
        A subclass whose loss makes collective calls makes them here too, so this process joins them."""
        return logits.float().sum() * 0.0

    def on_epoch_start(self, epoch: int) -> None:
        self.criterion.set_epoch(epoch)  # losses with a schedule (large-loss rejection)

    def after_backward(self) -> None:
        """Between backward and the optimizer step (a method averages its parameters' gradients here)."""

    def after_training_epoch(self, epoch: int) -> None:
        """After the epoch's last step, before its evaluation and checkpoint, on every process."""

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        """After the epoch's evaluation, on every process; ``record`` is the metrics line (rank 0, else {})."""

    def extra_state(self) -> dict[str, Any]:
        """State beyond model, EMA, optimizer and scaler that a checkpoint must carry (tensors, numbers)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def batch(self, loaded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, epoch: int,
              step: int) -> Batch | None:
        """A loader batch ``(inputs, labels, index)`` on the device; None when it is None (all undecodable),
        except under torchrun, where the empty batch stands in so this process joins the gradient sync."""
        if loaded is None:
            if not dist.is_distributed():
                return None
            if self.empty is None:
                raise RuntimeError("Trainer.empty is needed under torchrun")
            loaded = (*self.empty, torch.zeros(0, dtype=torch.int64))
        inputs, labels, index = loaded
        return Batch(runtime.to_model_input(inputs, self.device, self.mean, self.std),
                     labels.to(self.device, non_blocking=True), index, epoch, step)


def train_step(t: Trainer, batch: Batch, lr: float) -> float | None:
    """One optimizer step on ``batch`` at learning rate ``lr``; returns the loss (None for an empty batch).

    An empty batch (B = 0, under torchrun only) gets a zero-weight loss: its process still runs forward,
    backward (DDP's gradient all-reduce) and the optimizer step, so every process joins every sync and the
    weights stay identical across processes.

    Raises:
        NonFiniteLoss: the loss is NaN or infinite on any process (the weights are not updated with it).
    """
    for group in t.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)  # a method's own parameters may train faster (ROLE: 10x)
    with runtime.autocast(t.device, t.amp_dtype):
        logits = t.model(batch.inputs)
    if batch.size:
        loss = t.compute_loss(logits.float(), batch)
        value = float(loss.detach())  # the step's one sync point: a non-finite loss is refused before the update
    else:
        loss, value = t.empty_loss(logits, batch), 0.0
    if dist.any_rank(not math.isfinite(value), t.device) if dist.is_distributed() else not math.isfinite(value):
        raise NonFiniteLoss(batch.epoch, batch.step, value)
    t.optimizer.zero_grad(set_to_none=True)
    if t.scaler is not None:
        t.scaler.scale(loss * t.loss_scale).backward()
        t.after_backward()
        t.scaler.step(t.optimizer)
        t.scaler.update()
    else:
        (loss * t.loss_scale).backward()
        t.after_backward()
        t.optimizer.step()
    if t.ema is not None:
        t.ema.update(runtime.unwrap(t.model))
    return value if batch.size else None


def train_one_epoch(t: Trainer, loader: DataLoader, state: EpochState, *, progress: bool, desc: str) -> EpochState:
    """Train over ``loader`` (the epoch's remaining batches), updating ``state`` after every step.

    Stops early, after a finished step, when Ctrl-C was pressed (``t.interrupt``).

    Raises:
        NonFiniteLoss: the loss is NaN or infinite (the weights are not updated with it).
    """
    t.model.train()
    start_seconds, t0 = state.seconds, time.perf_counter()
    # the loader yields the sampler's batches in order; their sizes tell how many images were skipped
    sampler = loader.batch_sampler
    sizes = sampler.batch_sizes() if isinstance(sampler, EpochBatchSampler) else None
    bar = progress_bar(loader, desc=desc, enabled=progress, unit="batch")
    for i, loaded in enumerate(bar):
        step = state.epoch * t.steps_per_epoch + state.batches_done
        state.lr = (t.config.lr if t.config.lr_schedule == "constant"
                    else one_cycle_lr(step, t.total_steps, t.config.lr, t.config.warmup_fraction))
        batch = t.batch(loaded, state.epoch, step)  # None: every image undecodable, one process: no step
        got = 0 if batch is None else batch.size
        if sizes is not None:
            state.skipped += sizes[i] - got
        if batch is not None:
            value = train_step(t, batch, state.lr)
            if value is not None:
                state.loss_sum += value
                state.seen += got
        state.batches_done += 1
        state.seconds = start_seconds + time.perf_counter() - t0
        bar.set_postfix(loss=f"{state.loss_sum / state.batches_done:.4f}")
        if t.interrupt.is_set(t.device):
            break
    bar.close()
    return state


def evaluate_models(t: Trainer, val_loader: DataLoader, val_split: DatasetSplit, *, progress: bool,
                    only: str | None = None,
                    desc: str = "validate") -> dict[str, tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]]:
    """Scores and metrics of the plain model and, when kept, the EMA model: name -> (metrics, scores float32
    (N, C), targets int8 (N, C), dataset indices int64 (N,)). Under torchrun every image of the loader's split
    is scored once and rank 0 gets all of them; other ranks get an empty dict.

    Args:
        val_loader: the split's loader (sharded under torchrun: ``dist.shard_dataset``); the validation split's,
            or the selection split's (``TrainConfig.select_split``).
        only: ``plain`` or ``ema``: that model alone (the selection split scores the headline model only).
        desc: the progress bar's label.
    """
    models = {"plain": runtime.unwrap(t.model)}
    if t.ema is not None:
        models["ema"] = t.ema.module
    if only is not None:
        models = {only: models[only]}
    out = {}
    for name, model in models.items():
        scores, targets, index = predict(model, val_loader, t.device, mean=t.mean, std=t.std, amp=t.config.amp,
                                         progress=progress, desc=f"{desc} ({name})")
        scores, targets, index = dist.gather_predictions(scores, targets, index)
        if dist.is_main():
            out[name] = (evaluate_scores(scores, targets, val_split.class_groups), scores, targets, index)
    return out

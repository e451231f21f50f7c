"""The one training code path: every command that trains (train, estimate-prior, sweep, demo) calls :func:`train`.

Read top to bottom: :func:`train` validates every input before it writes anything, opens the run folder
(:class:`plbench.artifacts.runs.RunFolder` owns its files), resumes from ``last.pt``, then per epoch
:func:`train_one_epoch`, :func:`evaluate_models` and ``run.save_epoch``, and finally writes the
predictions and the summary.

Evaluation is honest: the headline number (``val_map``) is the mAP of the *final* epoch, of the model
chosen by a rule fixed before training (the EMA model when the recipe keeps one), on the validation split
with its own labels. The best epoch (``best_val_map``) and the authors' protocol (``authors_map``: the
maximum over epochs of max(plain, EMA)) are recorded too; both are selected on the evaluation split and
therefore optimistic.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from plbench import __version__
from plbench.artifacts.runs import RunFolder
from plbench.choices import Augment, Checkpoint, Head, Mode, Recipe
from plbench.config import TrainConfig
from plbench.datasets import DatasetSplit, load_dataset
from plbench.datasets.images import collate_skip_none
from plbench.engine import distributed as dist
from plbench.engine.data import EpochBatchSampler, ImageLabelDataset, normalize, train_batch_count
from plbench.engine.ema import ModelEma
from plbench.engine.evaluate import evaluate_scores, predict
from plbench.engine.model import build_model
from plbench.engine.provenance import provenance
from plbench.engine.schedule import one_cycle_lr
from plbench.errors import InputError
from plbench.labels import PartialLabels
from plbench.losses import LOSSES, create_loss
from plbench.progress import is_bar_mode, progress_line
from plbench.progress import progress as progress_bar

log = logging.getLogger(__name__)

AUTHORS_PROTOCOL = "selected on the evaluation split (as in the authors' code)"


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


@dataclass
class TrainingData:
    """Every input of a run, loaded and checked before anything is written."""

    train_split: DatasetSplit
    train_labels: PartialLabels  # the labels trained on (simulated or the split's own), possibly truncated
    train_paths: np.ndarray
    simulation: dict[str, Any] | None  # the simulation file's metadata
    val_split: DatasetSplit
    prior: torch.Tensor | None
    tag: str  # label setting shown in reports
    feature_stores: dict[str, Any] = field(default_factory=dict)  # split -> opened FeatureStore (linear runs)

    @property
    def class_names(self) -> list[str]:
        return self.train_split.class_names

    @property
    def fingerprints(self) -> dict[str, str]:
        """A run folder is resumed only for the very same training labels and validation data."""
        return {"train_labels": self.train_labels.fingerprint(), "val_annotations": self.val_split.fingerprint}


# -- inputs ------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(None, "--device", f"expected auto, cpu, cuda or cuda:N, but got {name!r}",
                         "pass one of those") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device", f"{name!r} requested but CUDA is not available", "use --device cpu")
    return device


def check_choices(config: TrainConfig) -> None:
    """Every closed choice of the config is one of its enum's values; mode matches the loss."""
    for option, enum, value in (("--head", Head, config.head), ("--recipe", Recipe, config.recipe),
                                ("augment", Augment, config.augment)):
        try:
            enum.parse(value)
        except ValueError as e:
            raise InputError(None, option, str(e), "pick one of the listed values") from None
    if config.loss not in LOSSES:
        raise InputError(None, "--loss", f"unknown loss {config.loss!r}; available: {', '.join(sorted(LOSSES))}",
                         "pick a loss from `plbench train --help`")
    has_modes = LOSSES[config.loss].has_modes
    if config.mode is None and has_modes:
        raise InputError(None, "--mode", f"loss {config.loss!r} needs a mode", f"pass --mode ({', '.join(Mode)})")
    if config.mode is not None:
        if not has_modes:
            raise InputError(None, "--mode", f"loss {config.loss!r} has no partial-label modes, but got "
                             f"--mode {config.mode}", "leave out --mode for this loss")
        try:
            Mode.parse(config.mode)
        except ValueError as e:
            raise InputError(None, "--mode", str(e), "pick one of the listed modes") from None
    if config.ema_decay < 0 or config.ema_decay >= 1:
        raise InputError(None, "ema_decay", f"expected 0 (no EMA) or a value in (0, 1), but got {config.ema_decay}",
                         "use e.g. 0.9997")


def labels_tag(config: TrainConfig, meta: dict[str, Any] | None, split: DatasetSplit) -> str:
    """Short name of the label setting: ``full``, ``natural`` or e.g. ``fpc1000``/``rps0.5``."""
    if config.tag:
        return config.tag
    if meta is None:
        if config.simulation is not None:
            return Path(config.simulation).stem
        return "full" if split.labels.annotated_fraction() == 1.0 else "natural"
    from plbench.artifacts.simulations import format_param

    return f"{meta['scheme']}{format_param(meta['param'])}"


def default_run_name(config: TrainConfig, tag: str) -> str:
    backbone = config.backbone.replace("/", "_")
    loss = "" if config.loss == "pasl" else f"-{config.loss}"
    mode = f"-{config.mode}" if config.mode is not None else ""
    linear = "-linear" if config.features is not None else ""
    return f"{config.dataset}-{tag}{mode}{loss}-{backbone}-{config.head}{linear}-s{config.seed}"


def load_train_labels(config: TrainConfig, split: DatasetSplit) -> tuple[PartialLabels, dict[str, Any] | None]:
    """The training labels: the split's own, or a simulation file checked against the split."""
    if config.simulation is None:
        return split.labels, None
    from plbench.artifacts.simulations import load_simulation

    labels, meta = load_simulation(
        config.simulation, expected_fingerprint=split.fingerprint, expected_class_names=split.class_names
    )
    if not np.array_equal(labels.image_ids.astype(str), split.labels.image_ids.astype(str)):
        raise InputError(
            config.simulation, "image_ids", "the simulation's images differ from the loaded split's "
            f"({labels.num_images} vs {split.labels.num_images} images)",
            "re-run `plbench simulate` on this dataset split (were image files added or removed?)",
        )
    return labels, meta


def load_training_data(config: TrainConfig) -> tuple[DatasetSplit, PartialLabels, np.ndarray, dict[str, Any] | None]:
    """The training split, its (possibly simulated and truncated) labels, image paths, simulation metadata."""
    split = load_dataset(config.dataset, config.data_root, config.train_split, **config.dataset_options)
    labels, meta = load_train_labels(config, split)
    paths = split.image_paths
    if config.max_train_images is not None:
        keep = np.arange(min(config.max_train_images, labels.num_images))
        labels, paths = labels.subset(keep), paths[keep]
    return split, labels, paths, meta


def load_prior(config: TrainConfig, class_names: list[str]) -> torch.Tensor | None:
    if config.prior is None:
        return None
    from plbench.priors import read_prior_csv

    return torch.as_tensor(read_prior_csv(config.prior, class_names), dtype=torch.float32)


def load_inputs(config: TrainConfig) -> TrainingData:
    """Load and check the datasets, simulation and prior of ``config`` (nothing is written)."""
    train_split, train_labels, train_paths, sim_meta = load_training_data(config)
    val_split = load_dataset(config.dataset, config.data_root, config.val_split, **config.dataset_options)
    if val_split.class_names != train_split.class_names:
        raise InputError(config.data_root, "categories", "train and val splits have different class lists",
                         "use splits of the same dataset release")
    prior = load_prior(config, train_split.class_names)
    if config.mode == Mode.SELECTIVE and prior is None:
        log.warning("selective mode without --prior: only the likelihood (top-k) rule selects negatives")
    tag = labels_tag(config, sim_meta, train_split)
    return TrainingData(train_split, train_labels, train_paths, sim_meta, val_split, prior, tag)


def make_criterion(config: TrainConfig, prior: torch.Tensor | None) -> nn.Module:
    kw: dict[str, Any] = dict(config.loss_options)
    if LOSSES[config.loss].has_modes:
        kw.update(mode=config.mode, prior=prior)
    elif prior is not None:
        raise InputError(config.prior, "--prior", f"loss {config.loss!r} does not use a class prior",
                         "leave out --prior, or use --loss pasl --mode selective")
    try:
        return create_loss(config.loss, **kw)
    except ValueError as e:
        raise InputError(None, "--loss-option", str(e), "pick options from the loss's documentation") from None


def normalization(config: TrainConfig) -> tuple[list[float], list[float]]:
    """The backbone's input mean and std (timm's pretrained config of the model; 0.5/0.5 for ``tf_`` models)."""
    from plbench.engine.pretrained import resolve_normalization

    mean, std = resolve_normalization(config.backbone)
    return [float(m) for m in mean], [float(s) for s in std]


# -- data --------------------------------------------------------------------------------------------
def make_dataset(config: TrainConfig, split_name: str, paths: np.ndarray, labels: PartialLabels,
                 *, train: bool, fingerprint: str | None = None, store: Any = None) -> Dataset:
    """The torch dataset of one split: images (from the pre-resized cache when ``config.cache_dir`` is set),
    or cached backbone features when ``config.features`` is set."""
    if config.features is not None:
        from plbench.engine.features import feature_inputs

        return feature_inputs(config, split_name, labels, train=train, fingerprint=fingerprint, store=store)
    from plbench.datasets.images import ImageCache, cache_folder

    cache = None
    if config.cache_dir is not None:
        folder = cache_folder(config.cache_dir, config.dataset, split_name, config.image_size)
        if not folder.is_dir():
            raise InputError(folder, "--cache-dir", "no image cache for this split and size",
                             f"run `plbench data cache --dataset {config.dataset} --split {split_name} "
                             f"--size {config.image_size}` first")
        cache = ImageCache.open(folder)  # ImageLabelDataset checks that its paths are a prefix of the cache's
    strict = bool(config.dataset_options.get("strict", False))
    return ImageLabelDataset(paths, labels, config.image_size, train=train, augment=config.augment,
                             seed=config.seed, preload=config.preload, cache=cache, strict=strict)


def make_loader(dataset: Dataset, config: TrainConfig, batches: Sampler | list[list[int]] | None = None,
                device: torch.device | None = None) -> DataLoader:
    """A loader over ``batches`` (a batch sampler), or over the whole dataset in order (evaluation).

    Batches stay uint8 until they reach the device; on CUDA they come from pinned memory, and worker
    processes persist across epochs.
    """
    pin = device is not None and device.type == "cuda"
    common = dict(num_workers=config.workers, collate_fn=collate_skip_none, pin_memory=pin,
                  persistent_workers=config.workers > 0)
    if batches is not None:
        return DataLoader(dataset, batch_sampler=batches, **common)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=False, **common)


# -- model -------------------------------------------------------------------------------------------
def make_model(config: TrainConfig, data: TrainingData, device: torch.device) -> nn.Module:
    if config.features is not None:
        from plbench.engine.features import build_head_model, open_store

        # both stores opened once and checked against the data before the run folder is written; the
        # head and the datasets reuse them
        for name, split in ((config.train_split, data.train_split), (config.val_split, data.val_split)):
            if name not in data.feature_stores:
                data.feature_stores[name] = open_store(config, name)
            data.feature_stores[name].check(split=name, fingerprint=split.fingerprint, image_ids=split.labels.image_ids)
        return build_head_model(config, len(data.class_names), store=data.feature_stores[config.train_split]).to(device)
    return build_model(
        config.backbone, config.head, len(data.class_names), pretrained=config.pretrained,
        checkpoint=config.checkpoint, head_options=config.head_options,
    ).to(device)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: biases and normalisation parameters (1-D) are not decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# -- the loop ----------------------------------------------------------------------------------------
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


@dataclass
class Trainer:
    """What one optimizer step needs; built once per run."""

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
    interrupt: "InterruptFlag" = field(default_factory=lambda: InterruptFlag())

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype: None (float32), bf16, or fp16 where the GPU has no bf16."""
        return autocast_dtype(self.config, self.device)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class NonFiniteLoss(Exception):
    def __init__(self, epoch: int, step: int, value: float) -> None:
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(f"loss is {value} at epoch {epoch + 1}, step {step}")


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
    for i, batch in enumerate(bar):
        step = state.epoch * t.steps_per_epoch + state.batches_done
        state.lr = one_cycle_lr(step, t.total_steps, t.config.lr, t.config.warmup_fraction)
        got = 0 if batch is None else int(batch[2].shape[0])
        if sizes is not None:
            state.skipped += sizes[i] - got
        if batch is not None:  # None: every image of the batch was undecodable (non-strict loading)
            inputs, labels, _ = batch
            for group in t.optimizer.param_groups:
                group["lr"] = state.lr
            x = to_model_input(inputs, t.device, t.mean, t.std)
            labels = labels.to(t.device, non_blocking=True)
            dtype = t.amp_dtype
            with torch.autocast(t.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = t.model(x)
            loss = t.criterion(logits.float(), labels)
            value = float(loss.detach())  # a sync point, needed to refuse a non-finite loss before the step
            if not np.isfinite(value):
                raise NonFiniteLoss(state.epoch, step, value)
            t.optimizer.zero_grad(set_to_none=True)
            if t.scaler is not None:
                t.scaler.scale(loss * t.loss_scale).backward()
                t.scaler.step(t.optimizer)
                t.scaler.update()
            else:
                (loss * t.loss_scale).backward()
                t.optimizer.step()
            if t.ema is not None:
                t.ema.update(unwrap(t.model))
            state.loss_sum += value
            state.seen += int(x.shape[0])
        state.batches_done += 1
        state.seconds = start_seconds + time.perf_counter() - t0
        bar.set_postfix(loss=f"{state.loss_sum / state.batches_done:.4f}")
        if t.interrupt.is_set(t.device):
            break
    bar.close()
    return state


def to_model_input(inputs: torch.Tensor, device: torch.device, mean: list[float], std: list[float]) -> torch.Tensor:
    """A loader batch on the device, normalised; image batches in channels-last layout on CUDA (faster
    convolutions with autocast)."""
    x = normalize(inputs.to(device, non_blocking=True), mean, std)
    if device.type == "cuda" and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel and torch.compile wrappers (or the model itself)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return getattr(model, "_orig_mod", model)


def evaluate_models(t: Trainer, val_loader: DataLoader, val_split: DatasetSplit, *,
                    progress: bool) -> dict[str, tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]]:
    """Scores and metrics of the plain model and, when kept, the EMA model: name -> (metrics, scores,
    targets, indices). Under torchrun every validation image is scored once and rank 0 gets all of them;
    other ranks get an empty dict."""
    models = {"plain": unwrap(t.model)}
    if t.ema is not None:
        models["ema"] = t.ema.module
    out = {}
    for name, model in models.items():
        scores, targets, index = predict(model, val_loader, t.device, mean=t.mean, std=t.std, amp=t.config.amp,
                                         progress=progress, desc=f"validate ({name})")
        scores, targets, index = dist.gather_predictions(scores, targets, index)
        if dist.is_main():
            out[name] = (evaluate_scores(scores, targets, val_split.class_groups), scores, targets, index)
    return out


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


# -- checkpoints -------------------------------------------------------------------------------------
def checkpoint_state(t: Trainer, data: TrainingData, epoch_state: EpochState, best_map: float,
                     history: list[dict[str, Any]], *, finished_epoch: bool) -> dict[str, Any]:
    """Everything needed to resume exactly: weights, EMA, optimizer, progress, RNG, config, data identity."""
    return {
        "model": unwrap(t.model).state_dict(),
        "ema": None if t.ema is None else t.ema.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scaler": None if t.scaler is None else t.scaler.state_dict(),
        "epoch": epoch_state.epoch if finished_epoch else epoch_state.epoch - 1,  # last finished epoch
        "partial": None if finished_epoch else {**epoch_state.__dict__, "torch_rng": torch.get_rng_state()},
        "best_map": best_map,
        "history": history,
        "config": t.config.to_dict(),
        "class_names": data.class_names,
        "preprocessing": {"image_size": t.config.image_size, "mean": t.mean, "std": t.std},
        "plbench_version": __version__,
        "data_fingerprints": data.fingerprints,
    }


def restore(t: Trainer, run: RunFolder, data: TrainingData, which: str) -> tuple[int, float, EpochState | None,
                                                                                   list[dict[str, Any]]]:
    """Load ``which`` checkpoint into the trainer; returns (next epoch, best mAP, partial epoch, history)."""
    state = run.load_checkpoint(which, map_location=t.device)
    if state.get("data_fingerprints") != data.fingerprints:
        raise InputError(
            run.path, "data_fingerprints", "the training labels or validation data differ from those this "
            "run was trained on (regenerated data, another simulation file, or missing images)",
            "pass another --run-name or --out, or delete the run folder to train again",
        )
    try:
        unwrap(t.model).load_state_dict(state["model"])
        if t.ema is not None and state.get("ema") is not None:
            t.ema.load_state_dict(state["ema"])
        t.optimizer.load_state_dict(state["optimizer"])
        if t.scaler is not None and state.get("scaler") is not None:
            t.scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise InputError(run.file(f"{which}.pt"), "model", f"the checkpoint does not fit this model ({e})",
                         "delete the run folder to train again") from None
    partial = state.get("partial")
    epoch_state = None
    if partial is not None:
        rng = partial.pop("torch_rng")
        epoch_state = EpochState(**partial)
        torch.set_rng_state(rng.cpu() if isinstance(rng, torch.Tensor) else rng)
    history = state.get("history") or [h for h in run.metrics() if h["epoch"] <= state["epoch"]]
    return state["epoch"] + 1, state["best_map"], epoch_state, history


# -- the run -----------------------------------------------------------------------------------------
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
        InputError: bad dataset, simulation, prior, option or checkpoint; a run folder that holds a
            different configuration or is in use; a NaN/inf loss (the last good checkpoint is kept).
        TrainingInterrupted: Ctrl-C; a checkpoint of the finished step was saved.
    """
    started = time.time()
    check_choices(config)
    Checkpoint.parse(resume_from)
    device = resolve_device(config.device) if not dist.is_distributed() else dist.device_for_rank(config.device)
    with _numerics(device, linear=config.features is not None):
        return _train(config, device, progress=progress, on_epoch=on_epoch, resume_from=resume_from,
                      command=command, started=started)


@contextlib.contextmanager
def _numerics(device: torch.device, *, linear: bool = False) -> Iterator[None]:
    """Deterministic kernels on the CPU (same seed, same weights); cuDNN autotuning on GPUs; one CPU thread
    for head-only (linear) runs, whose small matrix products run 5-8x slower when threads wait for each
    other on a busy machine. The caller's settings are restored afterwards."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        if linear:
            torch.set_num_threads(1)
    else:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.set_num_threads(threads)


def _train(config: TrainConfig, device: torch.device, *, progress: bool,
           on_epoch: Callable[[dict[str, Any]], None] | None, resume_from: str, command: str | None,
           started: float) -> RunResult:
    torch.manual_seed(config.seed)
    data = load_inputs(config)
    criterion = make_criterion(config, data.prior).to(device)
    model = make_model(config, data, device)
    mean, std = normalization(config)
    run = RunFolder(Path(config.out_dir) / (config.run_name or default_run_name(config, data.tag)))

    if dist.is_main():
        run.lock()
    try:
        if dist.is_main():
            run.open(config.to_dict())  # the first write, after every input has been checked
        dist.barrier()
        return _train_in(run, config, data, model, criterion, device, mean, std, progress=progress,
                         on_epoch=on_epoch, resume_from=resume_from, command=command, started=started)
    finally:
        if dist.is_main():
            run.unlock()


def _train_in(run: RunFolder, config: TrainConfig, data: TrainingData, model: nn.Module, criterion: nn.Module,
              device: torch.device, mean: list[float], std: list[float], *, progress: bool,
              on_epoch: Callable[[dict[str, Any]], None] | None, resume_from: str, command: str | None,
              started: float) -> RunResult:
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEma(model, config.ema_decay) if config.ema_decay > 0 else None
    stepped = dist.wrap_model(model, device)
    if config.compile:
        stepped = torch.compile(stepped)
    # fused Adam: one kernel for all parameters on CUDA
    optimizer = torch.optim.Adam(parameter_groups(model, config.weight_decay), lr=config.lr,
                                 fused=device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype(config, device) == torch.float16 else None
    n_train = len(data.train_paths)
    _, steps_per_epoch = train_batch_count(n_train, config.batch_size)
    sum_loss = getattr(criterion, "reduction", "mean") == "sum"
    t = Trainer(config, stepped, criterion, optimizer, ema, device, mean, std, steps_per_epoch,
                steps_per_epoch * config.epochs, loss_scale=float(dist.world_size()) if sum_loss else 1.0,
                scaler=scaler)
    headline = config.headline_model

    start_epoch, best_map, partial, history = 0, float("-inf"), None, []
    if run.has_checkpoint(resume_from):
        start_epoch, best_map, partial, history = restore(t, run, data, resume_from)
        if start_epoch >= config.epochs and run.is_finished:
            return RunResult(run.path, run.summary(), ema.module if ema is not None else model)
        log.info("resuming %s at epoch %d", run.path, (partial.epoch if partial else start_epoch) + 1)

    # images are decoded (or their cache opened) only once a finished run has been ruled out
    train_set = make_dataset(config, config.train_split, data.train_paths, data.train_labels, train=True,
                             fingerprint=data.train_split.fingerprint,
                             store=data.feature_stores.get(config.train_split))
    val_set = make_dataset(config, config.val_split, data.val_split.image_paths, data.val_split.labels, train=False,
                           fingerprint=data.val_split.fingerprint, store=data.feature_stores.get(config.val_split))
    val_loader = make_loader(dist.shard_dataset(val_set), config, device=device)
    sampler = EpochBatchSampler(n_train, config.batch_size, config.seed, rank=dist.rank(),
                                world_size=dist.world_size(), with_epoch=isinstance(train_set, ImageLabelDataset))
    train_loader = make_loader(train_set, config, sampler, device)
    results: dict[str, Any] | None = None  # {} on ranks other than 0
    # bars on a terminal; elsewhere (CI, Slurm, a log file) one line per epoch, written after validation
    bars = progress and is_bar_mode()
    with t.interrupt.installed():
        for epoch in range(partial.epoch if partial else start_epoch, config.epochs):
            state = partial if partial is not None and partial.epoch == epoch else EpochState(epoch)
            if state.batches_done == 0:
                torch.manual_seed(config.seed * 100_003 + epoch)  # dropout etc.: depends on (seed, epoch) only
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            criterion.set_epoch(epoch)  # losses with a schedule (large-loss rejection)
            sampler.set_epoch(epoch, start_batch=state.batches_done)
            try:
                train_one_epoch(t, train_loader, state, progress=bars,
                                desc=f"{run.name} epoch {epoch + 1}/{config.epochs}")
            except NonFiniteLoss as e:
                raise InputError(run.path, "loss", f"the loss became {e.value} at epoch {e.epoch + 1}, step "
                                 f"{e.step}; training stopped and the last good checkpoint (last.pt) is kept",
                                 "lower --lr or check the labels; re-running resumes from last.pt") from None
            if state.batches_done < steps_per_epoch:  # Ctrl-C inside the epoch
                if dist.is_main():
                    run.save_checkpoint("last", checkpoint_state(t, data, state, best_map, history,
                                                                 finished_epoch=False))
                raise TrainingInterrupted(run.path, epoch, epoch * steps_per_epoch + state.batches_done)
            results = evaluate_models(t, val_loader, data.val_split, progress=bars)
            if dist.is_main():
                record = epoch_record(state, results, headline)
                progress_line(epoch_line(run.name, record, config.epochs), enabled=progress)
                history.append(record)
                is_best = record["val_map"] > best_map
                best_map = max(best_map, record["val_map"])
                run.save_epoch(checkpoint_state(t, data, state, best_map, history, finished_epoch=True), record,
                               is_best=is_best)
                if on_epoch is not None:
                    on_epoch(record)
            dist.barrier()
            if t.interrupt.flag:
                raise TrainingInterrupted(run.path, epoch, (epoch + 1) * steps_per_epoch)

    if results is None:  # resumed after the last epoch but before the summary was written
        results = evaluate_models(t, val_loader, data.val_split, progress=bars)
    headline_model = ema.module if (ema is not None and headline == "ema") else model
    summary: dict[str, Any] = {}
    if dist.is_main():
        ev, scores, targets, index = results[headline]
        run.write_predictions(scores, targets, np.asarray(data.val_split.image_paths, dtype=str)[index],
                              np.asarray(data.val_split.labels.image_ids)[index], data.class_names)
        summary = build_summary(config, run, data, results, history, best_map, len(val_set), mean, std,
                                started=started, command=command)
        run.write_summary(summary)
    dist.barrier()
    return RunResult(run.path, summary, headline_model)


def epoch_line(run_name: str, record: dict[str, Any], epochs: int) -> str:
    """The one status line of a finished epoch."""
    ema = "" if record.get("val_map_ema") is None else (
        f" (plain {record['val_map_plain']:.2f}, EMA {record['val_map_ema']:.2f})")
    return (f"{run_name} epoch {record['epoch'] + 1}/{epochs}: loss {record['train_loss']:.4f}, val mAP "
            f"{record['val_map']:.2f}{ema}, {record['train_seconds']:.1f} s, {record['train_images_per_s']:.0f} img/s")


def epoch_record(state: EpochState, results: dict[str, Any], headline: str) -> dict[str, Any]:
    """The metrics.jsonl line of an epoch: training figures, headline mAP and both models' mAP."""
    ev = results[headline][0]
    return {
        **state.record(), "val_map": ev["map"],
        "val_map_plain": results["plain"][0]["map"],
        "val_map_ema": results["ema"][0]["map"] if "ema" in results else None,
        **{k: v for k, v in ev.items() if k not in ("map", "ap_per_class")},
    }


def true_frequency(split: DatasetSplit) -> list[float] | None:
    """Positives / images per class in a split's own labels, when they are complete (else None)."""
    if split.labels.annotated_fraction() < 1.0:
        return None
    return (split.labels.counts().positives / max(split.labels.num_images, 1)).astype(float).tolist()


def build_summary(config: TrainConfig, run: RunFolder, data: TrainingData, results: dict[str, Any],
                  history: list[dict[str, Any]], best_map: float, val_total: int, mean: list[float],
                  std: list[float], *, started: float, command: str | None) -> dict[str, Any]:
    headline = config.headline_model
    ev, _, _, index = results[headline]
    counts = data.train_labels.counts()
    val_counts = data.val_split.labels.counts()
    authors = max(max(h["val_map_plain"], h["val_map_ema"] if h.get("val_map_ema") is not None else float("-inf"))
                  for h in history) if history else float("nan")
    return {
        "run": run.name, "dataset": config.dataset, "labels": data.tag, "mode": config.mode, "loss": config.loss,
        "protocol": config.protocol, "recipe": config.recipe, "backbone": config.backbone, "head": config.head,
        "pretrained": config.pretrained, "image_size": config.image_size, "epochs": config.epochs,
        "seed": config.seed, "train_images": data.train_labels.num_images,
        "val_images": int(len(index)), "val_images_skipped": val_total - int(len(index)),
        "train_images_skipped": max((h.get("train_images_skipped", 0) for h in history), default=0),
        "num_classes": len(data.class_names),
        "train_annotated_fraction": data.train_labels.annotated_fraction(),
        "train_positives": int(counts.positives.sum()), "train_negatives": int(counts.negatives.sum()),
        "val_map": ev["map"], "headline_model": headline,
        "evaluation_protocol": f"final epoch, {'EMA' if headline == 'ema' else 'plain'} model (fixed before training)",
        "val_map_plain": results["plain"][0]["map"],
        "val_map_ema": results["ema"][0]["map"] if "ema" in results else None,
        "best_val_map": best_map, "authors_map": authors, "authors_map_protocol": AUTHORS_PROTOCOL,
        "train_seconds": sum(h["train_seconds"] for h in history), "wall_seconds": time.time() - started,
        "class_names": data.class_names,
        "train_positives_per_class": counts.positives.astype(int).tolist(),
        "val_positives_per_class": val_counts.positives.astype(int).tolist(),
        "train_true_frequency_per_class": true_frequency(data.train_split),
        "prior_path": config.prior, "preprocessing": {"image_size": config.image_size, "mean": mean, "std": std},
        "plbench_version": __version__, "data_fingerprints": data.fingerprints,
        **{k: v for k, v in ev.items() if k != "map"},
        "simulation": data.simulation and {k: data.simulation[k] for k in ("scheme", "param", "seed")
                                           if k in data.simulation},
        "provenance": provenance(command, started),
    }

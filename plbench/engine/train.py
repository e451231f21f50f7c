"""The one training code path: every CLI command that trains (train, estimate-prior, demo) calls :func:`train`.

A run folder holds ``config.json``, ``metrics.jsonl`` (a line per epoch), ``last.pt`` (model, optimizer,
epoch, best mAP, config; enough to resume), ``best.pt``, ``predictions.npz`` (validation scores of the
final epoch) and ``summary.json``. Every write is atomic. Re-running the same config resumes from
``last.pt``; a finished run is returned as is.

Evaluation is honest: the headline number is the mAP of the *final* epoch on the validation split with
its own labels (never simulated); the best epoch's mAP is recorded too, but it is selected on the
validation set and therefore optimistic.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from plbench import __version__
from plbench.artifacts.atomic import atomic_path, write_json, write_text
from plbench.config import TrainConfig
from plbench.datasets import DatasetSplit, load_dataset
from plbench.engine.data import ImageLabelDataset, epoch_order
from plbench.engine.model import MultiLabelClassifier, build_model
from plbench.engine.schedule import one_cycle_lr
from plbench.errors import InputError
from plbench.labels import PartialLabels

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What :func:`train` returns."""

    run_dir: Path
    summary: dict[str, Any]
    model: MultiLabelClassifier


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


def labels_tag(config: TrainConfig, meta: dict[str, Any] | None) -> str:
    """Short name of the label setting: ``full``, ``natural`` or e.g. ``fpc1000``/``rps0.5``."""
    if config.tag:
        return config.tag
    if meta is None:
        return "full" if config.simulation is None else Path(config.simulation).stem
    from plbench.artifacts.simulations import format_param

    return f"{meta['scheme']}{format_param(meta['param'])}"


def default_run_name(config: TrainConfig, tag: str) -> str:
    backbone = config.backbone.replace("/", "_")
    loss = "" if config.loss == "pasl" else f"-{config.loss}"
    return f"{config.dataset}-{tag}-{config.mode}{loss}-{backbone}-{config.head}-s{config.seed}"


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


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: biases and normalisation parameters (1-D) are not decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False,
            progress: bool = False, desc: str = "eval") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigmoid scores float32 (N', C), labels int8 (N', C) and dataset indices int64 (N',) over a loader.

    N' < N when undecodable images were skipped (non-strict loading).
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    scores, targets, indices = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        if batch is None:  # every image of the batch was undecodable (non-strict loading)
            continue
        images, labels, index = batch
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = model(images.to(device, non_blocking=True))
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
        targets.append(labels.numpy())
        indices.append(index.numpy())
    model.train(was_training)
    n_cls = loader.dataset.labels.num_classes  # type: ignore[attr-defined]
    if not scores:
        return np.zeros((0, n_cls), np.float32), np.zeros((0, n_cls), np.int8), np.zeros(0, np.int64)
    return np.concatenate(scores), np.concatenate(targets), np.concatenate(indices).astype(np.int64)


def make_dataset(config: TrainConfig, split_name: str, paths: np.ndarray, labels: PartialLabels,
                 *, train: bool) -> ImageLabelDataset:
    """The torch dataset of one split, reading from the pre-resized cache when ``config.cache_dir`` is set."""
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
    return ImageLabelDataset(paths, labels, config.image_size, train=train, seed=config.seed,
                             preload=config.preload, cache=cache, strict=strict)


def make_loader(dataset: ImageLabelDataset, config: TrainConfig, order: list[int] | None = None) -> DataLoader:
    from plbench.datasets.images import collate_skip_none

    return DataLoader(dataset, batch_size=config.batch_size, sampler=order, shuffle=False,
                      num_workers=config.workers, collate_fn=collate_skip_none)


def evaluate_scores(scores: np.ndarray, targets: np.ndarray, class_groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """mAP (percent), per-class AP (percent, None when skipped), CF1/OF1 etc., and mAP per class group."""
    from plbench.metrics import f1_scores, mean_average_precision

    result = mean_average_precision(scores, targets)
    ap = result.ap
    out: dict[str, Any] = {
        "map": float(result),
        "classes_evaluated": result.num_evaluated,
        "classes_skipped": result.num_skipped,
        "ap_per_class": [None if np.isnan(a) else float(a * 100) for a in ap],
    }
    out.update({k: float(v) for k, v in f1_scores(scores, targets, threshold=0.5)._asdict().items()})
    for group, idx in class_groups.items():
        g = ap[np.asarray(idx, dtype=np.int64)]
        g = g[~np.isnan(g)]
        out[f"map_{group}"] = float(g.mean() * 100) if g.size else float("nan")
    return out


def _plain(ids: np.ndarray) -> np.ndarray:
    """Object arrays (string ids) as unicode, so the .npz loads with allow_pickle=False."""
    return ids.astype(str) if ids.dtype == object else ids


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    # a resumed run rewrites the epochs it redoes, so metrics.jsonl never holds an epoch twice
    lines = [ln for ln in lines if json.loads(ln)["epoch"] < record["epoch"]]
    lines.append(json.dumps(record))
    write_text(path, "\n".join(lines) + "\n")


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train (or resume, or return) the run that ``config`` describes.

    Raises:
        InputError: bad dataset, simulation, prior or checkpoint files, or a run folder that holds a
            different configuration.
    """
    from tqdm.auto import tqdm

    from plbench.losses import create_loss

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    train_split, train_labels, train_paths, sim_meta = load_training_data(config)
    val_split = load_dataset(config.dataset, config.data_root, config.val_split, **config.dataset_options)
    if val_split.class_names != train_split.class_names:
        raise InputError(config.data_root, "categories", "train and val splits have different class lists",
                         "use splits of the same dataset release")

    tag = labels_tag(config, sim_meta)
    run_dir = Path(config.out_dir) / (config.run_name or default_run_name(config, tag))
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        if old != json.loads(json.dumps(config.to_dict())):
            raise InputError(
                run_dir, "config.json", "this run folder holds a run with a different configuration",
                "pass another --run-name, or delete the folder to start over",
            )
    write_json(config_path, config.to_dict())

    class_names = train_split.class_names
    model = build_model(
        config.backbone, config.head, len(class_names), pretrained=config.pretrained,
        checkpoint=config.checkpoint, head_options=config.head_options,
    ).to(device)
    try:
        criterion = create_loss(config.loss, mode=config.mode, prior=load_prior(config, class_names),
                                **config.loss_options)
    except ValueError as e:
        raise InputError(None, "--loss/--mode", str(e), "pick a loss and mode from `plbench train --help`") from None
    criterion = criterion.to(device)
    optimizer = torch.optim.Adam(parameter_groups(model, config.weight_decay), lr=config.lr)

    start_epoch, best_map = 0, float("-inf")
    last_path = run_dir / "last.pt"
    summary_path = run_dir / "summary.json"
    # a run folder is resumed (or returned) only for the very same training labels and validation data
    data_fingerprints = {"train_labels": train_labels.fingerprint(), "val_annotations": val_split.fingerprint}
    if last_path.exists():
        state = torch.load(last_path, map_location=device, weights_only=False)
        if state.get("data_fingerprints") != data_fingerprints:
            raise InputError(
                run_dir, "data_fingerprints", "the training labels or validation data differ from those this "
                "run was trained on (regenerated data, another simulation file, or missing images)",
                "pass another --run-name or --out, or delete the run folder to train again",
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_map = state["epoch"] + 1, state["best_map"]
        if start_epoch >= config.epochs and summary_path.exists():
            return RunResult(run_dir, json.loads(summary_path.read_text()), model)
        log.info("resuming %s at epoch %d", run_dir, start_epoch + 1)

    # images are decoded (or their cache opened) only once a finished run has been ruled out
    train_set = make_dataset(config, config.train_split, train_paths, train_labels, train=True)
    val_set = make_dataset(config, config.val_split, val_split.image_paths, val_split.labels, train=False)
    val_loader = make_loader(val_set, config)
    n_train = len(train_set) - 1 if len(train_set) % config.batch_size == 1 and len(train_set) > 1 else len(train_set)
    steps_per_epoch = max(1, -(-n_train // config.batch_size))
    total_steps = steps_per_epoch * config.epochs

    history: list[dict[str, Any]] = []
    metrics_path = run_dir / "metrics.jsonl"
    if metrics_path.exists():
        history = [json.loads(ln) for ln in metrics_path.read_text().splitlines() if ln.strip()]
        history = [h for h in history if h["epoch"] < start_epoch]
    scores = targets = val_index = None
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout etc.: depends on (seed, epoch) only
        train_set.set_epoch(epoch)
        criterion.set_epoch(epoch)  # losses with a schedule (large-loss rejection)
        # n_train drops a last batch of one image: BatchNorm cannot train on it
        order = epoch_order(len(train_set), config.seed, epoch)[:n_train].tolist()
        loader = make_loader(train_set, config, order)
        model.train()
        t0, seen, batches, loss_sum = time.perf_counter(), 0, 0, 0.0
        bar = tqdm(loader, desc=f"{run_dir.name} epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=not progress)
        lr = one_cycle_lr(epoch * steps_per_epoch, total_steps, config.lr, config.warmup_fraction)
        for i, batch in enumerate(bar):
            if batch is None:  # every image of the batch was undecodable (non-strict loading)
                continue
            images, labels, _ = batch
            step = epoch * steps_per_epoch + i
            lr = one_cycle_lr(step, total_steps, config.lr, config.warmup_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp and device.type == "cuda"):
                logits = model(images)
            loss = criterion(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            seen += images.shape[0]
            batches += 1
            bar.set_postfix(loss=f"{loss_sum / batches:.4f}")
        train_time = time.perf_counter() - t0
        scores, targets, val_index = predict(model, val_loader, device, config.amp, progress, desc="validate")
        ev = evaluate_scores(scores, targets, val_split.class_groups)
        record = {
            "epoch": epoch, "train_loss": loss_sum / max(batches, 1), "lr_end": lr,
            "train_seconds": train_time, "train_images_per_s": seen / max(train_time, 1e-9), "val_map": ev["map"],
            **{k: v for k, v in ev.items() if k not in ("map", "ap_per_class")},
        }
        history.append(record)
        _append_jsonl(metrics_path, record)
        is_best = ev["map"] > best_map
        best_map = max(best_map, ev["map"])
        state = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
            "best_map": best_map, "config": config.to_dict(), "plbench_version": __version__,
            "data_fingerprints": data_fingerprints,
        }
        if is_best:  # best first: last.pt records best_map, so it must never be ahead of best.pt
            _save_checkpoint(run_dir / "best.pt", state)
        _save_checkpoint(last_path, state)
        if on_epoch is not None:
            on_epoch(record)

    if scores is None:  # resumed after the last epoch but before the summary was written
        scores, targets, val_index = predict(model, val_loader, device, config.amp, progress, desc="validate")
    ev = evaluate_scores(scores, targets, val_split.class_groups)
    with atomic_path(run_dir / "predictions.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f, scores=scores.astype(np.float32), targets=targets.astype(np.int8),
                image_paths=np.asarray(val_split.image_paths, dtype=str)[val_index],
                image_ids=_plain(np.asarray(val_split.labels.image_ids)[val_index]), class_names=np.asarray(class_names, dtype=str),
            )
    counts = train_labels.counts()
    summary = {
        "run": run_dir.name, "dataset": config.dataset, "labels": tag, "mode": config.mode, "loss": config.loss,
        "backbone": config.backbone, "head": config.head, "image_size": config.image_size,
        "epochs": config.epochs, "seed": config.seed, "train_images": train_labels.num_images,
        "val_images": int(len(val_index)), "val_images_skipped": len(val_set) - int(len(val_index)), "num_classes": len(class_names),
        "train_annotated_fraction": train_labels.annotated_fraction(),
        "train_positives": int(counts.positives.sum()), "train_negatives": int(counts.negatives.sum()),
        "val_map": ev["map"], "best_val_map": best_map,
        "train_seconds": sum(h["train_seconds"] for h in history),
        "class_names": class_names, "plbench_version": __version__, "data_fingerprints": data_fingerprints,
        **{k: v for k, v in ev.items() if k != "map"},
        "simulation": sim_meta and {k: sim_meta[k] for k in ("scheme", "param", "seed") if k in sim_meta},
    }
    write_json(summary_path, summary)
    return RunResult(run_dir, summary, model)

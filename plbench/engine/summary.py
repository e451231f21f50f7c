"""What a run reports: the metrics line of each epoch (:func:`epoch_record`), its status line
(:func:`epoch_line`) and the final ``summary.json`` (:func:`build_summary`).

Evaluation is honest: the headline number (``val_map``) is the mAP of the *final* epoch, of the model
chosen by a rule fixed before training (the EMA model when the recipe keeps one), on the validation split
with its own labels. The best epoch (``best_val_map``) and the authors' protocol (``authors_map``: the
maximum over epochs of max(plain, EMA)) are recorded too; both are selected on the evaluation split and
therefore optimistic. A run with a selection split (``TrainConfig.select_split``, the single-positive
papers' held-out 20 %) scores the headline model on it every epoch (``select_map`` in metrics.jsonl) and
records the epoch chosen there (:func:`selected_record`: highest ``select_map``, the earliest on ties) and
the validation mAP at that epoch (``selected_map``): a selection that never saw the evaluation split. mAP
values are percent; a value that does not exist (no epoch, an empty class group) is None (JSON null;
:class:`plbench.artifacts.runs.RunFolder` writes strict JSON).
"""

from __future__ import annotations

import time
from typing import Any

from plbench import __version__
from plbench.artifacts.runs import RunFolder
from plbench.config import TrainConfig
from plbench.datasets import DatasetSplit
from plbench.engine.inputs import TrainingData
from plbench.engine.loop import EpochState
from plbench.engine.method_run import method_name, method_record
from plbench.engine.provenance import provenance
from plbench.heads import head_provenance

AUTHORS_PROTOCOL = "selected on the evaluation split (as in the authors' code)"


def epoch_record(state: EpochState, results: dict[str, Any], headline: str,
                 selection: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics.jsonl line of an epoch: training figures, headline mAP and both models' mAP, and with
    ``selection`` (:func:`plbench.engine.loop.evaluate_models` on the selection split) ``select_map``, the
    headline model's mAP there."""
    ev = results[headline][0]
    record = {
        **state.record(), "val_map": ev["map"],
        "val_map_plain": results["plain"][0]["map"],
        "val_map_ema": results["ema"][0]["map"] if "ema" in results else None,
        **{k: v for k, v in ev.items() if k not in ("map", "ap_per_class")},
    }
    if selection is not None:
        record["select_map"] = selection[headline][0]["map"]
    return record


def epoch_line(run_name: str, record: dict[str, Any], epochs: int) -> str:
    """The one status line of a finished epoch."""
    ema = "" if record.get("val_map_ema") is None else (
        f" (plain {record['val_map_plain']:.2f}, EMA {record['val_map_ema']:.2f})")
    select = "" if record.get("select_map") is None else f", selection mAP {record['select_map']:.2f}"
    return (f"{run_name} epoch {record['epoch'] + 1}/{epochs}: loss {record['train_loss']:.4f}, val mAP "
            f"{record['val_map']:.2f}{ema}{select}, {record['train_seconds']:.1f} s, "
            f"{record['train_images_per_s']:.0f} img/s")


def true_frequency(split: DatasetSplit) -> list[float] | None:
    """Positives / images per class in a split's own labels, when they are complete (else None)."""
    if split.labels.annotated_fraction() < 1.0:
        return None
    return (split.labels.counts().positives / max(split.labels.num_images, 1)).astype(float).tolist()


def _number(value: float | None) -> float:
    """A mAP to compare: -inf for a missing one (a metrics.jsonl value read back is null where NaN was meant)."""
    return float("-inf") if value is None or value != value else float(value)


def authors_map(history: list[dict[str, Any]]) -> float:
    """The authors' protocol: the maximum over epochs of max(plain, EMA) mAP (NaN without epochs)."""
    if not history:
        return float("nan")
    return max(max(_number(h["val_map_plain"]), _number(h.get("val_map_ema"))) for h in history)


def selection_key(config: TrainConfig) -> str:
    """The metrics.jsonl key that chooses the epoch (and ``best.pt``): ``select_map`` with a selection split,
    else ``val_map`` (selected on the evaluation split, as plbench always did)."""
    return "select_map" if config.select_split is not None else "val_map"


def selected_record(history: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The epoch record (of metrics.jsonl lines, in epoch order) with the highest ``key``, the earliest on
    ties; None when no epoch has a number there (NaN and null count as missing)."""
    best: dict[str, Any] | None = None
    for h in history:
        value = _number(h.get(key))
        if value > float("-inf") and (best is None or value > _number(best.get(key))):
            best = h
    return best


def selection_summary(config: TrainConfig, history: list[dict[str, Any]], images: int | None) -> dict[str, Any]:
    """The summary's held-out selection: ``selection_split`` (None without one), ``selection_images`` (its
    images), ``selected_epoch`` (from 0, as metrics.jsonl's ``epoch``), ``selection_map`` (its mAP on the
    selection split) and ``selected_map`` (its headline mAP on the validation split); None where there is no
    selection split or no epoch with a selection mAP."""
    chosen = selected_record(history, "select_map") if config.select_split is not None else None
    return {"selection_split": config.select_split, "selection_images": images,
            "selected_epoch": None if chosen is None else chosen["epoch"],
            "selection_map": None if chosen is None else chosen["select_map"],
            "selected_map": None if chosen is None else chosen["val_map"]}


def build_summary(config: TrainConfig, run: RunFolder, data: TrainingData, results: dict[str, Any],
                  history: list[dict[str, Any]], best_map: float, val_total: int, mean: list[float],
                  std: list[float], *, started: float, command: str | None) -> dict[str, Any]:
    """The ``summary.json`` of a finished run (``results``: :func:`plbench.engine.loop.evaluate_models`;
    ``best_map``: the best validation mAP over epochs)."""
    headline = config.headline_model
    ev, _, _, index = results[headline]
    counts = data.train_labels.counts()
    val_counts = data.val_split.labels.counts()
    return {
        "run": run.name, "dataset": config.dataset, "labels": data.tag, "mode": config.mode, "loss": method_name(config),
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
        "best_val_map": best_map, "authors_map": authors_map(history), "authors_map_protocol": AUTHORS_PROTOCOL,
        **selection_summary(config, history, None if data.select_split is None else len(data.select_split)),
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
        "input_files": run.inputs() or {},  # sha256 of the files the config names, at the run's start
        "method": method_record(config),  # import path, package version, source sha256
        "head_provenance": head_provenance(config.head),  # the same for the head (predict/export rebuild it)
    }

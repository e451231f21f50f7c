"""Evaluate a trained run on one split of any dataset with the same classes (``plbench evaluate``).

An evaluation (:func:`evaluate_run`) writes a new folder beside the run's files, by default
``RUN/eval-<dataset>-<split>-<checkpoint>/`` with ``predictions.npz`` and ``summary.json`` in the run
folder format, so ``plbench report`` can read it; the run's own files are never touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from plbench import __version__
from plbench.artifacts.atomic import json_safe
from plbench.artifacts.runs import RunFolder
from plbench.choices import Checkpoint
from plbench.datasets import load_dataset
from plbench.engine.evaluate import evaluate_scores
from plbench.engine.predict import predict_files
from plbench.engine.run_model import load_checkpoint_model, run_batch_size
from plbench.engine.runtime import resolve_device
from plbench.errors import InputError
from plbench.zsl.splits import class_indices


def match_classes(model_classes: Sequence[str], split_classes: Sequence[str], path: str | Path | None) -> np.ndarray:
    """Column order that puts a split's classes in the model's order: ``split_columns[:, perm]``.

    Raises:
        InputError: the two class lists differ as sets (the message names the classes on each side).
    """
    model_classes, split_classes = list(model_classes), list(split_classes)
    if len(set(split_classes)) != len(split_classes):
        raise InputError(path, "class names", "the dataset names a class twice", "fix the dataset's class list")
    position = {n: i for i, n in enumerate(split_classes)}
    missing = [n for n in model_classes if n not in position]
    extra = [n for n in split_classes if n not in set(model_classes)]
    if missing or extra:
        def names(xs: list[str]) -> str:
            return ", ".join(map(repr, xs[:8])) + (f" and {len(xs) - 8} more" if len(xs) > 8 else "") or "none"

        raise InputError(
            path, "class names", f"expected the run's {len(model_classes)} classes, but the split has "
            f"{len(split_classes)}: missing from the split: {names(missing)}; not known to the model: {names(extra)}",
            "evaluate on a dataset with the class list the run was trained on (order does not matter)",
        )
    return np.asarray([position[n] for n in model_classes], dtype=np.int64)


def reorder_groups(groups: dict[str, np.ndarray], perm: np.ndarray) -> dict[str, np.ndarray]:
    """Class groups (e.g. LVIS rare/common/frequent) of a split, as indices into the model's class order.

    Args:
        groups: name -> int64 indices into the split's classes.
        perm: from :func:`match_classes`: model class j is split class ``perm[j]``.
    Returns:
        name -> sorted int64 indices into the model's classes.
    """
    position = np.empty_like(perm)
    position[perm] = np.arange(len(perm))  # split class index -> model class index
    return {g: np.sort(position[np.asarray(idx, np.int64)]) for g, idx in groups.items()}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def evaluation_folder(run: RunFolder, dataset: str, split: str, which: str, weights: str, ema_available: bool) -> Path:
    """Default folder of an evaluation: ``RUN/eval-<dataset>-<split>-<checkpoint>[-plain]`` (``-plain`` only
    when the EMA weights were available but not used)."""
    suffix = "-plain" if ema_available and weights == "plain" else ""
    return run.path / f"eval-{_slug(dataset)}-{_slug(split)}-{which}{suffix}"


#: summary fields copied from the run's summary.json (what the run is; the rest describes the evaluation)
RUN_FIELDS = ("labels", "mode", "loss", "recipe", "protocol", "backbone", "head", "image_size", "epochs", "seed",
              "train_images", "train_annotated_fraction", "train_positives", "train_negatives", "simulation")


@dataclass
class EvaluationResult:
    """What :func:`evaluate_run` returns: the evaluation folder and its summary."""

    folder: Path
    summary: dict[str, Any]


#: ``--classes`` of a zero-shot evaluation: seen, unseen (ZSL) and all (GZSL: seen + unseen)
ZSL_CLASSES = ("seen", "unseen", "all")
#: what a zero-shot evaluation scores when not told: ZSL and GZSL, as the papers report
DEFAULT_ZSL_CLASSES = ("unseen", "all")


def evaluate_run(
    run: RunFolder | str | Path,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    split: str | None = None,
    *,
    dataset_options: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    which: str | Checkpoint = Checkpoint.LAST,
    ema: bool = True,
    batch_size: int | None = None,
    device: str = "auto",
    workers: int = 0,
    amp: bool = False,
    out: str | Path | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Score a run's model on one split of a dataset with the same classes; write an evaluation folder.

    The split's classes are matched to the model's by name (any order); its labels are used as they
    are (complete or natural partial labels; ``-1`` entries are left out of the metrics).

    A zero-shot run (trained with a ``zsl_split``) is scored on the classes of its recorded split, embedded
    with its recorded source and prompt: ``classes`` picks ``unseen`` (ZSL), ``all`` (GZSL, seen then unseen)
    and/or ``seen`` (default: ZSL and GZSL). The summary's ``zero_shot`` block holds their mAP and top-K
    precision, recall and F1 at K = 3 and 5 (:func:`plbench.engine.zero_shot.scores_block`; ZSL also on the
    images with an unseen positive, ``zsl_unseen_positive``), ``map`` / ``val_map`` the first of ZSL, GZSL,
    seen that was asked for, and ``predictions.npz`` the scores of the classes scored (``class_names``).

    Args:
        run: a run folder with ``config.json`` and the checkpoint ``which``.
        dataset, data_root, split, dataset_options: as for :func:`plbench.datasets.load_dataset`; default
            the run's own dataset, data root, options and validation split.
        classes: zero-shot runs only, see above.
        which, ema: which weights (see :func:`plbench.engine.run_model.load_run_model`).
        batch_size: images per forward pass (default: the run's batch size, so the run's own
            validation split gives exactly the run's scores).
        device: auto, cpu, cuda or cuda:N.
        out: the evaluation folder (default :func:`evaluation_folder`); it must not be the run folder.
    Returns:
        The folder, holding ``predictions.npz`` (scores in the model's class order) and ``summary.json``:
        ``kind`` "evaluation" (what tells it from a training run), ``evaluated_run``, ``checkpoint``,
        ``weights`` (ema | plain), ``epoch``, ``dataset``, ``split``, ``train_dataset``; ``map`` and ``val_map``
        (both: mAP in percent on this split, so the report reads it like a run), ``val_map_plain`` or
        ``val_map_ema`` (the same number, under the weights used), ``best_val_map`` and ``authors_map`` null
        (one fixed model: nothing selected), ``evaluation_protocol`` (text), ``ap_per_class`` (percent),
        ``cf1``/``of1``/..., ``map_<group>`` (not for zero-shot runs: their ``zero_shot`` block instead);
        ``val_images`` / ``val_images_skipped`` / ``skipped_images`` (this split's counts, the first 100
        unreadable paths); the run's own descriptive fields (:data:`RUN_FIELDS`), preprocessing and timing.
    Raises:
        InputError: bad run, dataset or options; class lists that differ (naming the classes); ``classes``
            for a run that is not zero-shot, or an unknown one; an ``out`` folder that is the run folder itself.
    """
    from plbench.engine import zero_shot

    run = run if isinstance(run, RunFolder) else RunFolder(run)
    started = time.time()
    config = run.config()
    zsl = bool(config.get("zsl_split"))
    if classes is not None:
        zero_shot.require_zero_shot(config, run.path, "--classes")
        bad = [c for c in classes if c not in ZSL_CLASSES]
        if bad or not classes:
            raise InputError(None, "--classes", f"expected classes among {', '.join(ZSL_CLASSES)}, but got "
                             f"{', '.join(map(repr, bad)) or 'none'}", "pass seen, unseen and/or all")
    own = dataset is None or dataset == config.get("dataset")
    dataset = dataset or config["dataset"]
    data_root = data_root if data_root is not None else config["data_root"]
    split = split or config.get("val_split", "val")
    if dataset_options is None:
        dataset_options = dict(config.get("dataset_options") or {}) if own else {}
    (model, pre, class_names), source = load_checkpoint_model(run, which, ema)
    split_data = load_dataset(dataset, data_root, split, **dataset_options)
    if zsl:
        tasks = tuple(dict.fromkeys(classes or DEFAULT_ZSL_CLASSES))
        zsplit, class_names, embeddings = zero_shot.set_split_classes(model, config, data_root,
                                                                      split_data.class_names, class_names, tasks)
        perm = class_indices(split_data.class_names, class_names)
    else:
        perm = match_classes(class_names, split_data.class_names, data_root)
    folder = Path(out) if out is not None else evaluation_folder(run, dataset, split, source.checkpoint,
                                                                 source.weights, source.ema_available)
    if folder.resolve() == run.path.resolve():
        raise InputError(folder, "--out", "the evaluation folder is the run folder itself",
                         "pass another folder (the default is RUN/eval-<dataset>-<split>-<checkpoint>)")

    strict = bool(dataset_options.get("strict", False))
    preds = predict_files(model, split_data.image_paths, pre, len(class_names),
                          batch_size=run_batch_size(config, batch_size),
                          device=resolve_device(device), workers=workers, strict=strict, amp=amp, progress=progress)
    targets = split_data.labels.batch(preds.indices)[:, perm]
    if zsl:
        block = zero_shot.scores_block(preds.scores, targets, zsplit, tasks, class_names)
        headline = next(block[k]["map"] for k in ("zsl", "gzsl", "seen") if k in block)
        ev = {"map": headline}
    else:
        ev = evaluate_scores(preds.scores, targets, reorder_groups(split_data.class_groups, perm))

    ev_dir = RunFolder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ev_dir.write_predictions(preds.scores, targets, np.asarray(split_data.image_paths)[preds.indices],
                             np.asarray(split_data.labels.image_ids)[preds.indices], class_names)
    try:
        run_summary = run.summary()
    except InputError:
        run_summary = {}
    failed = [str(split_data.image_paths[i]) for i in preds.failed]
    on = f"on {dataset} {split}"
    if zsl:
        on += f", {' and '.join(zero_shot.TASK_KEYS[t].upper() for t in tasks)} classes of split {zsplit.source}"
    summary: dict[str, Any] = {
        "kind": "evaluation", "run": f"{run.name}/{folder.name}" if folder.parent == run.path else folder.name,
        "evaluated_run": str(run.path), "checkpoint": source.checkpoint, "weights": source.weights,
        "epoch": source.epoch, "train_dataset": config.get("dataset"),
        **{k: run_summary.get(k, config.get(k)) for k in RUN_FIELDS},
        "dataset": dataset, "data_root": str(data_root), "split": split, "data_fingerprint": split_data.fingerprint,
        "val_images": int(len(preds.indices)), "val_images_skipped": len(failed), "skipped_images": failed[:100],
        "num_classes": len(class_names), "class_names": class_names, "classes_reordered": bool(
            (perm != np.arange(len(perm))).any()),
        "map": ev["map"], "val_map": ev["map"],
        "val_map_plain": ev["map"] if source.weights == "plain" else None,
        "val_map_ema": ev["map"] if source.weights == "ema" else None,
        "best_val_map": None, "authors_map": None,  # one fixed model: nothing selected on this split
        "evaluation_protocol": f"{source.checkpoint}.pt (epoch {source.epoch + 1}), "
                               f"{'EMA' if source.weights == 'ema' else 'plain'} model, {on}",
        **{k: v for k, v in ev.items() if k != "map"},
        "preprocessing": pre, "plbench_version": __version__,
        "evaluation_seconds": time.time() - started,
    }
    if zsl:
        trained = run_summary.get("zero_shot") or {}
        summary["zero_shot"] = {
            **block, "classes": list(tasks), "split": zsplit.source, "num_seen": zsplit.num_seen,
            "num_unseen": zsplit.num_unseen, "unseen_classes": list(zsplit.unseen),
            **zero_shot.run_fields(config, embeddings), "dropped_train_images": trained.get("dropped_train_images")}
    ev_dir.write_summary(summary)  # strict JSON: an undefined group mAP (NaN) is written as null
    return EvaluationResult(folder, json_safe(summary))  # what the file holds

"""Predict image files with a run's model, pick the classes to report, write a predictions file.

Images are decoded and batched by :mod:`plbench.engine.image_files` and scored by the one batch-forward
core (:func:`plbench.engine.forward.score_batches`), batch by batch: memory does not grow with the
number of files. Undecodable images are reported by position, never scored.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from plbench.artifacts.atomic import atomic_path
from plbench.engine.forward import score_batches
from plbench.engine.image_files import ImageFiles, collate_images, load_pixels
from plbench.engine.runtime import prepare_model
from plbench.errors import InputError
from plbench.progress import progress as progress_bar


class PredictionBatch(NamedTuple):
    """One batch of :func:`iter_predictions`.

    Attributes:
        indices: int64 (b,) positions in the input list of the images that decoded.
        scores: float32 (b, C) sigmoid scores in [0, 1] (shape (0, 0) when no image of the batch decoded).
        failed: positions of the images of this batch that could not be decoded.
    """

    indices: np.ndarray
    scores: np.ndarray
    failed: list[int]


def iter_predictions(
    model: nn.Module,
    paths: Sequence[str | Path],
    preprocessing: dict[str, Any],
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    workers: int = 0,
    strict: bool = False,
    amp: bool = False,
    progress: bool = False,
) -> Iterator[PredictionBatch]:
    """Predict image files batch by batch (memory independent of the number of files).

    Args:
        model: images (B, 3, S, S) -> logits (B, C); put in eval mode here.
        paths: (N,) image files.
        preprocessing: the run's (see :class:`plbench.engine.run_model.RunModel`).
        batch_size: images per forward pass.
        device: where the model runs (it is moved there, in the layout of
            :func:`plbench.engine.runtime.channels_last`).
        workers: DataLoader processes decoding images (0: in this process).
        strict: an undecodable image raises instead of being reported in ``failed``.
        amp: mixed precision by the one policy (:func:`plbench.engine.runtime.amp_dtype`: bfloat16 on
            the CPU too).
        progress: show progress on stderr (:func:`plbench.progress.progress`: a bar on a terminal, a few
            plain lines elsewhere).
    Yields:
        :class:`PredictionBatch` in input order.
    Raises:
        InputError: ``strict`` and an image that cannot be decoded (naming it).
    """
    device = torch.device(device)
    model = prepare_model(model, device)
    size = int(preprocessing["image_size"])
    loader = DataLoader(ImageFiles(paths, size), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_images, pin_memory=device.type == "cuda")

    def checked(batches: Iterable) -> Iterator:
        for batch in batches:
            if batch.failed and strict:  # decode again in this process to raise the decoder's own error
                load_pixels(paths[batch.failed[0]], size, strict=True)
            yield batch

    with progress_bar(total=len(paths), desc="predict", unit="img", enabled=progress) as bar:
        for b in score_batches(model, checked(loader), device, mean=preprocessing["mean"],
                               std=preprocessing["std"], amp=amp):
            bar.update(len(b.index) + len(b.failed))
            yield PredictionBatch(b.index, b.scores, b.failed)


class Predictions(NamedTuple):
    """All of :func:`predict_files`: ``scores`` float32 (N', C) of the decoded images, their positions
    ``indices`` int64 (N',) in the input list, and ``failed`` positions of undecodable images."""

    scores: np.ndarray
    indices: np.ndarray
    failed: list[int]


def predict_files(model: nn.Module, paths: Sequence[str | Path], preprocessing: dict[str, Any],
                  num_classes: int, **kwargs: Any) -> Predictions:
    """:func:`iter_predictions` gathered into arrays (``kwargs`` as there)."""
    scores, indices, failed = [], [], []
    for batch in iter_predictions(model, paths, preprocessing, **kwargs):
        if len(batch.indices):
            scores.append(batch.scores)
            indices.append(batch.indices)
        failed.extend(batch.failed)
    if not scores:
        return Predictions(np.zeros((0, num_classes), np.float32), np.zeros(0, np.int64), failed)
    return Predictions(np.concatenate(scores), np.concatenate(indices), failed)


def select_classes(scores: np.ndarray, class_names: Sequence[str], *, threshold: float = 0.5,
                   top_k: int | None = None) -> list[tuple[str, float]]:
    """The classes to report for one image, highest score first.

    Args:
        scores: float (C,) in [0, 1].
        threshold: classes scoring at or above it (used when ``top_k`` is None).
        top_k: the k best classes regardless of the threshold (ties: lower class index first).
    Returns:
        ``[(class name, score), ...]``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        keep = order[:top_k]
    else:
        keep = order[scores[order] >= threshold]
    return [(class_names[j], float(scores[j])) for j in keep]


#: one image's reported classes: (image path, [(class name, score), ...] highest score first)
Selected = tuple[str, list[tuple[str, float]]]
#: ``--out`` file kinds by suffix: JSON lines (one object per image) or CSV (one row per image and class)
PREDICTION_FILE_KINDS = {".jsonl": "jsonl", ".csv": "csv"}


def iter_selected(model: nn.Module, paths: Sequence[str | Path], preprocessing: dict[str, Any],
                  class_names: Sequence[str], *, threshold: float = 0.5, top_k: int | None = None,
                  failed: list[str] | None = None, **kwargs: Any) -> Iterator[Selected]:
    """The classes each decodable image gets (:func:`select_classes`), in input order, batch by batch.

    Args:
        failed: when given, the paths of undecodable images are appended to it as they are met.
        kwargs: as for :func:`iter_predictions` (batch_size, device, workers, strict, progress, ...).
    """
    for batch in iter_predictions(model, paths, preprocessing, **kwargs):
        if failed is not None:
            failed.extend(str(paths[i]) for i in batch.failed)
        for row, i in enumerate(batch.indices):
            yield str(paths[i]), select_classes(batch.scores[row], class_names, threshold=threshold, top_k=top_k)


def prediction_file_kind(path: str | Path) -> str:
    """``jsonl`` or ``csv``, from the file name.

    Raises:
        InputError: another suffix.
    """
    kind = PREDICTION_FILE_KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise InputError(path, "--out", f"expected a .jsonl or .csv file name, but got {Path(path).name!r}",
                         "name the output e.g. predictions.jsonl or predictions.csv")
    return kind


def write_selected(path: str | Path, rows: Iterable[Selected]) -> int:
    """Stream ``rows`` into a predictions file, atomically (the file appears complete or not at all).

    Formats, by suffix: ``.jsonl``, one line per image ``{"image": path, "predictions": [{"class": name,
    "score": s}, ...]}``; ``.csv``, header ``image,class,score`` then one row per (image, class). Scores
    have 6 decimals.

    Returns:
        The number of images written.
    Raises:
        InputError: a suffix other than .jsonl or .csv.
    """
    kind = prediction_file_kind(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        table = csv.writer(f, lineterminator="\n") if kind == "csv" else None
        if table is not None:
            table.writerow(["image", "class", "score"])
        for image, picked in rows:
            if table is not None:
                table.writerows([image, name, f"{score:.6f}"] for name, score in picked)
            else:
                f.write(json.dumps({"image": image, "predictions": [{"class": n, "score": round(sc, 6)}
                                                                    for n, sc in picked]}) + "\n")
            count += 1
    return count

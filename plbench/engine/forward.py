"""The one batch-forward core of every scoring pass: per-epoch validation, the prior estimate,
``plbench predict`` and ``plbench evaluate``.

A scoring pass runs the model in eval mode under ``torch.no_grad``, with the autocast dtype of
:func:`plbench.engine.runtime.amp_dtype` and the memory layout of :func:`plbench.engine.runtime.channels_last`,
and returns sigmoid scores as float32 numpy arrays. Callers adapt their own loader's batches to
:class:`LoaderBatch`; images that could not be decoded travel with the batch in ``failed``.
"""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from plbench.engine.runtime import amp_dtype, autocast, to_model_input


class LoaderBatch(NamedTuple):
    """One batch to score.

    Attributes:
        inputs: uint8 images (b, 3, S, S) or float feature rows (b, L, D); None when nothing of the batch
            decoded (then ``index`` is empty).
        index: int64 (b,) positions of the rows of ``inputs`` in the caller's list (dataset indices).
        labels: int8 (b, C) targets travelling with the batch, or None.
        failed: positions of this batch's images that could not be decoded (empty where the loader
            drops them without naming them).
    """

    inputs: torch.Tensor | None
    index: np.ndarray
    labels: np.ndarray | None = None
    failed: Sequence[int] = ()


class ScoredBatch(NamedTuple):
    """:class:`LoaderBatch` with its scores: ``scores`` float32 (b, C) sigmoid in [0, 1] (shape
    (0, num_classes) when nothing decoded), ``index`` int64 (b,), ``labels`` and ``failed`` passed through."""

    scores: np.ndarray
    index: np.ndarray
    labels: np.ndarray | None
    failed: list[int]


def forward_scores(model: nn.Module, inputs: torch.Tensor, device: torch.device, *, mean: Sequence[float],
                   std: Sequence[float], dtype: torch.dtype | None) -> np.ndarray:
    """Sigmoid scores of one batch: inputs as in :class:`LoaderBatch` -> float32 (b, C) on the CPU.

    ``model`` must already be on ``device`` (:func:`plbench.engine.runtime.prepare_model`) and in eval mode;
    uint8 images are normalised with ``mean`` / ``std`` on the device; ``dtype`` is the autocast dtype
    (None: float32).
    """
    x = to_model_input(inputs, device, mean, std)
    with torch.no_grad(), autocast(device, dtype):
        logits = model(x)  # (b, C)
    return torch.sigmoid(logits.float()).cpu().numpy()


def score_batches(model: nn.Module, batches: Iterable[LoaderBatch], device: torch.device, *,
                  mean: Sequence[float], std: Sequence[float], amp: bool = False,
                  num_classes: int = 0) -> Iterator[ScoredBatch]:
    """Score ``batches`` one by one with ``model`` in eval mode (its train/eval mode is restored after).

    Args:
        model: on ``device``; (b, ...) inputs -> logits (b, C).
        mean, std: the run's input normalisation, three floats each.
        amp: mixed precision by the one policy (:func:`plbench.engine.runtime.amp_dtype`).
        num_classes: C, the width of the empty score array of a batch where nothing decoded.
    Yields:
        :class:`ScoredBatch` in the order of ``batches``.
    """
    dtype = amp_dtype(amp, device)
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            if batch.inputs is None:
                scores = np.zeros((0, num_classes), np.float32)
            else:
                scores = forward_scores(model, batch.inputs, device, mean=mean, std=std, dtype=dtype)
            yield ScoredBatch(scores, np.asarray(batch.index, np.int64), batch.labels, list(batch.failed))
    finally:
        model.train(was_training)

"""Class-prior estimation (CSL, Ben-Baruch et al. 2022): the mean predicted probability of each class
over the training images, from a model trained in Ignore mode on the same partial labels.

How the authors' code estimates it: during training of the Ignore-mode model, the sigmoid outputs of every
training batch (augmented images, weights still changing) are accumulated, and the average over the
training steps is the prior. How plbench estimates it: after the Ignore-mode model has finished training,
one clean pass (no augmentation, evaluation mode, the headline model: EMA under the csl recipe) over the
training images; the mean score per class is the prior. Ours is a function of the final model only, so the
same run gives the same prior; theirs mixes early (near-uniform) predictions into the average.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plbench.choices import Mode
from plbench.config import TrainConfig
from plbench.datasets import DatasetSplit
from plbench.engine.evaluate import predict
from plbench.engine.inputs import load_training_data, make_dataset, make_loader, normalization
from plbench.engine.runtime import resolve_device
from plbench.engine.train import train
from plbench.labels import PartialLabels
from plbench.losses import takes_mode
from plbench.prior_quality import comparison_markdown, naive_prior


#: what :func:`plbench.engine.inputs.load_training_data` returns: split, training labels, image paths, simulation
TrainingSet = tuple[DatasetSplit, PartialLabels, np.ndarray, "dict[str, Any] | None"]


def prior_from_model(config: TrainConfig, model: torch.nn.Module, *, progress: bool = True,
                     data: TrainingSet | None = None) -> tuple[list[str], np.ndarray]:
    """Average a trained model's sigmoid scores over ``config``'s training images (one clean pass).

    Args:
        data: ``load_training_data(config)`` when the caller has it already (loading a large split twice is slow).
    Returns:
        class names (C,) and the prior, float64 (C,) in [0, 1].
    """
    split, labels, paths, _ = data if data is not None else load_training_data(config)
    device = resolve_device(config.device)
    loader = make_loader(make_dataset(config, config.train_split, paths, labels, train=False,
                                      fingerprint=split.fingerprint), config)
    mean, std = normalization(config)
    scores, _, _ = predict(model.to(device), loader, device, mean=mean, std=std, amp=config.amp, progress=progress,
                           desc="prior")
    return split.class_names, scores.astype(np.float64).mean(axis=0)


def prior_model_config(config: TrainConfig, mode: Mode, out_dir: str, keep_run: bool) -> TrainConfig:
    """The temporary model's config: ``mode`` with P-ASL (or the run's loss when it has modes), no prior."""
    loss = config.loss if takes_mode(config.loss) else "pasl"
    return config.replace(mode=mode.value, prior=None, out_dir=out_dir, loss=loss,
                          loss_options=config.loss_options if loss == config.loss else {},
                          run_name=None if keep_run else f"prior-model-{mode.value}")


def estimate_prior(config: TrainConfig, *, progress: bool = True, keep_run: bool = False,
                   mode: Mode = Mode.IGNORE, data: TrainingSet | None = None) -> tuple[list[str], np.ndarray]:
    """Train a temporary model (Ignore mode, as CSL) on ``config``'s training labels and average its predictions.

    Args:
        config: the run to estimate a prior for; its ``mode``/``prior`` are overridden.
        keep_run: keep the temporary model's run folder (under ``config.out_dir``) instead of deleting it.
        mode: the temporary model's mode (``negative`` reproduces the CSL README's comparison).
        data: ``load_training_data(config)`` when the caller has it already.
    Returns:
        class names (C,) and the prior, float64 (C,) in [0, 1]: mean sigmoid score over training images.
    """
    tmp_root = Path(config.out_dir) if keep_run else Path(tempfile.mkdtemp(prefix="plbench-prior-"))
    try:
        result = train(prior_model_config(config, mode, str(tmp_root), keep_run), progress=progress)
        return prior_from_model(config, result.model, progress=progress, data=data)
    finally:
        if not keep_run:
            shutil.rmtree(tmp_root, ignore_errors=True)


@dataclass
class PriorComparison:
    """Estimated priors beside the naive estimate and, for complete labels, the true class frequencies."""

    class_names: list[str]
    priors: dict[str, np.ndarray]  # name -> (C,)
    reference: str  # the prior the others are scored against

    def markdown(self, k: int = 10) -> str:
        return comparison_markdown(self.class_names, self.priors, self.reference, k)


def compare_priors(config: TrainConfig, estimates: dict[str, np.ndarray],
                   data: TrainingSet | None = None) -> PriorComparison:
    """Put model estimates beside the naive prior of the partial labels (positives / annotated) and the true
    frequencies (positives / images of the split's own labels, when complete).

    The true frequencies are the reference when the split's own labels are complete, else the naive prior.
    """
    split, labels, _, _ = data if data is not None else load_training_data(config)
    priors: dict[str, np.ndarray] = {}
    own = split.labels
    if config.max_train_images is not None:
        own = own.subset(np.arange(labels.num_images))
    if own.annotated_fraction() == 1.0:
        priors["true frequency"] = own.counts().positives / max(own.num_images, 1)
    counts = labels.counts()
    priors["naive (partial labels)"] = naive_prior(counts.positives, counts.negatives)
    priors.update(estimates)
    reference = "true frequency" if "true frequency" in priors else "naive (partial labels)"
    return PriorComparison(split.class_names, priors, reference)

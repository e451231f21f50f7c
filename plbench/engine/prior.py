"""Class-prior estimation (CSL, Ben-Baruch et al. 2022): the mean predicted probability of each class
over the training images, from a model trained in Ignore mode on the same partial labels."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from plbench.config import TrainConfig
from plbench.engine.train import load_training_data, make_dataset, make_loader, predict, resolve_device, train


def prior_from_model(config: TrainConfig, model: torch.nn.Module, *, progress: bool = True) -> tuple[list[str], np.ndarray]:
    """Average a trained model's sigmoid scores over ``config``'s training images.

    Returns:
        class names (C,) and the prior, float64 (C,) in [0, 1].
    """
    split, labels, paths, _ = load_training_data(config)
    loader = make_loader(make_dataset(config, config.train_split, paths, labels, train=False), config)
    scores, _, _ = predict(model, loader, resolve_device(config.device), config.amp, progress, desc="prior")
    return split.class_names, scores.astype(np.float64).mean(axis=0)


def _ignore_capable_loss(name: str) -> str:
    """``name`` if that loss has an Ignore mode, else the partial asymmetric loss (CSL's prior model)."""
    import inspect

    from plbench.losses import LOSSES

    cls = LOSSES.get(name)
    return name if cls is not None and "mode" in inspect.signature(cls.__init__).parameters else "pasl"


def estimate_prior(config: TrainConfig, *, progress: bool = True, keep_run: bool = False) -> tuple[list[str], np.ndarray]:
    """Train a temporary Ignore-mode model on ``config``'s training labels and average its predictions.

    Args:
        config: the run to estimate a prior for; its ``mode``/``prior`` are overridden (ignore, none).
        keep_run: keep the temporary model's run folder (under ``config.out_dir``) instead of deleting it.
    Returns:
        class names (C,) and the prior, float64 (C,) in [0, 1]: mean sigmoid score over training images.
    """
    tmp_root = Path(config.out_dir) if keep_run else Path(tempfile.mkdtemp(prefix="plbench-prior-"))
    prior_config = config.replace(
        mode="ignore", prior=None, out_dir=str(tmp_root), loss=_ignore_capable_loss(config.loss),
        run_name=None if keep_run else "prior-model",
    )
    try:
        result = train(prior_config, progress=progress)
        return prior_from_model(config, result.model, progress=progress)
    finally:
        if not keep_run:
            shutil.rmtree(tmp_root, ignore_errors=True)

"""Checkpoints of a training run: the state out (:func:`checkpoint_state`) and back in (:func:`restore`).

A checkpoint (``last.pt`` / ``best.pt``, written by :class:`plbench.artifacts.runs.RunFolder`) holds tensors,
dicts, lists, strings and numbers only, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from typing import Any

import torch

from plbench import __version__
from plbench.artifacts.runs import RunFolder
from plbench.engine.inputs import TrainingData
from plbench.engine.loop import EpochState, Trainer
from plbench.engine.runtime import unwrap
from plbench.errors import InputError


def checkpoint_state(t: Trainer, data: TrainingData, epoch_state: EpochState, best_map: float,
                     history: list[dict[str, Any]], *, finished_epoch: bool) -> dict[str, Any]:
    """Everything needed to resume exactly: weights, EMA, optimizer, progress, RNG, config, data identity,
    and the trainer's :meth:`~plbench.engine.loop.Trainer.extra_state` (key ``extra``, when not empty)."""
    state = {
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
    extra = t.extra_state()
    if extra:
        state["extra"] = extra
    return state


def restore(t: Trainer, run: RunFolder, data: TrainingData,
            which: str) -> tuple[int, float, EpochState | None, list[dict[str, Any]]]:
    """Load ``which`` checkpoint into the trainer; returns (next epoch, best mAP, partial epoch, history).

    Raises:
        InputError: the checkpoint was trained on other data, or does not fit this model.
    """
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
        t.load_extra_state(state.get("extra") or {})
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

"""Rebuild a trained run's model from its folder, for predict, evaluate and export.

The model of a run is rebuilt from its ``config.json`` (backbone, head, head options) and loaded from
``last.pt`` or ``best.pt``: the EMA weights where the checkpoint holds them (unless asked for the plain
model), else the plain ones. A linear-protocol run saved only its head; its backbone is rebuilt from the
weights its features were extracted with (see :func:`build_run_model`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from plbench.artifacts.runs import RunFolder
from plbench.choices import Checkpoint
from plbench.engine.data import IMAGENET_MEAN, IMAGENET_STD
from plbench.engine.linear_backbone import build_linear_model
from plbench.engine.model import build_model
from plbench.errors import InputError

log = logging.getLogger(__name__)


class RunModel(NamedTuple):
    """What :func:`load_run_model` returns.

    Attributes:
        model: ``nn.Module`` in eval mode on the CPU: normalised float32 images (B, 3, S, S) -> logits (B, C).
        preprocessing: ``{"image_size": S, "mean": [3], "std": [3]}`` (model input = (uint8/255 - mean)/std).
        class_names: (C,) names, in the order of the logits.
    """

    model: nn.Module
    preprocessing: dict[str, Any]
    class_names: list[str]


@dataclass(frozen=True)
class ModelSource:
    """Where the weights of a loaded model came from (recorded in evaluation summaries and export metadata).

    Attributes:
        checkpoint: ``last`` or ``best``.
        weights: ``ema`` or ``plain``.
        epoch: the last finished epoch of the checkpoint, 0-based.
        ema_available: the checkpoint holds EMA weights (used or not).
    """

    checkpoint: str
    weights: str
    epoch: int
    ema_available: bool


def run_preprocessing(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``preprocessing``, or (older checkpoints) the config's image size with ImageNet mean/std."""
    pre = state.get("preprocessing")
    if pre is None:
        pre = {"image_size": int(config["image_size"]), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return {"image_size": int(pre["image_size"]), "mean": [float(m) for m in pre["mean"]],
            "std": [float(s) for s in pre["std"]]}


def _run_class_names(run: RunFolder, state: dict[str, Any]) -> list[str]:
    names = state.get("class_names")
    if names is None:  # checkpoints written before class names were saved in them
        if not run.is_finished:
            raise InputError(run.path, "class_names", "the checkpoint does not name its classes and the run has no "
                             "summary.json", "finish the run first (re-run `plbench train` on it)")
        names = run.summary()["class_names"]
    return [str(n) for n in names]


def check_run_head(run: RunFolder, config: dict[str, Any]) -> None:
    """The run's head (``config["head"]``: a built-in name, an entry point or ``package.module:Name``) can be
    rebuilt here; a warning when its source differs from the one the run recorded (``summary.json``'s
    ``head_provenance``: the weights then load into other code).

    Raises:
        InputError: naming the run's ``config.json``, the head and how to make it importable.
    """
    from plbench.methods.provenance import source_sha256
    from plbench.heads import resolve_head

    spec = config.get("head", "gap")
    try:
        ctor = resolve_head(spec, field="head")
    except InputError as e:
        raise InputError(run.file("config.json"), "head", f"the run was trained with head {spec!r}, which cannot "
                         f"be loaded here: {e.problem}", e.fix) from None
    recorded = (run.summary().get("head_provenance") or {}) if run.is_finished else {}
    want, got = recorded.get("source_sha256"), source_sha256(ctor)[1]
    if want is not None and got is not None and want != got:
        log.warning("head %r of %s: its source file changed since training (sha256 %s..., recorded %s...)",
                    spec, run.path, got[:12], want[:12])


def checkpoint_weights(state: dict[str, Any], ema: bool) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict to load and its kind (``ema`` or ``plain``).

    ``ema=True`` takes the checkpoint's EMA weights when it holds them (``ema`` key present and not None)
    and falls back to the plain model otherwise. The engine saves the EMA as ``{"decay", "updates",
    "module": state_dict}`` (:meth:`plbench.engine.ema.ModelEma.state_dict`); a bare state dict, or one
    saved from a wrapper (keys ``module.*``), is accepted too.
    """
    weights = state.get("ema") if ema else None
    if weights is None:
        return state["model"], "plain"
    if isinstance(weights.get("module"), dict):
        weights = weights["module"]
    elif any(k.startswith("module.") for k in weights):
        weights = {k[len("module."):]: v for k, v in weights.items() if k.startswith("module.")}
    return weights, "ema"


def build_run_model(config: dict[str, Any], num_classes: int, weights: dict[str, torch.Tensor],
                    source: str | Path | None = None) -> nn.Module:
    """Rebuild the image model of a run from its config dict and load ``weights`` into it (strictly).

    A fine-tuned run's weights are the whole model. A linear-protocol run (``config["features"]`` set)
    saved its head only (keys ``head.*``): the backbone is rebuilt from the config's ``backbone``,
    ``pretrained`` and ``checkpoint`` and checked against the weights the feature store recorded
    (:func:`plbench.engine.linear_backbone.build_linear_model`). Its outputs then differ from the
    training-time ones by the float16 rounding of the stored features. A zero-shot run's ML-Decoder is built
    with the class embeddings its weights hold (``head.query_embeddings``: the seen classes).

    Returns:
        A :class:`plbench.engine.model.MultiLabelClassifier` in eval mode: images (B, 3, S, S) -> logits (B, C).
    Raises:
        InputError: the weights do not fit the architecture the config describes; a linear-protocol run
            whose backbone cannot be rebuilt with the weights its features came from.
    """
    linear = bool(config.get("features"))
    queries = weights.get("head.query_embeddings")
    if queries is not None:  # a zero-shot head: built for the class embeddings its checkpoint holds
        config = {**config, "head_options": {**(config.get("head_options") or {}), "query_embeddings": queries}}
    if linear:
        model = build_linear_model(config, num_classes)
    else:
        model = build_model(config["backbone"], config["head"], num_classes, head_options=config.get("head_options") or {})
    try:
        if linear:
            model.head.load_state_dict({k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")})
        else:
            model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(source, "model", f"the checkpoint's weights do not fit the {config['backbone']} + "
                         f"{config['head']} model its config describes ({first})",
                         "pass the run folder the checkpoint was written in, unchanged") from None
    return model.eval()


def run_batch_size(config: dict[str, Any], batch_size: int | None = None) -> int:
    """``batch_size`` when given, else the run's own (its ``config.json``; 32 when it records none): with
    the run's batch size, predicting its own validation split gives exactly the run's scores."""
    return batch_size or int(config.get("batch_size", 32))


def load_checkpoint_model(run: RunFolder | str | Path, which: str | Checkpoint = Checkpoint.LAST,
                          ema: bool = True) -> tuple[RunModel, ModelSource]:
    """Like :func:`load_run_model`, plus where the weights came from."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    which = Checkpoint.parse(which).value
    config = run.config()
    check_run_head(run, config)
    recorded = run.inputs()
    if recorded:  # a zero-shot run re-reads its split and embedding files: say when they changed
        from plbench.engine.provenance import changed_inputs

        changed_inputs(recorded, f"run {run.path}")
    state = run.load_checkpoint(which, map_location="cpu")
    class_names = _run_class_names(run, state)
    weights, kind = checkpoint_weights(state, ema)
    model = build_run_model(config, len(class_names), weights, run.file(f"{which}.pt"))
    source = ModelSource(checkpoint=which, weights=kind, epoch=int(state["epoch"]),
                         ema_available=state.get("ema") is not None)
    return RunModel(model, run_preprocessing(state, config), class_names), source


def load_run_model(run: RunFolder | str | Path, which: str | Checkpoint = Checkpoint.LAST,
                   ema: bool = True) -> RunModel:
    """Load the model of a run folder for inference.

    Args:
        run: the run folder (``plbench train`` output).
        which: ``last`` (the final epoch: what the headline mAP measures) or ``best``.
        ema: use the EMA weights when the checkpoint has them (the headline model of csl runs).
    Returns:
        ``(model, preprocessing, class_names)`` (a :class:`RunModel`); the model is in eval mode on the CPU.
    Raises:
        InputError: no such checkpoint, a damaged one, weights that do not fit the config, or a
            linear-protocol run whose backbone cannot be rebuilt.

    Example:
        >>> model, pre, names = load_run_model("runs/synthetic-full-ignore-resnet10t-gap-s0")  # doctest: +SKIP
        >>> model(torch.zeros(1, 3, pre["image_size"], pre["image_size"])).shape  # doctest: +SKIP
        torch.Size([1, 20])
    """
    return load_checkpoint_model(run, which, ema)[0]


def load_head_from_run(model: nn.Module, run_dir: str | Path, class_names: list[str], head: str) -> int:
    """Copy the head of run ``run_dir``'s best checkpoint (its headline weights: EMA when it kept one) into
    ``model.head``: Cole et al.'s "linear init", where a linear run on frozen features starts an end-to-end run.

    Returns:
        the epoch of the checkpoint the head came from.
    Raises:
        InputError: no run or checkpoint there, another head type or class list, or head tensors of other
            shapes (another backbone's feature width), each named.
    """
    run = RunFolder(run_dir)
    config = run.config()
    field = "--init-head"
    if config.get("head") != head:
        raise InputError(run.path, field, f"that run's head is {config.get('head')!r}, this run's {head!r}",
                         f"start from a run trained with --head {head}")
    state = run.load_checkpoint(Checkpoint.BEST.value, map_location="cpu")
    theirs = _run_class_names(run, state)
    if list(theirs) != list(class_names):
        raise InputError(run.path, field, f"that run has {len(theirs)} classes ({', '.join(theirs[:3])}, ...), this "
                         f"run {len(class_names)} ({', '.join(class_names[:3])}, ...), or another order",
                         "start from a run on the same dataset and classes")
    weights, _ = checkpoint_weights(state, ema=True)
    head_weights = {k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")}
    target = getattr(model, "head")
    mine = target.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(mine[k].shape)}" for k, v in head_weights.items()
             if k in mine and v.shape != mine[k].shape]
    if wrong or set(head_weights) != set(mine):
        detail = "; ".join(wrong) or f"keys {sorted(set(head_weights) ^ set(mine))[:4]} differ"
        raise InputError(run.file("best.pt"), field, f"its head does not fit this model's: {detail}",
                         "start from a run with the same backbone feature width and head options")
    with torch.no_grad():
        for k, v in mine.items():
            v.copy_(head_weights[k].to(v.device, v.dtype))
    return int(state["epoch"])

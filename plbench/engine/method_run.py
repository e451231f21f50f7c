"""A run's method (:mod:`plbench.methods.api`) in the training loop.

:func:`make_method` resolves ``config.method`` (or the loss ``config.loss``: every loss is a built-in
method), checks what it declares it needs against what the run can give and calls its ``setup``, all
before the run folder is written; :class:`MethodTrainer` is the :class:`~plbench.engine.loop.Trainer` that
hosts it: the step's loss with the batch's dataset indices, epoch, step (and class maps when declared),
the method's parameters' gradients averaged over torchrun processes, its epoch hooks, a pass over the
training set at epoch end, and its state in the checkpoints (key ``extra.method``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from plbench.config import TrainConfig
from plbench.engine import distributed as dist
from plbench.engine.inputs import TrainingData
from plbench.engine.loop import Batch, Trainer
from plbench.errors import InputError
from plbench.methods import sync
from plbench.methods.api import BatchInfo, Method, MethodContext, RunSupport, TrainingSetPass, check_needs
from plbench.methods.loss_method import LossMethod
from plbench.methods.registry import create_method, resolve_method

__all__ = ["method_spec", "method_name", "method_record", "resolve_run_method", "run_support", "make_method", "MethodTrainer",
           "training_set_scorer"]


def method_spec(config: TrainConfig) -> str:
    """What the run trains: ``config.method``, else the loss ``config.loss``."""
    return config.method if config.method is not None else config.loss


def method_name(config: TrainConfig) -> str:
    """The method's name in run names, summaries and reports: the spec, or for ``package.module:Name`` the
    class's ``label`` or name (a colon would read as a mode in report columns)."""
    spec = method_spec(config)
    if ":" not in spec:
        return spec
    cls = resolve_method(spec)
    return cls.label or cls.__name__


def _field(config: TrainConfig) -> str:
    return "--method" if config.method is not None else "--loss"


def resolve_run_method(config: TrainConfig) -> type[Method]:
    """The method class of ``config`` (its mode and other needs are checked by :func:`make_method`).

    Raises:
        InputError: unknown, broken or malformed method.
    """
    return resolve_method(method_spec(config), field=_field(config))


def _head(model: nn.Module) -> nn.Module | None:
    inner = getattr(model, "module", model)  # DDP
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    return getattr(inner, "head", None)


def run_support(config: TrainConfig, data: TrainingData, model: nn.Module) -> RunSupport:
    """What this run can give a method (see :class:`plbench.methods.api.RunSupport`)."""
    head = _head(model)
    maps: str | None = None
    if head is None or not callable(getattr(head, "class_maps", None)):
        maps = f"the {config.head} head has no class_maps()"
    elif config.features is not None:
        store = data.feature_stores.get(config.train_split)
        if store is not None and not store.has_tokens:
            maps = "the feature store holds pooled features only"
    return RunSupport(mode=config.mode, prior=data.prior is not None, spatial_maps_missing=maps,
                      train_pass_missing="zero-shot runs train on a row subset" if data.zero_shot is not None else None)


def make_method(config: TrainConfig, data: TrainingData, model: nn.Module, device: torch.device,
                steps_per_epoch: int) -> Method:
    """The run's method, checked and set up (before anything is written).

    Raises:
        InputError: what :func:`resolve_run_method` and :func:`plbench.methods.api.check_needs` refuse, bad
            options, or a ``setup`` that refuses this training set (its ValueError, named).
    """
    spec = method_spec(config)
    cls = resolve_run_method(config)
    check_needs(cls, spec, run_support(config, data, model), field=_field(config))
    method = create_method(cls if ":" in spec else spec, config.loss_options, field=_field(config))
    n, c = data.train_labels.num_images, len(data.class_names)
    if issubclass(cls, LossMethod):  # today's losses never read the label matrix: a zero-stride stand-in
        targets = torch.zeros((1, 1), dtype=torch.int8).expand(n, c)
    else:
        targets = torch.from_numpy(data.train_labels.to_dense())
    context = MethodContext(targets=targets, class_names=tuple(data.class_names), mode=config.mode,
                            prior=data.prior, seed=config.seed, epochs=config.epochs,
                            steps_per_epoch=steps_per_epoch, dataset=config.dataset, device=device)
    try:
        method.setup(context)
    except ValueError as e:
        raise InputError(None, _field(config), f"method {spec!r} cannot run on this training set: {e}",
                         f"see `plbench methods show {spec}`") from None
    criterion = getattr(method, "criterion", None)
    if criterion is not None and hasattr(criterion, "validate"):
        criterion.validate = False  # targets were checked once at load (plbench.engine.inputs.check_targets)
    return method.to(device)


@dataclass
class MethodTrainer(Trainer):
    """A :class:`Trainer` whose ``criterion`` is a :class:`~plbench.methods.api.Method`."""

    train_scores: Callable[[bool], Tensor] | None = None  # augment -> (N, C) scores; set once datasets exist
    num_images: int = 0

    def __post_init__(self) -> None:
        self._features: Tensor | None = None
        head = _head(self.model)
        if self.criterion.needs.spatial_maps and head is not None:
            head.register_forward_hook(self._keep_features)

    def _keep_features(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        self._features = inputs[0]

    @property
    def method(self) -> Method:
        return self.criterion  # type: ignore[return-value]

    def compute_loss(self, logits: Tensor, batch: Batch) -> Tensor:
        maps = None
        if self.method.needs.spatial_maps:
            maps = _head(self.model).class_maps(self._features)  # the features of this step's forward
        info = BatchInfo(batch.index.to(logits.device), batch.epoch, batch.step, maps)
        return self.method.loss(logits, batch.targets, info)

    def empty_loss(self, logits: Tensor, batch: Batch) -> Tensor:
        """A method with per-image state writes rows in its loss (``write_rows``: a collective call), so its
        loss runs on the empty batch too (B = 0; its value is not used) and this process joins the gather;
        else the other processes' step waits for it forever."""
        if self.method.needs.per_image_state:
            self.compute_loss(logits.float(), batch)
        return super().empty_loss(logits, batch)

    def on_epoch_start(self, epoch: int) -> None:
        self.method.on_epoch_start(epoch)

    def after_backward(self) -> None:
        sync.average_gradients(self.method.parameters())

    def after_training_epoch(self, epoch: int) -> None:
        train_set = None
        if self.method.needs.train_pass and self.train_scores is not None:
            train_set = TrainingSetPass(self.train_scores, self.num_images)
        self.method.on_epoch_end(epoch, train_set)
        if self.method.needs.per_image_state:
            sync.check_replicas(self.method)

    def extra_state(self) -> dict[str, Any]:
        state = self.method.state_dict()
        return {"method": state} if state else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "method" in state:
            self.method.load_state_dict(state["method"])


def training_set_scorer(config: TrainConfig, data: TrainingData, t: Trainer) -> Callable[[bool], Tensor]:
    """``score(augment) -> float32 (N, C)`` sigmoid scores of every training image in dataset order (the
    plain model, eval mode; NaN rows for undecodable images), the same on every torchrun process. The
    datasets are built on first use and kept."""
    from plbench.engine.evaluate import predict
    from plbench.engine.inputs import make_dataset, make_loader
    from plbench.engine.runtime import unwrap

    datasets: dict[bool, Any] = {}
    n = data.train_labels.num_images

    def score(augment: bool) -> Tensor:
        if augment not in datasets:
            datasets[augment] = make_dataset(config, config.train_split, data.train_paths, data.train_labels,
                                             train=augment, fingerprint=data.train_split.fingerprint,
                                             store=data.feature_stores.get(config.train_split))
        loader = make_loader(dist.shard_dataset(datasets[augment]), config, device=t.device)
        scores, _, index = predict(unwrap(t.model), loader, t.device, mean=t.mean, std=t.std, amp=t.config.amp)
        return sync.gather_scores(torch.from_numpy(index), torch.from_numpy(scores).to(t.device), n)

    return score


def method_record(config: TrainConfig) -> dict[str, Any]:
    """The summary's record of the method: spec, import path, package and version, source sha256
    (:func:`plbench.methods.provenance.method_provenance`)."""
    from plbench.methods.provenance import method_provenance

    return method_provenance(resolve_run_method(config), method_spec(config))

"""The method API: what a partial-label method is to plbench's training loop.

A method is a :class:`Method`, an ``nn.Module`` with named hooks that default to no-ops (the idea of
Lightning's ``Callback``). The loop calls, in this order::

    method.setup(context)                       # once, before anything is written; allocate state here
    for epoch in range(start, epochs):
        method.on_epoch_start(epoch)
        for each batch:
            loss = method.loss(logits, targets, batch)   # logits (B, C), targets (B, C), batch: BatchInfo
            loss.backward(); optimizer.step()            # the method's parameters are in the optimizer
        method.on_epoch_end(epoch, train_set)   # train_set: a TrainingSetPass when needs.train_pass
    (checkpoints save method.state_dict() into last.pt; resume calls setup, then load_state_dict)

What a method may own:

* **hyper-parameters**: keyword arguments of ``__init__`` with defaults (``plbench methods show NAME``
  lists them; ``--loss-option KEY=VALUE`` / ``loss_options`` set them); a default that depends on the
  dataset is None in the signature and listed by :meth:`Method.dataset_defaults`;
* **parameters**: ``nn.Parameter`` attributes, optimised with the model's Adam at ``lr_mult`` times its
  learning rate and without weight decay (override :meth:`Method.parameter_groups` to change that);
* **per-image state**: tensors whose first dimension is the number of training images N, indexed by the
  dataset index of :attr:`BatchInfo.indices` (buffers or parameters, so ``state_dict`` carries them into
  ``last.pt``); declare ``needs = Needs(per_image_state=True)``;
* **epoch hooks**, with a pass over the whole training set at epoch end (``Needs(train_pass=True)``).

Declared needs (:class:`Needs`) are checked by :func:`check_needs` against what the run can give
(:class:`RunSupport`) before the run folder is made, with a message naming the method and the fix.

Under torchrun every process holds the whole method: its hyper-parameters, its parameters and its
per-image state for all N images (replicated, indexed by the global dataset index), while each process
sees only its share of a global batch. Replicas stay identical because

* gradients of the method's parameters are averaged over processes by the loop (as DDP does for the
  model's), so every process takes the same optimizer step;
* per-image state written during a step goes through :meth:`Method.write_rows`, which gathers every
  process's ``(indices, rows)`` (``all_gather``) and writes them on every process; it is a collective
  call: every process must make it, the same number of times per step;
* epoch-end passes (:class:`TrainingSetPass`) give every process the scores of all N images, so a
  deterministic update (EM + APL's pseudo-labels) gives the same state everywhere.

Label codes are plbench's (:mod:`plbench.labels`): ``1`` positive, ``0`` annotated negative, ``-1``
unannotated.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from plbench.errors import InputError

__all__ = ["REQUIRED", "Needs", "MethodContext", "BatchInfo", "TrainingSetPass", "Method", "RunSupport",
           "check_needs", "resolve_method_mode", "check_method_class"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default shown for an option without one (``plbench methods show``)
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Needs:
    """What a method needs from a run; :func:`check_needs` refuses a run that cannot give it."""

    mode: bool = False  # takes a partial-label Mode (ignore | negative | selective | ...), in MethodContext.mode
    prior: bool = False  # accepts a class prior (a prior CSV, MethodContext.prior); a prior given to others is refused
    prior_required: bool = False  # refuses to run without a prior
    spatial_maps: bool = False  # per-step class maps BatchInfo.maps: a head with class_maps() on spatial features
    per_image_state: bool = False  # holds (N, ...) state indexed by dataset index (saved in last.pt)
    train_pass: bool = False  # on_epoch_end gets a TrainingSetPass (scores of every training image)

    def names(self) -> list[str]:
        """The needs that are set, e.g. ``["mode", "prior"]``."""
        return [f.name for f in fields(self) if getattr(self, f.name)]


@dataclass(frozen=True)
class MethodContext:
    """The run facts a method sees once, in :meth:`Method.setup` (identical on every torchrun process).

    ``targets`` is the int8 (N, C) training label matrix on the CPU (row = dataset index, values 1/0/-1);
    ``prior`` float32 (C,) or None; ``mode`` the run's mode value or None; ``epochs`` and
    ``steps_per_epoch`` the run's length; ``dataset`` the dataset's registry name (methods with
    per-dataset settings read it).
    """

    targets: Tensor
    class_names: tuple[str, ...]
    mode: str | None = None
    prior: Tensor | None = None
    seed: int = 0
    epochs: int = 1
    steps_per_epoch: int = 1
    dataset: str = ""
    device: torch.device = torch.device("cpu")

    @property
    def num_images(self) -> int:
        """N."""
        return int(self.targets.shape[0])

    @property
    def num_classes(self) -> int:
        """C."""
        return int(self.targets.shape[1])


@dataclass(frozen=True)
class BatchInfo:
    """What a step knows beyond logits and targets.

    ``indices``: int64 (B,) dataset indices of this process's batch (rows of :attr:`MethodContext.targets`),
    on the logits' device; ``epoch``: 0-based; ``step``: 0-based global optimizer step; ``maps``: the
    head's class maps (B, C, H, W) or (B, C, L), given only to a method with ``needs.spatial_maps``.
    """

    indices: Tensor
    epoch: int = 0
    step: int = 0
    maps: Tensor | None = None


class TrainingSetPass:
    """Scores of every training image at an epoch's end, computed on first use and cached.

    Args:
        compute: ``compute(augment) -> float32 (N, C)`` sigmoid scores in [0, 1] of every training image in
            dataset order, the model in eval mode, without gradient; ``augment`` applies the training
            transforms (the EM + APL authors' pass) instead of the evaluation ones. Rows of images that
            could not be decoded are NaN. Under torchrun every process gets all N rows.
        num_images: N (checked against what ``compute`` returns).
    """

    def __init__(self, compute: Callable[[bool], Tensor], num_images: int) -> None:
        self._compute, self.num_images = compute, int(num_images)
        self._cache: dict[bool, Tensor] = {}

    def probabilities(self, *, augment: bool = False) -> Tensor:
        """float32 (N, C) scores in [0, 1] (see the class docstring)."""
        if augment not in self._cache:
            out = self._compute(augment)
            if out.ndim != 2 or out.shape[0] != self.num_images:
                raise ValueError(f"expected training-set scores of shape ({self.num_images}, C), but got "
                                 f"{tuple(out.shape)}")
            self._cache[augment] = out.float()
        return self._cache[augment]

    def logits(self, *, augment: bool = False) -> Tensor:
        """float32 (N, C) ``logit`` of :meth:`probabilities` (infinite where a float32 score saturated at 0 or 1)."""
        return torch.logit(self.probabilities(augment=augment))


class Method(nn.Module):
    """Base class of partial-label methods (see the module docstring for the hook order).

    Class attributes, read before an instance exists (``plbench methods list/show``, :func:`check_needs`):

    * ``summary``: one line for ``plbench methods list`` (default: the docstring's first line);
    * ``paper``, ``code``: the paper and the authors' repository, or None;
    * ``needs``: a :class:`Needs`;
    * ``default_mode``: the mode a run uses when it names none (``needs.mode`` only), or None: a mode is
      required;
    * ``reduction``: ``mean`` or ``sum`` over the batch (a summed loss is multiplied by the number of
      torchrun processes, as the model's gradients are averaged over them);
    * ``lr_mult``: learning-rate multiplier of the method's own parameters (an instance may override it);
    * ``label``: display name in reports (None: the registry name).

    A subclass implements :meth:`loss` and, as needed, the other hooks. Its ``__init__`` takes only
    hyper-parameters, as keyword arguments with defaults; run-dependent state is built in :meth:`setup`.
    """

    summary: ClassVar[str] = ""
    paper: ClassVar[str | None] = None
    code: ClassVar[str | None] = None
    needs: ClassVar[Needs] = Needs()
    default_mode: ClassVar[str | None] = None
    reduction: ClassVar[str] = "mean"
    lr_mult: float = 1.0
    label: ClassVar[str | None] = None

    # -- hooks -----------------------------------------------------------------------------------------
    def setup(self, context: MethodContext) -> None:
        """Build run-dependent state (per-image buffers, parameters) from ``context``; called once per
        process before training and before a checkpoint's state is loaded. Raise ValueError for a run the
        method cannot handle (it becomes an InputError before anything is written)."""

    def loss(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        """The loss of one step.

        Args:
            logits: float32 (B, C).
            targets: (B, C) in {1, 0, -1}, on the logits' device.
            batch: indices, epoch, step and (when declared) class maps.
        Returns:
            0-dim float tensor; its gradient reaches the model and the method's parameters.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement loss()")

    def on_epoch_start(self, epoch: int) -> None:
        """Before the first step of 0-based ``epoch`` (also when a run resumes inside it)."""

    def on_epoch_end(self, epoch: int, train_set: TrainingSetPass | None) -> None:
        """After the last step of 0-based ``epoch``, before validation and the checkpoint.

        ``train_set`` is a :class:`TrainingSetPass` when ``needs.train_pass``, else None. Changes made here
        are saved with the epoch's checkpoint.
        """

    def forward(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        return self.loss(logits, targets, batch)

    # -- what the loop asks ----------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups of the method's trainable parameters: ``lr_mult`` times the model's learning
        rate, no weight decay; [] without parameters."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        return [{"params": params, "lr_mult": float(self.lr_mult), "weight_decay": 0.0}]

    def write_rows(self, state: Tensor, indices: Tensor, rows: Tensor) -> None:
        """Write ``rows`` (B, ...) into per-image ``state`` (N, ...) at dataset ``indices`` (B,), in place.

        Under torchrun every process's ``(indices, rows)`` are gathered and written on every process (a
        collective call: each process makes it, the same number of times per step), so replicated state
        stays identical; in one process it is ``state[indices] = rows``.
        """
        from plbench.methods.sync import write_rows

        with torch.no_grad():
            write_rows(state, indices, rows)

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Hyper-parameter name -> default (:data:`REQUIRED` when it has none), from ``__init__``."""
        out: dict[str, Any] = {}
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[name] = REQUIRED if p.default is p.empty else p.default
        return out

    @classmethod
    def dataset_defaults(cls) -> dict[str, dict[str, Any]]:
        """Defaults that depend on the run's dataset: dataset name -> {option: value} for options whose
        signature default is None (``setup`` reads :attr:`MethodContext.dataset`); {} when none do.
        ``plbench methods show`` prints them as a table."""
        return {}

    @classmethod
    def one_line(cls) -> str:
        """``summary``, or the first line of the class docstring."""
        if cls.summary:
            return cls.summary
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


@dataclass(frozen=True)
class RunSupport:
    """What a run can give a method, known from its config before anything is written.

    ``spatial_maps_missing`` / ``train_pass_missing``: None when the run gives them, else why not (said in
    the refusal).
    """

    mode: str | None = None
    prior: bool = False
    spatial_maps_missing: str | None = "no class maps"
    train_pass_missing: str | None = None


def resolve_method_mode(cls: type[Method], name: str, mode: str | None) -> str | None:
    """The mode a run of method ``cls`` uses: ``mode``, else ``cls.default_mode``; None without ``needs.mode``.

    Raises:
        ValueError: a mode for a method without modes, no mode (and no default) for a method with modes,
            or an unknown mode (lists the modes).
    """
    from plbench.choices import Mode

    if not cls.needs.mode:
        if mode is not None:
            raise ValueError(f"method {name!r} takes no partial-label mode, but got mode {str(mode)!r}; "
                             "leave out the mode")
        return None
    if mode is None:
        if cls.default_mode is None:
            raise ValueError(f"method {name!r} needs a mode; one of {', '.join(m.value for m in Mode)}")
        mode = cls.default_mode
    return Mode.parse(mode).value


def check_needs(cls: type[Method], name: str, support: RunSupport, *, field: str = "--method") -> None:
    """Refuse a run that cannot give method ``cls`` what it declares (before anything is written).

    Raises:
        InputError: naming the method, the missing need and the fix (a mode, a prior, spatial maps, a
            training-set pass), or a mode / prior given to a method that takes none.
    """
    needs = cls.needs
    if needs.mode and support.mode is None:
        raise InputError(None, "--mode", f"method {name!r} needs a partial-label mode, but the run has none",
                         "pass --mode (ignore, negative or selective)")
    if not needs.mode and support.mode is not None:
        raise InputError(None, "--mode", f"method {name!r} takes no partial-label mode, but got --mode "
                         f"{support.mode}", "leave out --mode for this method")
    if support.prior and not (needs.prior or needs.prior_required):
        raise InputError(None, "--prior", f"method {name!r} does not use a class prior",
                         "leave out --prior, or use a method that takes one (pasl with --mode selective)")
    if needs.prior_required and not support.prior:
        raise InputError(None, "--prior", f"method {name!r} needs a class prior, but none was given",
                         "pass --prior PRIOR.csv (from `plbench estimate-prior`)")
    if needs.spatial_maps and support.spatial_maps_missing is not None:
        raise InputError(None, field, f"method {name!r} needs the head's spatial class maps, but this run has "
                         f"none ({support.spatial_maps_missing})",
                         "fine-tune on images, or use a feature store written with `plbench features extract "
                         "--tokens`, with a head that has class maps (--head boostlu)")
    if needs.train_pass and support.train_pass_missing is not None:
        raise InputError(None, field, f"method {name!r} needs a pass over the training set at epoch end, but "
                         f"this run cannot make one ({support.train_pass_missing})", "use another method")


def check_method_class(obj: Any, name: str, *, field: str = "--method") -> type[Method]:
    """``obj`` if it is a well-formed :class:`Method` subclass.

    Raises:
        InputError: not a class, not a Method subclass, ``loss`` not implemented, ``needs`` not a
            :class:`Needs`, a ``reduction`` other than mean/sum, a ``lr_mult`` that is not a positive
            finite number, or an unknown ``default_mode``.
    """
    fix = "subclass plbench.methods.api.Method, implement loss(logits, targets, batch) (see `plbench methods show an`)"
    if not (isinstance(obj, type) and issubclass(obj, Method)):
        what = f"the class {obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise InputError(None, field, f"{name!r} is {what}, not a subclass of plbench.methods.api.Method", fix)
    if obj.loss is Method.loss:
        raise InputError(None, field, f"method {name!r} ({obj.__qualname__}) does not implement loss()", fix)
    problems = []
    if not isinstance(obj.needs, Needs):
        problems.append(f"needs is a {type(obj.needs).__name__}, expected plbench.methods.api.Needs")
    if obj.reduction not in ("mean", "sum"):
        problems.append(f"reduction is {obj.reduction!r}, expected 'mean' or 'sum'")
    lr_mult = obj.lr_mult
    if not isinstance(lr_mult, (int, float)) or isinstance(lr_mult, bool) or not math.isfinite(lr_mult) or lr_mult <= 0:
        problems.append(f"lr_mult is {lr_mult!r}, expected a positive finite number")
    if obj.default_mode is not None:
        from plbench.choices import Mode

        try:
            Mode.parse(obj.default_mode)
        except ValueError as e:
            problems.append(f"default_mode: {e}")
    if problems:
        raise InputError(None, field, f"method {name!r} ({obj.__qualname__}) is malformed: {'; '.join(problems)}",
                         "fix these class attributes")
    return obj

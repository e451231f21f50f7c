"""Run configuration: a frozen dataclass built by the CLI, saved as ``config.json``, the only engine input.

Every construction is validated by pydantic from the field annotations (strict: ``"3"`` is not an int,
``2.5`` is not an int, ``5`` is not a string; unknown keys refused), and a failure is an
:class:`~plbench.errors.InputError` naming the key, whether the values came from a file, the CLI or code.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from plbench.choices import Augment, Choice, MissingEmbeddings, Mode, Recipe
from plbench.embeddings.encoders import DEFAULT_CLIP_MODEL
from plbench.errors import InputError


def _fspath(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _member_of(enum: type[Choice]) -> Callable[[str], str]:
    def check(value: str) -> str:
        return enum.parse(value).value  # ValueError lists the allowed values

    return check


def _head_spec(value: str) -> str:
    from plbench.heads import head_spec  # imports torch: only when a config is built

    return head_spec(str(value))  # ValueError: unknown head (lists the available ones) or an import failure


#: a path held as a string (a ``pathlib.Path`` given in code is turned into one)
PathStr = Annotated[str, BeforeValidator(_fspath)]
ModeName = Annotated[str, AfterValidator(_member_of(Mode))]
#: a built-in head, an installed plug-in (entry points ``plbench.heads``) or ``package.module:Name``
HeadName = Annotated[str, AfterValidator(_head_spec)]
RecipeName = Annotated[str, AfterValidator(_member_of(Recipe))]
AugmentName = Annotated[str, AfterValidator(_member_of(Augment))]
MissingEmbeddingsName = Annotated[str, AfterValidator(_member_of(MissingEmbeddings))]

_FIX = "correct the value in the config file"
_HEAD_FIX = ("use a built-in head (gap, ml-decoder, boostlu), an installed plug-in, or package.module:Name "
             "importable here (installed, or its folder on PYTHONPATH)")


@dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False))
class TrainConfig:
    """Everything that defines a training run (and hence its results).

    Raises:
        InputError: on construction (also through :meth:`replace`), an unknown key, a value of another type
            than its annotation (strict: no string-to-number or float-to-int conversion; an int is a float),
            a number outside its range, an unknown closed choice (recipe, augment, mode) or a head that
            :func:`plbench.heads.resolve_head` refuses (unknown, or not importable).
    """

    dataset: str = "synthetic"  # registry name, see plbench.datasets.list_datasets()
    data_root: PathStr = "data/synthetic"
    train_split: str = "train"
    val_split: str = "val"  # evaluated with its own (complete or natural) labels, never simulated
    # a split of the same dataset also scored every epoch, whose mAP chooses the epoch reported beside the final
    # one and kept as best.pt (the single-positive protocol: "train2014-spml-val", 20 % of train2014 held out);
    # None: no held-out selection (best.pt and best_val_map are then selected on val_split)
    select_split: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)  # loader options (strict, fo_field, ...)
    simulation: PathStr | None = None  # parquet from `plbench simulate`; None = the dataset's own train labels
    mode: ModeName | None = "selective"  # plbench.choices.Mode; None for losses without modes (an, epr, ...)
    loss: str = "pasl"  # loss registry name, see plbench.losses.create_loss
    loss_options: dict[str, Any] = field(default_factory=dict)  # overrides of the loss (or method) defaults
    # a method trained instead of `loss`: a name of `plbench methods list`, an installed entry point or
    # package.module:Name (plbench.methods.registry); None: the loss `loss` (every loss is a built-in method)
    method: str | None = None
    prior: PathStr | None = None  # prior CSV (Classes,avg_pred) for mode=selective
    backbone: str = "resnet10t"  # any timm model name
    pretrained: bool = False  # ImageNet weights: timm (cache or download), else an installed weight package
    checkpoint: PathStr | None = None  # local backbone weights file (.pt/.pth/.safetensors)
    # gap | ml-decoder | boostlu, an installed plug-in or package.module:Name (plbench.heads.resolve_head)
    head: HeadName = "gap"
    head_options: dict[str, Any] = field(default_factory=dict)
    init_head: PathStr | None = None  # run folder whose best checkpoint's head starts this run's ("linear init")
    features: PathStr | None = None  # folder from `plbench features extract`: train the head only ("linear")
    recipe: RecipeName = "light"  # plbench.choices.Recipe the settings came from (see plbench.engine.recipes)
    augment: AugmentName = "flip"  # plbench.choices.Augment: flip | cutout-randaugment (csl)
    # model EMA decay per optimizer step; 0 = no EMA (csl: 0.9997); 1 would never move
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0
    image_size: Annotated[int, Field(ge=16)] = 224  # square input side, pixels
    batch_size: Annotated[int, Field(ge=1)] = 64
    epochs: Annotated[int, Field(ge=1)] = 10
    lr: Annotated[float, Field(ge=0)] = 2e-4  # peak learning rate of the one-cycle schedule (CSL: 2e-4, Adam)
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    warmup_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2  # fraction of steps rising to the peak LR
    # one_cycle (CSL: OneCycleLR, peak `lr`) or constant (`lr` throughout: Cole et al.'s single-positive code)
    lr_schedule: Literal["one_cycle", "constant"] = "one_cycle"
    head_lr_mult: Annotated[float, Field(gt=0)] = 1.0  # the head's learning rate is lr x this (spml: 10)
    seed: Annotated[int, Field(ge=0)] = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # autocast on CUDA: bf16, or fp16 with a gradient scaler on GPUs without bf16
    compile: bool = False  # torch.compile the model (CUDA: worth it for long runs; minutes of compilation)
    workers: Annotated[int, Field(ge=0)] = 0  # DataLoader worker processes
    preload: bool = False  # decode and resize every image once into memory (small datasets, CPU)
    cache_dir: PathStr | None = None  # pre-resized image cache from `plbench data cache`
    max_train_images: Annotated[int, Field(ge=1)] | None = None  # use only the first N training images
    out_dir: PathStr = "runs"
    run_name: str | None = None  # default: <dataset>-<labels tag>-<mode>-<backbone>-s<seed>
    tag: str | None = None  # label-setting tag shown in reports (default: from the simulation file)
    # zero-shot (plbench.engine.zero_shot): train on the seen classes of a split, evaluate ZSL / GZSL
    zsl_split: str | None = None  # "nuswide" (925 / 81 from the class files) or a split file (JSON or text)
    class_embeddings: str | None = None  # embedding source: glove | minilm | random | clip:FILE | a file
    prompt: str | None = None  # template with one {} for the class name (encoders only), recorded in the run
    # CLIP-Decoder (plbench.engine.zero_shot_alignment): loss = classification_weight * classification
    # + alignment_weight * image-caption alignment; 0 and 1 leave the loss as it is
    alignment_weight: Annotated[float, Field(ge=0)] = 0.0
    classification_weight: Annotated[float, Field(ge=0)] = 1.0
    # plbench.choices.MissingEmbeddings: a class without a vector is an error, or gets a zero vector (listed in
    # the summary's zero_shot block)
    missing_embeddings: MissingEmbeddingsName = "error"
    clip_model: str = DEFAULT_CLIP_MODEL  # open_clip architecture of a clip:FILE class_embeddings checkpoint
    # CLIP-Decoder's alignment projections and logit scale: learnt with the model (the paper) or frozen at their
    # random initialisation (the authors' published runs: see plbench.losses.alignment)
    alignment_trainable: bool = False

    @model_validator(mode="wrap")
    @classmethod
    def _as_input_error(cls, data: Any, handler: Callable[[Any], "TrainConfig"]) -> "TrainConfig":
        try:
            return handler(data)
        except ValidationError as e:
            raise _input_error(e) from None

    @property
    def protocol(self) -> str:
        """``linear`` (head on cached features), ``linear-init`` (end to end, the head started from another
        run's: ``init_head``) or ``fine-tuned`` (see plbench.choices.Protocol)."""
        if self.features is not None:
            return "linear"
        return "linear-init" if self.init_head is not None else "fine-tuned"

    @property
    def headline_model(self) -> str:
        """The model whose final-epoch mAP is the headline number, fixed before training: ``ema`` or ``plain``."""
        return "ema" if self.ema_decay > 0 else "plain"

    def input_files(self) -> tuple[str, ...]:
        """The user files the run reads whose contents ``config.json`` records only by path: the backbone
        ``checkpoint``, a ``zsl_split`` file and a ``class_embeddings`` file (``clip:FILE``: FILE), in that
        order. Their sha256 go into the run folder (``inputs.json``) and into a sweep stage's hash."""
        from plbench.embeddings import CLIP_PREFIX, NAMED_ENCODERS
        from plbench.zsl.splits import NUSWIDE

        files = [self.checkpoint] if self.checkpoint else []
        if self.zsl_split and self.zsl_split != NUSWIDE:
            files.append(self.zsl_split)
        source = self.class_embeddings
        if source and source not in NAMED_ENCODERS:
            files.append(source[len(CLIP_PREFIX):] if source.startswith(CLIP_PREFIX) else source)
        return tuple(str(f) for f in files)

    def to_dict(self) -> dict[str, Any]:
        """What ``config.json`` holds: every field. A run folder compares it with :data:`DEFAULTS` filling in
        the keys an older ``config.json`` lacks (:meth:`plbench.artifacts.runs.RunFolder.open`)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path | None = None) -> "TrainConfig":
        """Build from a dict (a parsed ``config.json``); errors name ``source``.

        Raises:
            InputError: as the constructor, with ``source`` as the file.
        """
        try:
            return cls(**data)
        except InputError as e:
            raise InputError(source, e.field, e.problem, e.fix) from None

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        from plbench.artifacts.files import read_json

        data = read_json(path, "pass a config.json written by plbench")
        if not isinstance(data, dict):
            raise InputError(path, "config", f"expected a JSON object, but got {type(data).__name__}",
                             "pass a config.json written by plbench")
        return cls.from_dict(data, path)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))
#: every field's default: a ``config.json`` written before a field existed ran with it (``git log -p
#: plbench/config.py``: method, zsl_split, class_embeddings, prompt, compile, ... came later), so a missing key
#: stands for its default when a run folder is resumed or compared
DEFAULTS: dict[str, Any] = {
    f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    for f in dataclasses.fields(TrainConfig)}
#: fields that may be null (None)
_OPTIONAL = frozenset(name for name, hint in typing.get_type_hints(TrainConfig).items()
                      if type(None) in typing.get_args(hint))
_TYPE_WORDS = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool",
               "dict_type": "an object (a table of key = value)"}
_BOUNDS = ("greater_than_equal", "greater_than", "less_than_equal", "less_than")


def _input_error(error: ValidationError) -> InputError:
    """The first problem of a pydantic error as plbench's one-paragraph error (no file: callers add it)."""
    errors = error.errors(include_url=False)

    def key(err: dict[str, Any]) -> str:
        loc = err["loc"][0] if err["loc"] else "config"
        return FIELD_NAMES[loc] if isinstance(loc, int) and loc < len(FIELD_NAMES) else str(loc)

    unknown = sorted(key(e) for e in errors if e["type"] in ("unexpected_keyword_argument",
                                                             "unexpected_positional_argument"))
    if unknown:
        return InputError(None, unknown[0], f"unknown config key(s) {unknown}", f"use only: {', '.join(sorted(FIELD_NAMES))}")
    err = min(errors, key=lambda e: FIELD_NAMES.index(key(e)) if key(e) in FIELD_NAMES else len(FIELD_NAMES))
    name, kind, value, ctx = key(err), err["type"], err.get("input"), err.get("ctx") or {}
    if kind in _TYPE_WORDS:
        problem = f"expected {_TYPE_WORDS[kind]}{' or null' if name in _OPTIONAL else ''}, but got {value!r}"
    elif kind in _BOUNDS:
        problem = f"expected a value {_bounds_words(name, ctx)}, but got {value!r}"
    elif kind == "finite_number":
        problem = f"expected a finite number, but got {value!r}"
    elif kind == "value_error":
        problem = str(ctx.get("error", err["msg"]))
    else:
        problem = f"{err['msg']}, but got {value!r}"
    return InputError(None, name, problem, _HEAD_FIX if name == "head" else _FIX)


def _bounds_words(name: str, ctx: dict[str, Any]) -> str:
    """``">= 16"``, ``"in [0, 1)"``: the range of a numeric field from its annotation (pydantic's error names
    only the bound that failed), else the failed bound ``ctx``."""
    found = {k: getattr(m, k) for m in TrainConfig.__pydantic_fields__[name].metadata
             for k in ("ge", "gt", "le", "lt") if getattr(m, k, None) is not None} or ctx
    low = next(((b, found[k]) for k, b in (("ge", "["), ("gt", "(")) if k in found), None)
    high = next(((b, found[k]) for k, b in (("le", "]"), ("lt", ")")) if k in found), None)
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    return f"{'<=' if high[0] == ']' else '<'} {high[1]}"

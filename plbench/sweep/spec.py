"""Experiment files (``plbench sweep EXPERIMENT.toml``): parse and validate into a :class:`SweepSpec`.

Schema (every table and key is optional unless marked *required*; an unknown key anywhere is an
:class:`~plbench.errors.InputError` that names it and lists the allowed ones)::

    [sweep]
    name = "csl_coco"              # required; the report goes to reports/<name>/
    title = "..."                  # report title (default: the name)
    notes = "..."                  # Markdown shown in the report
    reference = "bce:ignore"       # column the report's paired differences are taken against

    [[datasets]]                   # required, one or more
    name = "coco"                  # required; registry name (`plbench data list`)
    id = "coco"                    # name used in file and run names (default: name); unique per sweep
    data_root = "data/coco"        # required; relative to the working folder; "{out}" = the sweep root
    options = {}                   # loader options (strict, fo_field, openimages_labels, ...)
    train_split = "train"
    val_split = "val"
    # select_split = "train-spml-val"  # scored every epoch to choose the epoch (`plbench train --select-split`;
                                   # the single-positive protocol's held-out 20 %); default: none
    cache = false                  # decode + resize every image once into DATA_ROOT/plbench_cache
    synthetic = { train = 1600, val = 400, num_classes = 20, image_size = 96, seed = 0 }
                                   # name = "synthetic" only: generate the data as a stage

    [[labels]]                     # required, one or more
    scheme = "fpc"                 # required; fpc | rps | spl | full | natural
    params = [1000]                # fpc: positives/negatives kept per class; rps: p (hide probability);
                                   # not allowed for spl/full/natural
    # bias = "size"                # spl only: which positive is kept (`plbench simulate --bias`): uniform
                                   # (default) | size | largest | location | frequency (Arroyo et al. 2023);
                                   # size/largest/location read COCO instances (datasets coco, synthetic)

    [[methods]]                    # required, one or more
    loss = "pasl"                  # a loss registry name (pasl, asl, bce, an, an_ls, wan, epr, ll_r, ...)
    # method = "role"              # or (instead of loss) a method: a `plbench methods list` name, an
                                   # installed entry point, or package.module:Name (importable by workers)
    mode = "selective"             # a mode or a list of modes; required for losses with modes,
                                   # not allowed for those without (an, an_ls, wan, epr, ll_r)
    loss_options = {}              # constructor arguments of the loss (or options of the method)
    schemes = ["fpc"]              # only with these label schemes (default: all)
    # heads = ["boostlu"]          # this method's heads instead of the grid's `heads` axis (same syntax)

    heads = ["gap"]                # names, or tables { name = "ml-decoder", options = {...} }; a name is
                                   # gap | ml-decoder | boostlu, an installed plug-in or package.module:Name
    backbones = ["resnet10t"]      # timm names, or tables { name, pretrained = false, checkpoint = "w.pt" }
    seeds = [0]                    # one simulation and one training seed each (same seed = same labels)
    protocols = ["fine-tuned"]     # fine-tuned | linear (head on features from `plbench features extract`)
                                   # | linear-init (a linear run first, then fine-tuned from its best head)

    [training]                     # TrainConfig fields the grid does not set (recipe, epochs, image_size,
    recipe = "csl"                 # batch_size, lr, ...); `recipe` fills the others first (default: the
    torchrun_nproc = 1             # dataset's default recipe); torchrun_nproc > 1 trains with torchrun

    [zero_shot]                    # zero-shot runs (heads must be ml-decoder): a grid axis of
    splits = ["nuswide"]           # required; zsl_split values: "nuswide" or split files
    class_embeddings = ["glove"]   # required; sources: glove | minilm | random | clip:FILE | a file
    prompts = ["a photo of a {}"]  # prompt templates (encoders only; default: none)
    alignment_weights = [0.0]      # CLIP-Decoder's alignment loss weight (default: 0, off)

    [prior]                        # the Ignore-mode model whose mean prediction is the Selective prior
    loss = "pasl"                  # default: the selective method's own loss and loss_options
    loss_options = {}

    [linear_init]                  # protocol "linear-init": TrainConfig fields of its linear phase (as
    epochs = 25                    # [training], recipe excluded; default: epochs 25, the rest [training]'s)
    lr = 1e-4

    [features]                     # options of the feature extraction ("linear", "linear-init"); device, workers
    batch_size = 128               # and amp default to [training]'s

    [slurm]                        # --launcher slurm: submitit parameters
    partition = "gpu"              # also account, qos, constraint, timeout_min, cpus_per_task, mem_gb,
    gpus_per_node = 1              # gpus_per_node (GPU stages), additional_parameters = {...}, setup = [...]

The grid is datasets x labels x seeds x backbones x heads x protocols x zero-shot settings x methods (a
method whose ``schemes`` excludes a label setting is skipped there; a method with its own ``heads`` runs
with those heads only, and they join the heads axis for it alone; without ``[zero_shot]`` there is one
setting, no zero-shot, and the stage hashes are those of an experiment written before the table existed).
The zero-shot settings are splits x class_embeddings x prompts x alignment_weights.

Protocol ``linear-init`` (Cole et al. 2021's LinearInit.) trains each grid run twice: a linear run on the
frozen features (same method, labels and seed; ``[linear_init]`` overrides its settings), then the
end-to-end run whose head starts from that run's best checkpoint (``init_head``); the report shows the
second, as protocol ``linear-init``.

The shape and types of every table are a strict pydantic schema (``_Experiment`` and its tables,
``extra="forbid"``); ``[training]`` values are checked by :class:`~plbench.config.TrainConfig` itself; what
needs a registry (datasets, losses and their options, timm models, label parameters) is checked after.
Every error is one :class:`~plbench.errors.InputError` naming the dotted key path (``datasets[0].name``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Mapping, NoReturn

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model
from pydantic import model_validator

from plbench.choices import Choice, Head, Mode, Protocol
from plbench.config import TrainConfig
from plbench.errors import InputError


class LabelSource(Choice):
    """Where a run's training labels come from."""

    FULL = "full"  # the dataset's own complete labels
    NATURAL = "natural"  # the dataset's own labels, partial by construction (LVIS, OpenImages)
    FPC = "fpc"  # simulated: n positives and n negatives kept per class
    RPS = "rps"  # simulated: each annotation hidden with probability p
    SPL = "spl"  # simulated: a single positive per image

    @property
    def simulated(self) -> bool:
        return self not in (LabelSource.FULL, LabelSource.NATURAL)


#: TrainConfig fields set by the grid itself; everything else may appear in [training]
GRID_FIELDS = frozenset({
    "dataset", "data_root", "train_split", "val_split", "select_split", "dataset_options", "simulation", "mode", "loss",
    "loss_options", "method", "prior", "backbone", "pretrained", "checkpoint", "head", "head_options", "features",
    "seed", "out_dir", "run_name", "tag", "init_head",
})
#: protocol "linear-init": its linear phase's settings unless [linear_init] sets them (Cole et al.'s code:
#: ``P['linear_init_params']``, 25 epochs)
LINEAR_INIT_DEFAULTS: dict[str, Any] = {"epochs": 25}
SWEEP_TRAINING_KEYS = ("torchrun_nproc",)


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # registry name
    id: str  # name in file and run names
    data_root: str  # may contain "{out}"
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    cache: bool = False
    synthetic: dict[str, Any] | None = None  # write_synthetic_coco arguments
    select_split: str | None = None  # TrainConfig.select_split of its runs

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits its runs read (cached images, extracted features): train, val, then the selection split
        when set (so a dataset without one has the stages, and hashes, it always had)."""
        return (self.train_split, self.val_split, *((self.select_split,) if self.select_split else ()))

    def root(self, out: str | Path) -> str:
        """``data_root`` with ``{out}`` replaced by the sweep root."""
        return self.data_root.replace("{out}", str(out))

    def cache_root(self, out: str | Path) -> Path:
        """Where the image cache of the dataset goes (``cache = true``): ``<root>/plbench_cache``."""
        return Path(self.root(out)) / "plbench_cache"


@dataclass(frozen=True)
class LabelSetting:
    source: LabelSource
    param: int | float | None = None
    bias: str | None = None  # spl only: a Bias value other than uniform (None: the uniform draw)

    @property
    def scheme(self) -> str:
        """The scheme a simulation file records: the source's value, ``spl-<bias>`` for a biased draw."""
        return self.source.value if self.bias is None else f"{self.source.value}-{self.bias}"

    @property
    def tag(self) -> str:
        """The label tag the engine and reports use: ``full``, ``natural``, ``fpc1000``, ``rps0.5``, ``spl``,
        ``spl-size``."""
        from plbench.artifacts.simulations import format_param

        return f"{self.scheme}{format_param(self.param)}"


@dataclass(frozen=True)
class MethodSpec:
    loss: str  # the loss trained (TrainConfig.loss); with ``method`` set, TrainConfig's default, unused
    mode: str | None  # None for losses and methods without modes
    loss_options: dict[str, Any] = field(default_factory=dict)  # options of the loss, or of the method
    schemes: tuple[str, ...] | None = None  # LabelSource values it applies to; None = all
    method: str | None = None  # TrainConfig.method: a method trained instead of ``loss``
    heads: tuple["HeadSpec", ...] | None = None  # its own heads axis; None = the grid's

    @property
    def name(self) -> str:
        """The method or loss, as written in the experiment file."""
        return self.method if self.method is not None else self.loss

    def applies_to(self, labels: LabelSetting) -> bool:
        return self.schemes is None or labels.source.value in self.schemes

    def runs_with(self, head: "HeadSpec", grid_heads: tuple["HeadSpec", ...]) -> bool:
        """Whether the grid's runs with ``head`` include this method (its own heads, else the grid's)."""
        return head in (self.heads if self.heads is not None else grid_heads)


@dataclass(frozen=True)
class HeadSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    pretrained: bool = False
    checkpoint: str | None = None


#: TrainConfig fields a [zero_shot] setting sets (so [training] may not)
ZERO_SHOT_FIELDS = ("zsl_split", "class_embeddings", "prompt", "alignment_weight")


@dataclass(frozen=True)
class ZeroShotSetting:
    """One point of the [zero_shot] axis: the TrainConfig values of :data:`ZERO_SHOT_FIELDS`."""

    zsl_split: str
    class_embeddings: str
    prompt: str | None = None
    alignment_weight: float = 0.0

    def values(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in ZERO_SHOT_FIELDS}


@dataclass(frozen=True)
class SweepSpec:
    """A validated experiment file. Build it with :func:`load_spec` or :func:`parse_spec`."""

    name: str
    datasets: tuple[DatasetSpec, ...]
    labels: tuple[LabelSetting, ...]
    methods: tuple[MethodSpec, ...]
    heads: tuple[HeadSpec, ...] = (HeadSpec("gap"),)
    backbones: tuple[BackboneSpec, ...] = (BackboneSpec("resnet10t"),)
    seeds: tuple[int, ...] = (0,)
    protocols: tuple[str, ...] = (Protocol.FINE_TUNED.value,)
    training: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides (recipe included)
    torchrun_nproc: int = 1
    prior: dict[str, Any] = field(default_factory=dict)  # loss / loss_options of the prior model
    features: dict[str, Any] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    notes: str = ""
    reference: str | None = None  # the report's reference column (None: the report's default)
    source: str | None = None  # the TOML file, for messages and the report's command line
    zero_shot: tuple[ZeroShotSetting, ...] = ()  # () : no zero-shot axis
    linear_init: dict[str, Any] = field(default_factory=dict)  # [linear_init] as written (defaults not filled)

    def head_axis(self) -> tuple[HeadSpec, ...]:
        """Every head of the grid: the ``heads`` axis, then the methods' own heads not on it, in order."""
        out: list[HeadSpec] = []
        for h in [*self.heads, *(h for m in self.methods for h in (m.heads or ()))]:
            if h not in out:
                out.append(h)
        return tuple(out)

    def linear_phase(self) -> dict[str, Any]:
        """TrainConfig overrides of protocol linear-init's linear phase: :data:`LINEAR_INIT_DEFAULTS`, then
        ``[linear_init]``."""
        return {**LINEAR_INIT_DEFAULTS, **self.linear_init}


# -- schema: the shape and types of each table (pydantic), then the checks that need registries -------------


def _listed(value: Any) -> Any:
    """A scalar where a list is allowed (``mode = "ignore"``) becomes a one-item list."""
    return value if isinstance(value, list) else [value]


def _choice(enum: type[Choice]) -> Any:
    """A string that must be a value of ``enum`` (the error lists the allowed values)."""
    return Annotated[str, AfterValidator(lambda v: enum.parse(v).value)]


def _one_or_more(item: Any) -> Any:
    """A non-empty list, or one value standing for a list of one."""
    return Annotated[list[item], BeforeValidator(_listed), Field(min_length=1)]


def _non_empty(item: Any) -> Any:
    return Annotated[list[item], Field(min_length=1)]


Text = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Sweep(_Table):
    name: Text
    title: Text | None = None
    notes: Text | None = None
    reference: Text | None = None


class _Synthetic(_Table):  # write_synthetic_coco arguments; unset ones keep its defaults
    train: Positive | None = None
    val: Positive | None = None
    num_classes: Positive | None = None
    image_size: Positive | None = None
    seed: Count | None = None


class _Dataset(_Table):
    name: Text
    id: Text | None = None
    data_root: Text
    options: dict[str, Any] = {}
    train_split: Text = "train"
    val_split: Text = "val"
    select_split: Text | None = None
    cache: bool = False
    synthetic: _Synthetic | None = None


def _bias_choice(value: str) -> str:
    from plbench.simulate_biased import Bias

    return Bias.parse(value).value


class _Labels(_Table):
    scheme: _choice(LabelSource)
    params: _one_or_more(Any) | None = None  # checked per scheme by plbench.simulate.normalise_param
    bias: Annotated[str, AfterValidator(_bias_choice)] | None = None  # spl only (checked in _labels)


class _Method(_Table):
    loss: Text | None = None
    method: Text | None = None  # instead of loss: a `plbench methods list` name, entry point or module:Name
    mode: _one_or_more(_choice(Mode)) | None = None
    loss_options: dict[str, Any] = {}
    schemes: _one_or_more(_choice(LabelSource)) | None = None
    heads: "_HeadList | None" = None  # this method's heads instead of the grid's


def _named(enum: type[Choice] | Callable[[str], str] | None = None) -> Callable[[Any], Any]:
    """A bare name stands for ``{ name = ... }`` (checked against ``enum``, or by the function given, here, so
    the error names the item)."""
    check = enum.parse if isinstance(enum, type) else enum

    def table(value: Any) -> Any:
        if isinstance(value, str):
            return {"name": str(check(value)) if check is not None else value}
        return value

    return table


def _head_spec(value: str) -> str:
    from plbench.heads import head_spec  # built-in, installed or package.module:Name

    return head_spec(value)


class _Head(_Table):
    name: Annotated[str, AfterValidator(_head_spec)]
    options: dict[str, Any] = {}


_HeadList = _non_empty(Annotated[_Head, BeforeValidator(_named(_head_spec))])
_Method.model_rebuild()


class _Backbone(_Table):
    name: Text
    pretrained: bool = False
    checkpoint: Text | None = None


class _Prior(_Table):
    loss: Text | None = None
    loss_options: dict[str, Any] | None = None


class _Features(_Table):  # unset ones default to [training]'s
    batch_size: Positive | None = None
    workers: Count | None = None
    device: Text | None = None
    amp: bool | None = None


SLURM_GENERIC = ("timeout_min", "cpus_per_task", "mem_gb", "gpus_per_node", "nodes", "tasks_per_node")
SLURM_SPECIFIC = ("partition", "account", "qos", "constraint", "exclude", "nodelist", "gres", "comment",
                  "additional_parameters", "setup", "srun_args")
_SLURM_TYPES = {"additional_parameters": dict[str, Any], "setup": list[str], "srun_args": list[str]}
_Slurm = create_model(  # submitit's generic parameters are counts; its slurm_* ones strings unless listed
    "_Slurm", __base__=_Table,
    **{k: (Count | None, None) for k in SLURM_GENERIC},
    **{k: (_SLURM_TYPES.get(k, Text) | None, None) for k in SLURM_SPECIFIC},
)


class _ZeroShot(_Table):
    splits: _one_or_more(Text)
    class_embeddings: _one_or_more(Text)
    prompts: _one_or_more(Text) | None = None
    alignment_weights: _one_or_more(Annotated[float, Field(ge=0)]) | None = None


class _Experiment(_Table):
    sweep: _Sweep
    datasets: _non_empty(_Dataset)
    labels: _non_empty(_Labels)
    methods: _non_empty(_Method)
    heads: _HeadList = [_Head(name=Head.GAP.value)]
    backbones: _non_empty(Annotated[_Backbone, BeforeValidator(_named())]) = [_Backbone(name="resnet10t")]
    seeds: _non_empty(Count) = [0]
    protocols: _non_empty(_choice(Protocol)) = [Protocol.FINE_TUNED.value]
    training: dict[str, Any] = {}  # TrainConfig fields, checked by TrainConfig itself
    prior: _Prior = _Prior()
    features: _Features = _Features()
    slurm: _Slurm = _Slurm()
    zero_shot: _ZeroShot | None = None
    linear_init: dict[str, Any] | None = None  # TrainConfig fields, checked by TrainConfig itself

    @model_validator(mode="before")
    @classmethod
    def _sweep_table_first(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "sweep" not in data:  # so the error names sweep.name
            return {**data, "sweep": {}}
        return data


TOP_KEYS = tuple(_Experiment.model_fields)
SYNTHETIC_KEYS = tuple(_Synthetic.model_fields)
FEATURES_KEYS = tuple(_Features.model_fields)


def _strip(tp: Any) -> Any:
    """The type inside ``Annotated[...]`` and ``X | None``."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _table_at(loc: tuple) -> type[BaseModel] | None:
    """The schema table at a pydantic error location (to list its keys), or None."""
    tp: Any = _Experiment
    for part in loc:
        tp = _strip(tp)
        if isinstance(part, int):
            tp = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    tp = _strip(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _dotted(loc: Iterable[Any]) -> str:
    """``("datasets", 0, "name")`` -> ``"datasets[0].name"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_error(error: ValidationError, source: str | Path | None) -> InputError:
    """The first problem (an unknown key first: a typo explains the rest) as a one-paragraph InputError."""
    errors = error.errors(include_url=False)
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc, kind, value, ctx = tuple(err["loc"]), err["type"], err.get("input"), err.get("ctx") or {}
    where = _dotted(loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        table = _table_at(loc[:-1])
        allowed = ", ".join(table.model_fields) if table is not None else "the keys documented in plbench.sweep.spec"
        hint = ""
        if len(loc) > 1 and key in TOP_KEYS:
            hint = (f" ({key} is a top-level key: in TOML it must come before the first [table] or [[array]] "
                    "header, else it belongs to that table)")
        return InputError(source, where, f"unknown key {key!r}{hint}", f"use only: {allowed}")
    if kind == "missing":
        return InputError(source, where, "required, but missing", f"add {loc[-1]} = ...")
    if kind in ("string_type", "string_too_short"):
        return InputError(source, where, f"expected a non-empty string, but got {value!r}", "write it in quotes")
    if kind == "bool_type":
        return InputError(source, where, f"expected true or false, but got {value!r}", "write true or false")
    if kind == "int_type":
        return InputError(source, where, f"expected an integer, but got {value!r}", "write a whole number")
    if kind == "greater_than_equal":
        return InputError(source, where, f"expected an integer >= {ctx['ge']}, but got {value!r}", "correct the value")
    if kind in ("list_type", "too_short"):
        return InputError(source, where, f"expected a non-empty list, but got {value!r}", f"write {where} = [ ... ]")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return InputError(source, where, f"expected a table, but got {value!r}",
                          f"write it as [{where}] or {where} = {{ ... }}")
    if kind == "value_error":
        return InputError(source, where, str(ctx.get("error", err["msg"])), "use one of the allowed values")
    return InputError(source, where, f"{err['msg']}, but got {value!r}", "correct the value")


class _Checker:
    """Raises InputErrors that name the file and the dotted key (checks the schema cannot express)."""

    def __init__(self, source: str | Path | None) -> None:
        self.source = source

    def fail(self, where: str, problem: str, fix: str) -> NoReturn:
        raise InputError(self.source, where, problem, fix)

    def keys(self, table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
        allowed = list(allowed)
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            self.fail(f"{where}.{unknown[0]}", f"unknown key {unknown[0]!r}", f"use only: {', '.join(allowed)}")


def _loss_options(loss: str, options: dict[str, Any], check: _Checker, where: str) -> dict[str, Any]:
    """``options`` checked against the loss's options (an unknown loss is named at ``<where's table>.loss``)."""
    from plbench.losses import LOSSES, list_losses

    if loss not in LOSSES:
        check.fail(where.rsplit(".", 1)[0] + ".loss", f"unknown loss {loss!r}", f"use one of: {', '.join(list_losses())}")
    check.keys(options, LOSSES[loss].options(), where)
    return dict(options)


# -- sections ------------------------------------------------------------------------------------------


def _datasets(tables: list[_Dataset], check: _Checker) -> tuple[DatasetSpec, ...]:
    from plbench.datasets import list_datasets

    out: list[DatasetSpec] = []
    for i, t in enumerate(tables):
        where = f"datasets[{i}]"
        if t.name not in list_datasets():
            check.fail(f"{where}.name", f"unknown dataset {t.name!r}", f"use one of: {', '.join(list_datasets())}")
        if t.synthetic is not None and t.name != "synthetic":
            check.fail(f"{where}.synthetic", f"only the synthetic dataset can be generated, not {t.name!r}",
                       "remove the synthetic table, or set name = \"synthetic\"")
        out.append(DatasetSpec(
            name=t.name, id=t.id or t.name, data_root=t.data_root, options=dict(t.options),
            train_split=t.train_split, val_split=t.val_split, cache=t.cache,
            synthetic=None if t.synthetic is None else t.synthetic.model_dump(exclude_unset=True),
            select_split=t.select_split,
        ))
    ids = [d.id for d in out]
    dupes = sorted({x for x in ids if ids.count(x) > 1})
    if dupes:
        check.fail("datasets.id", f"expected a unique id per dataset entry, but {dupes[0]!r} appears twice",
                   "give each entry its own id = \"...\"")
    return tuple(out)


def _labels(tables: list[_Labels], check: _Checker) -> tuple[LabelSetting, ...]:
    from plbench.simulate import normalise_param

    out: list[LabelSetting] = []
    for i, t in enumerate(tables):
        where = f"labels[{i}]"
        source = LabelSource(t.scheme)
        if t.bias is not None and source is not LabelSource.SPL:
            check.fail(f"{where}.bias", f"expected bias only with scheme \"spl\", but got scheme {source.value!r}",
                       "remove bias, or write scheme = \"spl\"")
        bias = None if t.bias in (None, "uniform") else t.bias  # uniform: plain spl, the same stages as before
        if source in (LabelSource.FPC, LabelSource.RPS):
            if t.params is None:
                check.fail(f"{where}.params", "required, but missing", "add params = ...")
            for j, p in enumerate(t.params):
                try:
                    value = normalise_param(source.value, p)
                except (ValueError, TypeError) as e:
                    check.fail(f"{where}.params[{j}]", str(e), "fpc: a count such as 1000; rps: p in [0, 1]")
                out.append(LabelSetting(source, value))
        else:
            if t.params is not None:
                check.fail(f"{where}.params", f"scheme {source.value!r} takes no parameter", "remove params")
            out.append(LabelSetting(source, bias=bias))
    if len(set(out)) != len(out):
        check.fail("labels", "a label setting appears twice", "list each scheme/parameter/bias once")
    return tuple(out)


def _check_bias_data(tables: list[_Labels], datasets: tuple[DatasetSpec, ...], check: _Checker) -> None:
    """A bias that weighs object instances needs a loader with COCO-format instances (areas, boxes)."""
    from plbench.simulate_biased import INSTANCE_DATASETS, Bias

    for i, t in enumerate(tables):
        if t.bias is None or not Bias.parse(t.bias).needs_instances:
            continue
        for ds in datasets:
            if ds.name not in INSTANCE_DATASETS:
                check.fail(f"labels[{i}].bias", f"bias {t.bias} reads object areas and boxes, which the {ds.name} "
                           f"loader (dataset {ds.id!r}) does not provide (only {', '.join(INSTANCE_DATASETS)})",
                           "use bias = \"uniform\" or \"frequency\", or leave that dataset out")


def _methods(tables: list[_Method], check: _Checker) -> tuple[MethodSpec, ...]:
    from plbench.losses import list_losses, resolve_mode, takes_mode

    out: list[MethodSpec] = []
    for i, t in enumerate(tables):
        where = f"methods[{i}]"
        if (t.loss is None) == (t.method is None):
            check.fail(where, "expected exactly one of loss and method" + (", but got both" if t.loss else ""),
                       "write loss = \"pasl\" (a loss) or method = \"role\" (`plbench methods list`, or "
                       "package.module:Name)")
        schemes = None if t.schemes is None else tuple(t.schemes)
        heads = None if t.heads is None else tuple(HeadSpec(h.name, dict(h.options)) for h in t.heads)
        if heads is not None and len(set(map(repr, heads))) != len(heads):
            check.fail(f"{where}.heads", "a head appears twice", "list each head once")
        if t.method is not None:
            out.extend(dataclasses.replace(m, heads=heads) for m in _method_specs(t, where, schemes, check))
            continue
        options = _loss_options(t.loss, t.loss_options, check, f"{where}.loss_options")
        try:  # an experiment names every mode it runs: no default
            modes = [resolve_mode(t.loss, mode, default=False) for mode in (t.mode or [None])]
        except ValueError as e:
            with_modes = ", ".join(n for n in list_losses() if takes_mode(n))
            check.fail(f"{where}.mode", str(e), f"give {with_modes} a mode (or a list of modes); leave it out for "
                       "the other losses")
        out.extend(MethodSpec(t.loss, mode, options, schemes, heads=heads) for mode in modes)
    for m in out:  # values too (e.g. epr without expected_num_pos), before anything runs
        if m.method is None:
            _check_loss_builds(m.loss, m.mode, m.loss_options, check, "methods")
    return tuple(out)


def _method_specs(t: _Method, where: str, schemes: tuple[str, ...] | None, check: _Checker) -> list[MethodSpec]:
    """The grid's runs of a ``method = ...`` table: the method resolved (built-in, entry point or
    module:Name, imported here as the workers will) and built with its options, once per mode."""
    from plbench.methods.api import resolve_method_mode
    from plbench.methods.registry import create_method, resolve_method

    try:
        cls = resolve_method(t.method, field=f"{where}.method")
        modes = [resolve_method_mode(cls, t.method, mode) for mode in (t.mode or [None])]
        create_method(cls if ":" in t.method else t.method, t.loss_options, field=f"{where}.method",
                      options_field=f"{where}.loss_options")
    except ValueError as e:  # a mode the method does not take, or none where it needs one
        check.fail(f"{where}.mode", str(e), "give a method with modes a mode (or a list); leave it out otherwise")
    except InputError as e:
        check.fail(e.field, e.problem, e.fix)
    return [MethodSpec(TrainConfig().loss, mode, dict(t.loss_options), schemes, t.method) for mode in modes]


def _check_loss_builds(loss: str, mode: str | None, options: dict[str, Any], check: _Checker, where: str) -> None:
    from plbench.losses import create_loss

    try:
        create_loss(loss, **({"mode": mode} if mode is not None else {}), **options)
    except (ValueError, TypeError) as e:
        check.fail(f"{where} ({loss}{'/' + mode if mode else ''})", f"the loss cannot be built: {e}",
                   "fix its loss_options")


def _backbones(tables: list[_Backbone], check: _Checker) -> tuple[BackboneSpec, ...]:
    import timm  # the names are checked before any stage runs (else the first training stage fails late)

    for i, t in enumerate(tables):
        if not timm.is_model(t.name):
            check.fail(f"backbones[{i}]", f"unknown timm model {t.name!r}",
                       "pick a name from timm.list_models(), e.g. resnet10t or tf_efficientnet_lite0")
    return tuple(BackboneSpec(t.name, t.pretrained, t.checkpoint) for t in tables)


def _training(raw: dict[str, Any], check: _Checker) -> tuple[dict[str, Any], int]:
    t = dict(raw)
    allowed = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in GRID_FIELDS]
    if "select_split" in t:  # a TrainConfig key, but a split is its dataset's
        check.fail("training.select_split", "unknown key 'select_split' (a split belongs to its dataset)",
                   "put select_split in that [[datasets]] entry")
    check.keys(t, [*allowed, *SWEEP_TRAINING_KEYS], "training")
    nproc = t.pop("torchrun_nproc", 1)
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        check.fail("training.torchrun_nproc", f"expected an integer >= 1, but got {nproc!r}", "correct the value")
    try:
        TrainConfig.from_dict(t, check.source)  # types and ranges of the values, recipe included
    except InputError as e:
        check.fail(f"training.{e.field}", e.problem, "correct the value in [training]")
    return t, nproc


def _prior(table: _Prior, check: _Checker) -> dict[str, Any]:
    prior = table.model_dump(exclude_unset=True)
    if table.loss is not None:
        from plbench.losses import list_losses, takes_mode

        prior["loss_options"] = _loss_options(table.loss, table.loss_options or {}, check, "prior.loss_options")
        if not takes_mode(table.loss):
            check.fail("prior.loss", f"the prior model trains in Ignore mode, but loss {table.loss!r} has no modes",
                       f"use one of {', '.join(n for n in list_losses() if takes_mode(n))}")
    elif table.loss_options is not None:
        check.fail("prior.loss_options", "loss_options without a loss", "add prior.loss, or remove loss_options")
    return prior


def _zero_shot(table: _ZeroShot | None, heads: list[tuple[str, _Head]], training: dict[str, Any],
               check: _Checker) -> tuple[ZeroShotSetting, ...]:
    """The [zero_shot] axis: splits x class_embeddings x prompts x alignment_weights, checked."""
    if table is None:
        return ()
    both = [f for f in ZERO_SHOT_FIELDS if f in training]
    if both:
        check.fail(f"training.{both[0]}", "set by the [zero_shot] axis, so [training] may not set it",
                   "list the values in [zero_shot] instead")
    for where, h in heads:
        if h.name != Head.ML_DECODER.value:
            check.fail(where, f"zero-shot runs need the ml-decoder head (queries from class embeddings), "
                       f"but got {h.name!r}", 'write heads = ["ml-decoder"] (options allowed)')
    for i, p in enumerate(table.prompts or ()):
        if p.count("{}") != 1:
            check.fail(f"zero_shot.prompts[{i}]", f"expected a template with one {{}} for the class name, but got "
                       f"{p!r}", 'write e.g. "a photo of a {}"')
    for name in ("splits", "class_embeddings", "prompts", "alignment_weights"):
        values = getattr(table, name) or []
        if len(set(values)) != len(values):
            check.fail(f"zero_shot.{name}", "a value appears twice", "list each value once")
    return tuple(ZeroShotSetting(split, emb, prompt, float(w))
                 for split in table.splits for emb in table.class_embeddings
                 for prompt in (table.prompts or [None]) for w in (table.alignment_weights or [0.0]))


def _linear_init(raw: dict[str, Any] | None, training: dict[str, Any], protocols: list[str],
                 check: _Checker) -> dict[str, Any]:
    """``[linear_init]``: TrainConfig fields of protocol linear-init's linear phase, checked over [training]."""
    if raw is None:
        return {}
    if Protocol.LINEAR_INIT.value not in protocols:
        check.fail("linear_init", "the table sets protocol linear-init's linear phase, but protocols has no "
                   f"linear-init (got {protocols})", 'add "linear-init" to protocols, or remove [linear_init]')
    allowed = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in GRID_FIELDS | {"recipe"}]
    check.keys(raw, allowed, "linear_init")
    try:
        TrainConfig.from_dict({**training, **LINEAR_INIT_DEFAULTS, **raw}, check.source)
    except InputError as e:
        check.fail(f"linear_init.{e.field}", e.problem, "correct the value in [linear_init]")
    return dict(raw)


def parse_spec(data: Mapping[str, Any], source: str | Path | None = None) -> SweepSpec:
    """Validate a parsed experiment (the dict ``tomllib`` returns) into a :class:`SweepSpec`.

    Raises:
        InputError: an unknown key (named, with the allowed ones listed), a missing required key, or a
            value of the wrong type or out of range.
    """
    try:
        raw = _Experiment.model_validate(dict(data))
    except ValidationError as e:
        raise _schema_error(e, source) from None
    check = _Checker(source)
    name = raw.sweep.name
    if "/" in name or name.startswith("."):
        check.fail("sweep.name", f"expected a plain folder name, but got {name!r}", "use letters, digits, - and _")
    methods = _methods(raw.methods, check)
    labels = _labels(raw.labels, check)
    unused = [m for m in methods if not any(m.applies_to(lab) for lab in labels)]
    if unused:
        check.fail("methods.schemes", f"method {unused[0].name}/{unused[0].mode} applies to none of the label "
                   f"settings (schemes {list(unused[0].schemes or ())})", "fix its schemes or add the labels")
    if len(set(raw.seeds)) != len(raw.seeds):
        check.fail("seeds", "a seed appears twice", "list each seed once")
    training, nproc = _training(raw.training, check)
    prior = _prior(raw.prior, check)
    heads = [(f"heads[{i}]", h) for i, h in enumerate(raw.heads)]
    heads += [(f"methods[{i}].heads[{j}]", h) for i, m in enumerate(raw.methods) for j, h in enumerate(m.heads or ())]
    zero_shot = _zero_shot(raw.zero_shot, heads, training, check)
    datasets = _datasets(raw.datasets, check)
    _check_bias_data(raw.labels, datasets, check)
    return SweepSpec(
        name=name,
        title=raw.sweep.title or name,
        notes=raw.sweep.notes or "",
        reference=raw.sweep.reference,
        datasets=datasets,
        labels=labels,
        methods=methods,
        heads=tuple(HeadSpec(h.name, dict(h.options)) for h in raw.heads),
        backbones=_backbones(raw.backbones, check),
        seeds=tuple(raw.seeds),
        protocols=tuple(raw.protocols),
        training=training,
        torchrun_nproc=nproc,
        prior=prior,
        features=raw.features.model_dump(exclude_unset=True),
        slurm=raw.slurm.model_dump(exclude_unset=True),
        source=None if source is None else str(source),
        zero_shot=zero_shot,
        linear_init=_linear_init(raw.linear_init, training, raw.protocols, check),
    )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate an experiment TOML file.

    Raises:
        InputError: the file is missing or not valid TOML, or :func:`parse_spec` rejects it.
    """
    return parse_spec(read_experiment(path), path)


def read_experiment(path: str | Path) -> dict[str, Any]:
    """The TOML file as a dict, unvalidated (to adjust before :func:`parse_spec`, as ``plbench demo`` does).

    Raises:
        InputError: the file is missing, unreadable or not valid TOML.
    """
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "EXPERIMENT", "the file does not exist", "pass a TOML file such as "
                         "experiments/demo.toml") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, "EXPERIMENT", f"cannot be read ({e})", "pass a readable TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(path, "EXPERIMENT", f"not valid TOML ({e})", "fix the syntax at that line") from None
    return data

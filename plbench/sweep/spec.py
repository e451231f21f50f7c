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
    cache = false                  # decode + resize every image once into DATA_ROOT/plbench_cache
    synthetic = { train = 1600, val = 400, num_classes = 20, image_size = 96, seed = 0 }
                                   # name = "synthetic" only: generate the data as a stage

    [[labels]]                     # required, one or more
    scheme = "fpc"                 # required; fpc | rps | spl | full | natural
    params = [1000]                # fpc: positives/negatives kept per class; rps: p (hide probability);
                                   # not allowed for spl/full/natural

    [[methods]]                    # required, one or more
    loss = "pasl"                  # required; loss registry name (pasl, asl, bce, an, an_ls, wan, epr, ll_r)
    mode = "selective"             # a mode or a list of modes; required for losses with modes,
                                   # not allowed for those without (an, an_ls, wan, epr, ll_r)
    loss_options = {}              # constructor arguments of the loss
    schemes = ["fpc"]              # only with these label schemes (default: all)

    heads = ["gap"]                # names, or tables { name = "ml-decoder", options = {...} }
    backbones = ["resnet10t"]      # timm names, or tables { name, pretrained = false, checkpoint = "w.pt" }
    seeds = [0]                    # one simulation and one training seed each (same seed = same labels)
    protocols = ["fine-tuned"]     # fine-tuned | linear (head on features from `plbench features extract`)

    [training]                     # TrainConfig fields the grid does not set (recipe, epochs, image_size,
    recipe = "csl"                 # batch_size, lr, ...); `recipe` fills the others first (default: the
    torchrun_nproc = 1             # dataset's default recipe); torchrun_nproc > 1 trains with torchrun

    [prior]                        # the Ignore-mode model whose mean prediction is the Selective prior
    loss = "pasl"                  # default: the selective method's own loss and loss_options
    loss_options = {}

    [features]                     # options of the feature extraction (protocol "linear"); device, workers
    batch_size = 128               # and amp default to [training]'s

    [slurm]                        # --launcher slurm: submitit parameters
    partition = "gpu"              # also account, qos, constraint, timeout_min, cpus_per_task, mem_gb,
    gpus_per_node = 1              # gpus_per_node (GPU stages), additional_parameters = {...}, setup = [...]

The grid is datasets x labels x seeds x backbones x heads x protocols x methods (a method whose
``schemes`` excludes a label setting is skipped there).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

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
    "dataset", "data_root", "train_split", "val_split", "dataset_options", "simulation", "mode", "loss",
    "loss_options", "prior", "backbone", "pretrained", "checkpoint", "head", "head_options", "features",
    "seed", "out_dir", "run_name", "tag",
})
SWEEP_TRAINING_KEYS = ("torchrun_nproc",)
SYNTHETIC_KEYS = ("train", "val", "num_classes", "image_size", "seed")
FEATURES_KEYS = ("batch_size", "workers", "device", "amp")
SLURM_GENERIC = ("timeout_min", "cpus_per_task", "mem_gb", "gpus_per_node", "nodes", "tasks_per_node")
SLURM_SPECIFIC = ("partition", "account", "qos", "constraint", "exclude", "nodelist", "gres", "comment",
                  "additional_parameters", "setup", "srun_args")
TOP_KEYS = ("sweep", "datasets", "labels", "methods", "heads", "backbones", "seeds", "protocols", "training",
            "prior", "features", "slurm")


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

    @property
    def tag(self) -> str:
        """The label tag the engine and reports use: ``full``, ``natural``, ``fpc1000``, ``rps0.5``, ``spl``."""
        from plbench.artifacts.simulations import format_param

        return f"{self.source.value}{format_param(self.param)}"


@dataclass(frozen=True)
class MethodSpec:
    loss: str
    mode: str | None  # None for losses without modes
    loss_options: dict[str, Any] = field(default_factory=dict)
    schemes: tuple[str, ...] | None = None  # LabelSource values it applies to; None = all

    def applies_to(self, labels: LabelSetting) -> bool:
        return self.schemes is None or labels.source.value in self.schemes


@dataclass(frozen=True)
class HeadSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    pretrained: bool = False
    checkpoint: str | None = None


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


# -- validation helpers ----------------------------------------------------------------------------------


class _Checker:
    """Raises InputErrors that name the file and the dotted key."""

    def __init__(self, source: str | Path | None) -> None:
        self.source = source

    def fail(self, where: str, problem: str, fix: str) -> None:
        raise InputError(self.source, where, problem, fix)

    def table(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(where, f"expected a table, but got {value!r}", f"write it as [{where}] or {where} = {{ ... }}")
        return dict(value)

    def keys(self, table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
        allowed = list(allowed)
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            key = f"{where}.{unknown[0]}" if where else unknown[0]
            hint = ""
            if where and unknown[0] in TOP_KEYS:
                hint = (f" ({unknown[0]} is a top-level key: in TOML it must come before the first [table] or "
                        "[[array]] header, else it belongs to that table)")
            self.fail(key, f"unknown key {unknown[0]!r}{hint}", f"use only: {', '.join(allowed)}")

    def required(self, table: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in table:
            self.fail(f"{where}.{key}" if where else key, "required, but missing", f"add {key} = ...")
        return table[key]

    def str_(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(where, f"expected a non-empty string, but got {value!r}", "write it in quotes")
        return value

    def bool_(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, f"expected true or false, but got {value!r}", "write true or false")
        return value

    def int_(self, value: Any, where: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(where, f"expected an integer >= {minimum}, but got {value!r}", "correct the value")
        return value

    def list_(self, value: Any, where: str, *, allow_scalar: bool = False) -> list[Any]:
        if allow_scalar and not isinstance(value, list):
            value = [value]
        if not isinstance(value, list) or not value:
            self.fail(where, f"expected a non-empty list, but got {value!r}", f"write {where} = [ ... ]")
        return value

    def choice(self, enum: type[Choice], value: Any, where: str) -> str:
        try:
            return enum.parse(value).value
        except ValueError as e:
            self.fail(where, str(e), "use one of the allowed values")
        raise AssertionError  # unreachable


def _loss_parameters(loss: str, check: _Checker, where: str) -> dict[str, inspect.Parameter]:
    from plbench.losses import LOSSES, list_losses

    if loss not in LOSSES:
        check.fail(where, f"unknown loss {loss!r}", f"use one of: {', '.join(list_losses())}")
    params = dict(inspect.signature(LOSSES[loss].__init__).parameters)
    params.pop("self", None)
    return params


def _loss_options(loss: str, options: Any, check: _Checker, where: str) -> dict[str, Any]:
    options = check.table(options, where)
    params = _loss_parameters(loss, check, where)
    allowed = [p for p in params if p not in ("mode", "prior", "validate")]
    check.keys(options, allowed, where)
    return options


# -- sections ------------------------------------------------------------------------------------------


def _datasets(raw: Any, check: _Checker) -> tuple[DatasetSpec, ...]:
    from plbench.datasets import list_datasets

    out: list[DatasetSpec] = []
    for i, item in enumerate(check.list_(raw, "datasets")):
        where = f"datasets[{i}]"
        t = check.table(item, where)
        check.keys(t, ("name", "id", "data_root", "options", "train_split", "val_split", "cache", "synthetic"), where)
        name = check.str_(check.required(t, "name", where), f"{where}.name")
        if name not in list_datasets():
            check.fail(f"{where}.name", f"unknown dataset {name!r}", f"use one of: {', '.join(list_datasets())}")
        synthetic = None
        if "synthetic" in t:
            if name != "synthetic":
                check.fail(f"{where}.synthetic", f"only the synthetic dataset can be generated, not {name!r}",
                           "remove the synthetic table, or set name = \"synthetic\"")
            synthetic = check.table(t["synthetic"], f"{where}.synthetic")
            check.keys(synthetic, SYNTHETIC_KEYS, f"{where}.synthetic")
            for k, v in synthetic.items():
                check.int_(v, f"{where}.synthetic.{k}", minimum=0 if k == "seed" else 1)
        out.append(DatasetSpec(
            name=name,
            id=check.str_(t.get("id", name), f"{where}.id"),
            data_root=check.str_(check.required(t, "data_root", where), f"{where}.data_root"),
            options=check.table(t.get("options", {}), f"{where}.options"),
            train_split=check.str_(t.get("train_split", "train"), f"{where}.train_split"),
            val_split=check.str_(t.get("val_split", "val"), f"{where}.val_split"),
            cache=check.bool_(t.get("cache", False), f"{where}.cache"),
            synthetic=synthetic,
        ))
    ids = [d.id for d in out]
    dupes = sorted({x for x in ids if ids.count(x) > 1})
    if dupes:
        check.fail("datasets.id", f"expected a unique id per dataset entry, but {dupes[0]!r} appears twice",
                   "give each entry its own id = \"...\"")
    return tuple(out)


def _labels(raw: Any, check: _Checker) -> tuple[LabelSetting, ...]:
    from plbench.simulate import normalise_param

    out: list[LabelSetting] = []
    for i, item in enumerate(check.list_(raw, "labels")):
        where = f"labels[{i}]"
        t = check.table(item, where)
        check.keys(t, ("scheme", "params"), where)
        source = LabelSource(check.choice(LabelSource, check.required(t, "scheme", where), f"{where}.scheme"))
        if source in (LabelSource.FPC, LabelSource.RPS):
            params = check.list_(check.required(t, "params", where), f"{where}.params", allow_scalar=True)
            for j, p in enumerate(params):
                try:
                    value = normalise_param(source.value, p)
                except (ValueError, TypeError) as e:
                    check.fail(f"{where}.params[{j}]", str(e), "fpc: a count such as 1000; rps: p in [0, 1]")
                out.append(LabelSetting(source, value))
        else:
            if "params" in t:
                check.fail(f"{where}.params", f"scheme {source.value!r} takes no parameter", "remove params")
            out.append(LabelSetting(source))
    if len(set(out)) != len(out):
        check.fail("labels", "a label setting appears twice", "list each scheme/parameter once")
    return tuple(out)


def _methods(raw: Any, check: _Checker) -> tuple[MethodSpec, ...]:
    out: list[MethodSpec] = []
    for i, item in enumerate(check.list_(raw, "methods")):
        where = f"methods[{i}]"
        t = check.table(item, where)
        check.keys(t, ("loss", "mode", "loss_options", "schemes"), where)
        loss = check.str_(check.required(t, "loss", where), f"{where}.loss")
        has_modes = "mode" in _loss_parameters(loss, check, f"{where}.loss")
        options = _loss_options(loss, t.get("loss_options", {}), check, f"{where}.loss_options")
        schemes = None
        if "schemes" in t:
            schemes = tuple(check.choice(LabelSource, s, f"{where}.schemes")
                            for s in check.list_(t["schemes"], f"{where}.schemes", allow_scalar=True))
        if not has_modes:
            if "mode" in t:
                check.fail(f"{where}.mode", f"loss {loss!r} has no partial-label mode",
                           "remove mode (losses with modes: pasl, asl, bce)")
            out.append(MethodSpec(loss, None, options, schemes))
            continue
        if "mode" not in t:
            check.fail(f"{where}.mode", f"loss {loss!r} needs a mode, but none is given",
                       f"add mode = one of {', '.join(m.value for m in Mode)} (or a list of them)")
        for mode in check.list_(t["mode"], f"{where}.mode", allow_scalar=True):
            out.append(MethodSpec(loss, check.choice(Mode, mode, f"{where}.mode"), options, schemes))
    for m in out:  # values too (e.g. epr without expected_num_pos), before anything runs
        _check_loss_builds(m.loss, m.mode, m.loss_options, check, "methods")
    return tuple(out)


def _check_loss_builds(loss: str, mode: str | None, options: dict[str, Any], check: _Checker, where: str) -> None:
    from plbench.losses import create_loss

    try:
        create_loss(loss, **({"mode": mode} if mode is not None else {}), **options)
    except (ValueError, TypeError) as e:
        check.fail(f"{where} ({loss}{'/' + mode if mode else ''})", f"the loss cannot be built: {e}",
                   "fix its loss_options")


def _heads(raw: Any, check: _Checker) -> tuple[HeadSpec, ...]:
    out = []
    for i, item in enumerate(check.list_(raw, "heads")):
        where = f"heads[{i}]"
        if isinstance(item, str):
            out.append(HeadSpec(check.choice(Head, item, where)))
            continue
        t = check.table(item, where)
        check.keys(t, ("name", "options"), where)
        out.append(HeadSpec(check.choice(Head, check.required(t, "name", where), f"{where}.name"),
                            check.table(t.get("options", {}), f"{where}.options")))
    return tuple(out)


def _backbones(raw: Any, check: _Checker) -> tuple[BackboneSpec, ...]:
    out = []
    for i, item in enumerate(check.list_(raw, "backbones")):
        where = f"backbones[{i}]"
        if isinstance(item, str):
            out.append(BackboneSpec(check.str_(item, where)))
            continue
        t = check.table(item, where)
        check.keys(t, ("name", "pretrained", "checkpoint"), where)
        checkpoint = t.get("checkpoint")
        out.append(BackboneSpec(
            check.str_(check.required(t, "name", where), f"{where}.name"),
            check.bool_(t.get("pretrained", False), f"{where}.pretrained"),
            None if checkpoint is None else check.str_(checkpoint, f"{where}.checkpoint"),
        ))
    import timm  # the names are checked before any stage runs (else the first training stage fails late)

    for i, spec in enumerate(out):
        if not timm.is_model(spec.name):
            check.fail(f"backbones[{i}]", f"unknown timm model {spec.name!r}",
                       "pick a name from timm.list_models(), e.g. resnet10t or tf_efficientnet_lite0")
    return tuple(out)


def _training(raw: Any, check: _Checker) -> tuple[dict[str, Any], int]:
    t = check.table(raw, "training")
    allowed = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in GRID_FIELDS]
    check.keys(t, [*allowed, *SWEEP_TRAINING_KEYS], "training")
    nproc = check.int_(t.pop("torchrun_nproc", 1), "training.torchrun_nproc", minimum=1)
    if "recipe" in t:
        from plbench.choices import Recipe

        t["recipe"] = check.choice(Recipe, t["recipe"], "training.recipe")
    try:
        TrainConfig.from_dict(t, check.source)  # types of the values
    except InputError as e:
        check.fail(f"training.{e.field}", e.problem, e.fix)
    return t, nproc


def _slurm(raw: Any, check: _Checker) -> dict[str, Any]:
    t = check.table(raw, "slurm")
    check.keys(t, (*SLURM_GENERIC, *SLURM_SPECIFIC), "slurm")
    for k in SLURM_GENERIC:
        if k in t:
            check.int_(t[k], f"slurm.{k}", minimum=0)
    if "additional_parameters" in t:
        check.table(t["additional_parameters"], "slurm.additional_parameters")
    return t


def parse_spec(data: Mapping[str, Any], source: str | Path | None = None) -> SweepSpec:
    """Validate a parsed experiment (the dict ``tomllib`` returns) into a :class:`SweepSpec`.

    Raises:
        InputError: an unknown key (named, with the allowed ones listed), a missing required key, or a
            value of the wrong type or out of range.
    """
    check = _Checker(source)
    data = dict(data)
    check.keys(data, TOP_KEYS, "")
    sweep = check.table(data.get("sweep", {}), "sweep")
    check.keys(sweep, ("name", "title", "notes", "reference"), "sweep")
    name = check.str_(check.required(sweep, "name", "sweep"), "sweep.name")
    if "/" in name or name.startswith("."):
        check.fail("sweep.name", f"expected a plain folder name, but got {name!r}", "use letters, digits, - and _")
    for key in ("datasets", "labels", "methods"):
        check.required(data, key, "")
    methods = _methods(data["methods"], check)
    labels = _labels(data["labels"], check)
    unused = [m for m in methods if not any(m.applies_to(lab) for lab in labels)]
    if unused:
        check.fail("methods.schemes", f"method {unused[0].loss}/{unused[0].mode} applies to none of the label "
                   f"settings (schemes {list(unused[0].schemes or ())})", "fix its schemes or add the labels")
    seeds = tuple(check.int_(s, f"seeds[{i}]") for i, s in enumerate(check.list_(data.get("seeds", [0]), "seeds")))
    if len(set(seeds)) != len(seeds):
        check.fail("seeds", "a seed appears twice", "list each seed once")
    protocols = tuple(check.choice(Protocol, p, f"protocols[{i}]")
                      for i, p in enumerate(check.list_(data.get("protocols", ["fine-tuned"]), "protocols")))
    training, nproc = _training(data.get("training", {}), check)
    prior = check.table(data.get("prior", {}), "prior")
    check.keys(prior, ("loss", "loss_options"), "prior")
    if "loss" in prior:
        loss = check.str_(prior["loss"], "prior.loss")
        if "mode" not in _loss_parameters(loss, check, "prior.loss"):
            check.fail("prior.loss", f"the prior model trains in Ignore mode, but loss {loss!r} has no modes",
                       "use pasl, asl or bce")
        prior["loss_options"] = _loss_options(loss, prior.get("loss_options", {}), check, "prior.loss_options")
    elif "loss_options" in prior:
        check.fail("prior.loss_options", "loss_options without a loss", "add prior.loss, or remove loss_options")
    features = check.table(data.get("features", {}), "features")
    check.keys(features, FEATURES_KEYS, "features")
    return SweepSpec(
        name=name,
        title=check.str_(sweep.get("title", name), "sweep.title"),
        notes=check.str_(sweep["notes"], "sweep.notes") if "notes" in sweep else "",
        reference=check.str_(sweep["reference"], "sweep.reference") if "reference" in sweep else None,
        datasets=_datasets(data["datasets"], check),
        labels=labels,
        methods=methods,
        heads=_heads(data.get("heads", ["gap"]), check),
        backbones=_backbones(data.get("backbones", ["resnet10t"]), check),
        seeds=seeds,
        protocols=protocols,
        training=training,
        torchrun_nproc=nproc,
        prior=prior,
        features=features,
        slurm=_slurm(data.get("slurm", {}), check),
        source=None if source is None else str(source),
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

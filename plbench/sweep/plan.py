"""Expand a :class:`~plbench.sweep.spec.SweepSpec` into stages with dependencies, and decide what runs.

Pipeline per grid point (dataset x labels x seed x backbone x head x protocol x zero-shot setting x method)::

    data (synthetic only) -> cache (dataset.cache) -> simulate (fpc/rps/spl) -> [features (linear, linear-init)]
        -> [train Ignore-mode prior model -> estimate-prior (selective only)] -> train -> report

Protocol linear-init puts a linear run (on the features; ``[linear_init]`` settings) before each training,
and that training's ``init_head`` is the linear run's folder; a Selective run's prior model is itself a
linear-init pair, and the linear run of a Selective run has its own (linear) prior model.

Stages with the same hash are one stage: the CSL prior model of a Selective run *is* the grid's Ignore
run whenever their settings agree (same loss and options), so it is trained once. File names:

* ``simulations/<dataset id>[-<split>]-<scheme><param>-s<seed>.parquet`` (as ``plbench simulate``; a
  biased single positive is scheme ``spl-<bias>``)
* ``priors/<simulation stem or <id>-<labels>>-<backbone>-s<seed>-<hash8>.csv``
* ``runs/<id>-<labels>-<mode>-<loss>-<backbone>-<head>[-linear|-linear-init][-zsl_<split>_<embeddings>...]-s<seed>-<hash8>/``
* ``features/<id>-<backbone>-<size>-<hash8>/``, ``reports/<sweep name>/``
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plbench.choices import Mode, Protocol
from plbench.config import TrainConfig
from plbench.engine.recipes import default_recipe, recipe_values
from plbench.sweep.spec import (GRID_FIELDS, ZERO_SHOT_FIELDS, BackboneSpec, DatasetSpec, LabelSetting, MethodSpec,
                                SweepSpec)
from plbench.sweep.stages import GPU_KINDS, Stage, StageKind, StageStatus, is_done, stage_hash

#: TrainConfig fields that hold paths of upstream outputs or of the run itself: the dependency hashes
#: stand for them in the stage hash, so moving the sweep root does not change any hash
_PATH_FIELDS = ("simulation", "prior", "features", "out_dir", "run_name", "cache_dir", "init_head")


def hashed_fields(spec: SweepSpec) -> frozenset[str]:
    """The TrainConfig fields of a training stage's hash: those the experiment sets (the grid's, [training]'s
    and the recipe's name). Values plbench fills in itself (the recipe's settings, defaults, fields a newer
    plbench adds) are not hashed, so upgrading plbench does not re-run a finished grid; the run folder's
    config.json records them."""
    zero_shot = set(ZERO_SHOT_FIELDS) if spec.zero_shot else set()  # only when the axis is used: old hashes kept
    return frozenset((GRID_FIELDS | set(spec.training) | {"recipe"} | zero_shot) - set(_PATH_FIELDS))


def plugin_code(config: TrainConfig) -> dict[str, Any]:
    """Fingerprints (import path, package version, source sha256) of the plug-in method and head ``config``
    trains, by role (``method``, ``head``); {} when both are plbench's own. Hashed into the training stage,
    so editing or upgrading a plug-in re-runs its stages while built-in stages keep their hashes."""
    from plbench.engine.method_run import resolve_run_method
    from plbench.heads import resolve_head
    from plbench.methods.provenance import plugin_fingerprint

    found = {"method": plugin_fingerprint(resolve_run_method(config)),
             "head": plugin_fingerprint(resolve_head(config.head, field="head"))}
    return {role: fp for role, fp in found.items() if fp is not None}


@dataclass
class Plan:
    """The stages of a sweep in dependency order (every stage after the stages it depends on)."""

    spec: SweepSpec
    out: Path
    stages: list[Stage]
    grid: list[str]  # hashes of the training stages that make up the grid (the report's runs)
    status: dict[str, StageStatus] = field(default_factory=dict)

    def by_hash(self) -> dict[str, Stage]:
        return {s.hash: s for s in self.stages}

    def to_run(self) -> list[Stage]:
        return [s for s in self.stages if self.status[s.hash].action == "run"]

    def report_stage(self) -> Stage:
        return next(s for s in self.stages if s.kind is StageKind.REPORT)

    def run_dirs(self) -> list[Path]:
        stages = self.by_hash()
        return [Path(stages[h].output) for h in self.grid]

    def missing_inputs(self) -> dict[str, list[Stage]]:
        """Needed user inputs that do not exist, each with the stages that need it (both in plan order)."""
        out: dict[str, list[Stage]] = {}
        for s in self.stages:
            for p in self.status[s.hash].missing:
                out.setdefault(p, []).append(s)
        return out


class _Builder:
    def __init__(self, spec: SweepSpec, out: Path) -> None:
        self.spec, self.out = spec, out
        self.hashed_fields = hashed_fields(spec)
        self.stages: dict[str, Stage] = {}  # insertion order = dependency order

    def add(self, kind: StageKind, name: str, settings: dict[str, Any], deps: list[Stage | None], output: str | Path,
            *, hashed: dict[str, Any] | None = None, files: tuple[str, ...] = (), needs: tuple[str, ...] = (),
            gpus: int | None = None) -> Stage:
        dep_hashes = tuple(d.hash for d in deps if d is not None)
        h = stage_hash(kind, settings if hashed is None else hashed, dep_hashes, files)
        if h not in self.stages:
            self.stages[h] = Stage(kind, name, h, settings, dep_hashes, str(output), str(self.out), needs,
                                   gpus if gpus is not None else int(kind in GPU_KINDS))
        return self.stages[h]

    # -- per-stage constructors ------------------------------------------------------------------------
    def data(self, ds: DatasetSpec) -> Stage | None:
        if ds.synthetic is None:
            return None
        root = ds.root(self.out)
        return self.add(StageKind.DATA, ds.id, {"data_root": root, "synthetic": ds.synthetic}, [], root)

    def _data_needs(self, ds: DatasetSpec) -> tuple[str, ...]:
        return () if ds.synthetic is not None else (ds.root(self.out),)

    def _dataset_settings(self, ds: DatasetSpec) -> dict[str, Any]:
        return {"dataset": ds.name, "data_root": ds.root(self.out), "options": ds.options}

    def cache(self, ds: DatasetSpec, split: str, size: int) -> Stage | None:
        if not ds.cache:
            return None
        from plbench.datasets.images import cache_folder

        root = ds.cache_root(self.out)
        settings = {**self._dataset_settings(ds), "split": split, "image_size": size, "cache_root": str(root)}
        return self.add(StageKind.CACHE, f"{ds.id}-{split}-{size}", settings, [self.data(ds)],
                        cache_folder(root, ds.name, split, size), needs=self._data_needs(ds))

    def simulation(self, ds: DatasetSpec, labels: LabelSetting, seed: int) -> Stage | None:
        if not labels.source.simulated:
            return None
        from plbench.artifacts.simulations import default_simulation_path

        path = default_simulation_path(ds.id, labels.scheme, labels.param, seed,
                                       root=self.out / "simulations", split=ds.train_split)
        settings = {**self._dataset_settings(ds), "split": ds.train_split, "scheme": labels.source.value,
                    "param": labels.param, "seed": seed}
        if labels.bias is not None:  # uniform single positives keep the settings (and hash) they always had
            settings["bias"] = labels.bias
        return self.add(StageKind.SIMULATE, path.stem, settings, [self.data(ds)], path, needs=self._data_needs(ds))

    def features(self, ds: DatasetSpec, backbone: BackboneSpec, size: int, base: dict[str, Any]) -> Stage:
        extract = {k: base[k] for k in ("device", "workers", "amp") if k in base}  # [training]'s, unless overridden
        extract.update(self.spec.features)
        settings = {**self._dataset_settings(ds), "splits": list(ds.splits),
                    "backbone": backbone.name, "pretrained": backbone.pretrained, "checkpoint": backbone.checkpoint,
                    "image_size": size, "extract_options": extract,
                    # ML-Decoder heads read the spatial tokens; GAP heads need the pooled features only
                    "tokens": any(h.name != "gap" for h in self.spec.head_axis()),
                    "cache_dir": str(ds.cache_root(self.out)) if ds.cache else None}
        files = (backbone.checkpoint,) if backbone.checkpoint else ()
        h8 = stage_hash(StageKind.FEATURES, settings, [], files)[:8]
        name = f"{ds.id}-{backbone.name.replace('/', '_')}-{size}-{h8}"
        needs = self._data_needs(ds) + files
        caches = [self.cache(ds, split, size) for split in dict.fromkeys(ds.splits)]
        return self.add(StageKind.FEATURES, name, settings, [self.data(ds), *caches], self.out / "features" / name,
                        files=files, needs=needs)

    def train(self, config: TrainConfig, deps: list[Stage | None], ds: DatasetSpec, labels: LabelSetting, *,
              also_hashed: frozenset[str] = frozenset()) -> Stage:
        """A training stage; ``also_hashed``: fields hashed besides :func:`hashed_fields` (a linear-init
        linear phase's ``[linear_init]`` keys)."""
        hashed = {k: v for k, v in config.to_dict().items() if k in self.hashed_fields | also_hashed}
        for key in ("method", "select_split"):  # experiments written before these existed keep their hashes
            if hashed.get(key) is None:
                hashed.pop(key, None)
        hashed["torchrun_nproc"] = self.spec.torchrun_nproc
        code = plugin_code(config)
        if code:  # built-in methods and heads add nothing: their stages keep the hashes they had
            hashed["plugin_code"] = code
        files = config.input_files()  # checkpoint, zero-shot split file, class-embedding file
        h = stage_hash(StageKind.TRAIN, hashed, [d.hash for d in deps if d is not None], files)
        method = config.loss if config.method is None else config.method.replace(":", ".")
        parts = [ds.id, labels.tag, config.mode or "none", method, config.backbone.replace("/", "_"), config.head]
        if config.features is not None:
            parts.append(Protocol.LINEAR.value)
        elif config.init_head is not None:
            parts.append(Protocol.LINEAR_INIT.value)
        if config.zsl_split is not None:
            parts.append(zero_shot_tag(config))
        name = "-".join([*parts, f"s{config.seed}", h[:8]])
        config = config.replace(run_name=name)
        settings = {"config": config.to_dict(), "torchrun_nproc": self.spec.torchrun_nproc}
        gpus = self.spec.torchrun_nproc
        return self.add(StageKind.TRAIN, name, settings, deps, Path(config.out_dir) / name, hashed=hashed,
                        files=files, needs=self._data_needs(ds) + files, gpus=gpus)

    def prior(self, model: Stage, ds: DatasetSpec, labels: LabelSetting, sim: Stage | None, backbone: str,
              seed: int) -> Stage:
        from plbench.priors import default_prior_path

        h8 = stage_hash(StageKind.PRIOR, {}, [model.hash])[:8]
        base = default_prior_path(ds.id, sim.output if sim else None, backbone, seed, root=self.out / "priors")
        if sim is None:  # the dataset's own labels: name them by their tag (full/natural)
            base = base.with_name(base.name.replace("-natural-", f"-{labels.tag}-", 1))
        path = base.with_name(f"{base.stem}-{h8}.csv")
        # the model's hash stands for its config (whose paths depend on the sweep root)
        return self.add(StageKind.PRIOR, path.stem, {"config": model.settings["config"]}, [model], path, hashed={})


def zero_shot_tag(config: TrainConfig) -> str:
    """``zsl_<split>_<embeddings>[_prompt][_a<weight>]`` for run names: file sources by their stem (the hash
    tells prompts apart)."""
    def stem(value: str) -> str:
        kind, _, path = value.partition(":") if value.startswith("clip:") else ("", "", value)
        name = Path(path).stem if ("/" in path or "." in path) else path
        return "".join(c if c.isalnum() or c == "_" else "." for c in (f"{kind}.{name}" if kind else name))

    parts = ["zsl", stem(config.zsl_split), stem(config.class_embeddings or "none")]
    if config.prompt is not None:
        parts.append("prompt")
    if config.alignment_weight:
        parts.append(f"a{config.alignment_weight:g}")
    return "_".join(parts)


def _base_config(spec: SweepSpec, ds: DatasetSpec, out: Path) -> dict[str, Any]:
    """TrainConfig values shared by a dataset's runs: recipe first, then [training], then the dataset."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = recipe_values(spec.training.get("recipe") or default_recipe(ds.name), ds.name)
    values.update(spec.training)
    values.update(dataset=ds.name, data_root=ds.root(out), train_split=ds.train_split, val_split=ds.val_split,
                  select_split=ds.select_split, dataset_options=dict(ds.options), out_dir=str(out / "runs"))
    return {k: v for k, v in values.items() if k in names}


def expand(spec: SweepSpec, out: str | Path = ".", *, command: str | None = None) -> Plan:
    """All stages of ``spec`` with outputs under ``out`` (nothing is read or written).

    ``command`` is the command line shown in the report (default ``plbench sweep SOURCE --out OUT``).

    Returns:
        a :class:`Plan` without status (see :func:`plan_sweep`).
    """
    out = Path(out)
    b = _Builder(spec, out)
    grid: list[str] = []
    for ds in spec.datasets:
        base = _base_config(spec, ds, out)
        size = int(base.get("image_size", TrainConfig().image_size))
        caches = [b.cache(ds, split, size) for split in dict.fromkeys(ds.splits)]
        if ds.cache:
            base["cache_dir"] = str(ds.cache_root(out))
        for labels in spec.labels:
            methods = [m for m in spec.methods if m.applies_to(labels)]
            for seed in spec.seeds:
                sim = b.simulation(ds, labels, seed)
                for backbone in spec.backbones:
                    for head in spec.head_axis():
                        head_methods = [m for m in methods if m.runs_with(head, spec.heads)]
                        if not head_methods:
                            continue
                        for protocol in spec.protocols:
                            li = _linear_init(b, spec, ds, backbone, base) if protocol == Protocol.LINEAR_INIT.value \
                                else None
                            feats = b.features(ds, backbone, size, base) if protocol == Protocol.LINEAR.value else None
                            common = TrainConfig(**{
                                **base, "simulation": sim.output if sim else None, "tag": labels.tag,
                                "backbone": backbone.name, "pretrained": backbone.pretrained,
                                "checkpoint": backbone.checkpoint, "head": head.name,
                                "head_options": dict(head.options), "seed": seed,
                                **({"features": feats.output} if feats is not None else {}),
                            })
                            upstream = [b.data(ds), *caches, sim, feats]
                            for zs in spec.zero_shot or (None,):  # the [zero_shot] axis (one None without it)
                                run = common if zs is None else common.replace(**zs.values())
                                for method in head_methods:
                                    grid.append(_method_stage(b, spec, method, run, upstream, ds, labels, sim,
                                                              li).hash)
    grid = list(dict.fromkeys(grid))
    report = {"title": spec.title, "notes": spec.notes, "reference": spec.reference,
              "runs": [b.stages[h].output for h in grid]}
    if command is None:
        command = f"plbench sweep {spec.source or spec.name + '.toml'}" + ("" if str(out) == "." else f" --out {out}")
    b.add(StageKind.REPORT, spec.name, {**report, "command": command}, [b.stages[h] for h in grid],
          out / "reports" / spec.name, hashed=report)  # the command line does not change the report's content
    return Plan(spec, out, list(b.stages.values()), grid)


@dataclass(frozen=True)
class _LinearPhase:
    """Protocol linear-init's first training: on ``features``, with ``overrides`` (hashed) over the run's config."""

    features: Stage
    overrides: dict[str, Any]


def _linear_init(b: _Builder, spec: SweepSpec, ds: DatasetSpec, backbone: BackboneSpec,
                 base: dict[str, Any]) -> _LinearPhase:
    overrides = spec.linear_phase()
    size = int(overrides.get("image_size", base.get("image_size", TrainConfig().image_size)))
    return _LinearPhase(b.features(ds, backbone, size, {**base, **overrides}), overrides)


def _method_stage(b: _Builder, spec: SweepSpec, method: MethodSpec, common: TrainConfig, upstream: list,
                  ds: DatasetSpec, labels: LabelSetting, sim: Stage | None, li: _LinearPhase | None = None) -> Stage:
    config = common.replace(mode=method.mode, loss=method.loss, loss_options=dict(method.loss_options),
                            method=method.method)
    return _trained(b, spec, config, upstream, ds, labels, sim, li)


def _trained(b: _Builder, spec: SweepSpec, config: TrainConfig, upstream: list, ds: DatasetSpec,
             labels: LabelSetting, sim: Stage | None, li: _LinearPhase | None = None, *,
             also_hashed: frozenset[str] = frozenset()) -> Stage:
    """The training stage of ``config``, after its prior model and prior (Selective) and its linear phase
    (``li``: linear-init)."""
    deps = list(upstream)
    start = config
    if li is not None:  # Cole et al.'s LinearInit.: the same run on the frozen features first, its head kept
        linear = _trained(b, spec, config.replace(features=li.features.output, **li.overrides),
                          [*upstream, li.features], ds, labels, sim, also_hashed=frozenset(li.overrides))
        config = config.replace(init_head=linear.output)
        deps.append(linear)
    if config.mode != Mode.SELECTIVE.value:
        return b.train(config, deps, ds, labels, also_hashed=also_hashed)
    # CSL: the prior is the mean prediction of a model trained in Ignore mode on the same labels and seed
    # (under linear-init, a linear-init pair itself)
    prior_cfg = start.replace(mode=Mode.IGNORE.value, prior=None)
    if "loss" in spec.prior:
        prior_cfg = prior_cfg.replace(loss=spec.prior["loss"], loss_options=dict(spec.prior.get("loss_options", {})),
                                      method=None)
    model = _trained(b, spec, prior_cfg, upstream, ds, labels, sim, li, also_hashed=also_hashed)
    prior = b.prior(model, ds, labels, sim, config.backbone, config.seed)
    return b.train(config.replace(prior=prior.output), [*deps, prior], ds, labels, also_hashed=also_hashed)


def plan_sweep(spec: SweepSpec, out: str | Path = ".", *, command: str | None = None) -> Plan:
    """Expand ``spec`` and decide each stage's action from what exists under ``out``.

    A stage runs when its output is not reusable and it is a target (a grid run or the report) or a
    stage that runs needs it; a missing output nobody needs any more is skipped (e.g. a deleted
    simulation whose runs are finished).
    """
    plan = expand(spec, out, command=command)
    stages = plan.by_hash()
    done = {s.hash: is_done(s) for s in plan.stages}
    targets = set(plan.grid) | {plan.report_stage().hash}
    required: set[str] = set()
    for s in reversed(plan.stages):  # dependents come later in the list, so they are decided first
        if not done[s.hash] and (s.hash in targets or s.hash in required):
            required.update(s.deps)
            required.add(s.hash)
    produced = {s.output for s in plan.stages}
    for s in plan.stages:
        action = "reuse" if done[s.hash] else "run" if s.hash in required else "skip"
        missing = [p for p in s.needs if action == "run" and p not in produced and not Path(p).exists()]
        plan.status[s.hash] = StageStatus(action, missing)
    assert all(d in stages for s in plan.stages for d in s.deps)
    return plan


def format_plan(plan: Plan) -> str:
    """The dry-run listing: one line per stage (action, kind, name, output), then totals and missing inputs."""
    counts = {a: sum(1 for st in plan.status.values() if st.action == a) for a in ("run", "reuse", "skip")}
    width = max(len(s.kind.value) for s in plan.stages)
    lines = [f"sweep {plan.spec.name}: {len(plan.stages)} stages under {plan.out}: {counts['run']} to run, "
             f"{counts['reuse']} reused, {counts['skip']} not needed"]
    for s in plan.stages:
        st = plan.status[s.hash]
        lines.append(f"  {st.action:<5}  {s.kind.value:<{width}}  {s.name}")
    missing = plan.missing_inputs()
    if missing:
        lines.append("missing inputs (needed before these stages can run):")
        for p in sorted(missing):
            lines.append(f"  {p}  (needed by: {', '.join(sorted({s.kind.value for s in missing[p]}))})")
    return "\n".join(lines)

"""Run folders as flat records for the report, with fallbacks for summaries written by older plbench versions.

Everything is read through :class:`plbench.artifacts.runs.RunFolder`. A record keeps the numbers the
tables need; figures ask the record's :attr:`RunRecord.folder` for ``metrics()`` when they draw curves.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from plbench.artifacts.runs import RunFolder, find_runs
from plbench.choices import Mode, Protocol, Recipe
from plbench.errors import InputError

MODE_ORDER = (Mode.IGNORE, Mode.IGNORE_NORMALIZED, Mode.NEGATIVE, Mode.SELECTIVE)
MODE_LABELS = {Mode.IGNORE: "Ignore", Mode.IGNORE_NORMALIZED: "Ignore-normalized", Mode.NEGATIVE: "Negative",
               Mode.SELECTIVE: "Selective"}
#: evaluation protocol of summaries written before ``evaluation_protocol`` existed (no EMA then)
LEGACY_PROTOCOL = "final epoch, plain model (no EMA)"
_TAG = re.compile(r"^(fpc|rps|spl)(\d+(?:\.\d*)?(?:e-?\d+)?)?$")


#: heads that papers count as part of the method ("LL-R + BoostLU", Kim et al. 2023): a run with one is the
#: column ``<loss or method>_<head>`` (published.csv's ``ll_r_boostlu``), labelled ``<label> + <name>``
METHOD_HEADS = {"boostlu": "BoostLU"}


def column_key(loss: str, mode: str | None, head: str | None = None, version: str | None = None) -> str:
    """Machine name of a table column: ``"pasl:selective"`` for a loss with a mode, else the loss (``"an"``);
    ``"ll_r_boostlu"`` for a run whose head is in :data:`METHOD_HEADS`; ``"soft_targets@1a2b3c4d"`` for one
    version of a plug-in method whose runs hold several (:func:`plugin_version`)."""
    name = f"{loss}@{version}" if version else loss
    key = f"{name}:{mode}" if mode else name
    return f"{key}_{head}" if head in METHOD_HEADS else key


def _method_head(key: str) -> tuple[str, str | None]:
    """``"ll_r_boostlu"`` -> ``("ll_r", "boostlu")``; a key without a method head -> ``(key, None)``."""
    for head in METHOD_HEADS:
        if key.endswith(f"_{head}") and len(key) > len(head) + 1:
            return key[:-len(head) - 1], head
    return key, None


def _loss_class(loss: str) -> Any:
    """The registered loss class (its ``label``, ``column_order``, ``has_modes``), or None for a loss this
    plbench does not know (a run from another version)."""
    from plbench.losses import LOSSES  # imports torch: only when a report is built

    return LOSSES.get(loss)


def _method_class(name: str) -> Any:
    """The built-in method class named ``name`` (its ``label``: ``EM+APL``, ``LL-Ct``), or None."""
    from plbench.methods.registry import builtin_methods

    return builtin_methods().get(name)


def column_label(key: str) -> str:
    """Display name of a column: ``"Selective P-ASL"``, ``"Negative CE"``, ``"LL-R"`` (the loss class's
    ``label``; the name in capitals for a loss without one); ``"LL-R + BoostLU"`` with a method head;
    ``"SOFT_TARGETS @1a2b3c4d"`` for one version of a plug-in method (:func:`column_key`)."""
    base, head = _method_head(key)
    if head is not None:
        return f"{column_label(base)} + {METHOD_HEADS[head]}"
    loss, _, mode = key.partition(":")
    loss, _, version = loss.partition("@")
    cls = _loss_class(loss) or _method_class(loss)
    loss_label = (cls.label if cls is not None else None) or loss.upper()
    if version:
        loss_label = f"{loss_label} @{version}"
    if not mode:
        return loss_label
    try:
        mode_label = MODE_LABELS[Mode.parse(mode)]
    except ValueError:
        mode_label = mode.capitalize()
    return f"{mode_label} {loss_label}"


def column_sort_key(key: str) -> tuple:
    """Columns in reading order: losses with modes (by ``column_order``: CE, ASL, P-ASL, each mode in
    :data:`MODE_ORDER`), then losses without (AN, AN-LS, WAN, EPR, LL-R), then the other built-in methods (ROLE, EM+APL, ...) and
    unknown names, each by name; a method-head column right after its method's."""
    base, head = _method_head(key)
    if head is not None:
        return (*column_sort_key(base), head)
    loss, _, mode = key.partition(":")
    cls = _loss_class(loss)
    if cls is None:  # the field's methods after the losses, then names this plbench does not know
        return (2 if _method_class(loss) is not None else 3, 0, key, 0, mode)
    modes = [m.value for m in MODE_ORDER]
    return (0 if cls.has_modes else 1, cls.column_order, loss, modes.index(mode) if mode in modes else len(modes),
            mode)


def parse_labels(tag: str, simulation: dict[str, Any] | None = None) -> tuple[str | None, float | None]:
    """``(scheme, param)`` of a label setting: from the summary's ``simulation``, else from the tag.

    ``"fpc1000"`` -> ``("fpc", 1000.0)``, ``"rps0.5"`` -> ``("rps", 0.5)``, ``"spl"`` -> ``("spl", None)``;
    ``"full"``, ``"natural"`` and custom tags -> ``(None, None)``.
    """
    if simulation and simulation.get("scheme"):
        param = simulation.get("param")
        return str(simulation["scheme"]), None if param is None else float(param)
    m = _TAG.match(tag)
    if not m:
        return None, None
    return m.group(1), (float(m.group(2)) if m.group(2) else None)


def labels_sort_key(tag: str) -> tuple:
    """Rows in reading order: full labels, natural labels, FPC (most labels first), RPS (fewest hidden first),
    single positive, then custom tags."""
    if tag == "full":
        return (0, 0.0, tag)
    if tag == "natural":
        return (1, 0.0, tag)
    scheme, param = parse_labels(tag)
    p = 0.0 if param is None else param
    if scheme == "fpc":
        return (2, -p, tag)
    if scheme == "rps":
        return (3, p, tag)
    if scheme == "spl":
        return (4, p, tag)
    return (5, 0.0, tag)


def _float(value: Any) -> float | None:
    """A finite float, or None (JSON null, NaN, missing)."""
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass
class RunRecord:
    """One finished run, as the report sees it. mAP values are percent; ``None`` where the run lacks them."""

    folder: RunFolder
    summary: dict[str, Any]
    config: dict[str, Any]
    dataset: str
    labels: str  # label-setting tag: full, natural, fpc1000, rps0.5, spl ...
    scheme: str | None
    param: float | None
    loss: str
    mode: str | None
    protocol: str  # Protocol value: fine-tuned | linear | linear-init
    recipe: str
    backbone: str
    head: str
    image_size: int | None
    epochs: int | None
    train_images: int | None
    seed: int | None
    simulation_seed: int | None
    val_map: float  # headline: final epoch, model fixed before training
    val_map_plain: float | None
    val_map_ema: float | None
    best_val_map: float | None  # best epoch of the headline model (selected on the evaluation split)
    authors_map: float | None  # max over epochs of max(plain, EMA): selected on the evaluation split
    # evaluation mAP at the epoch chosen on a held-out selection split (train --select-split), else None
    selected_map: float | None
    evaluation_protocol: str
    notes: list[str] = field(default_factory=list)  # fallbacks taken for this run
    # which version of a plug-in method (plugin_version), set by load_records only when the runs loaded with
    # this one hold several versions of its method: the versions are then columns of their own
    method_version: str | None = None

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def column(self) -> str:
        return column_key(self.loss, self.mode, self.head, self.method_version)

    @property
    def pair_key(self) -> tuple:
        """Runs with the same key saw the same simulated labels and the same training seed."""
        return (self.simulation_seed, self.seed)

    def setting(self, fields: Iterable[str]) -> tuple:
        return tuple(getattr(self, f) for f in fields)


def load_record(run: RunFolder | str | Path) -> RunRecord:
    """Read one finished run folder.

    Raises:
        InputError: ``summary.json`` missing or damaged (from :meth:`RunFolder.summary`), or no ``val_map``.
    """
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    s = folder.summary()
    try:
        config = folder.config()
    except InputError:  # older runs and hand-made fixtures may lack config.json: the summary suffices
        config = {}
    notes: list[str] = []
    val_map = _float(s.get("val_map"))
    if val_map is None:
        raise InputError(folder.file("summary.json"), "val_map", f"expected a number, but got {s.get('val_map')!r}",
                         "re-run the training (the run did not finish its evaluation)")
    loss = str(s.get("loss") or config.get("loss") or "pasl")
    mode = s.get("mode", config.get("mode"))
    cls = _loss_class(loss)
    if (cls is not None and not cls.has_modes) or mode in (None, ""):  # older summaries gave modeless losses a mode
        mode = None
    else:
        mode = str(mode)
    protocol = s.get("protocol")
    if protocol is None:
        protocol = (Protocol.LINEAR.value if config.get("features") else
                    Protocol.LINEAR_INIT.value if config.get("init_head") else Protocol.FINE_TUNED.value)
    recipe = s.get("recipe") or config.get("recipe") or Recipe.LIGHT.value
    ema = _float(s.get("val_map_ema"))
    plain = _float(s.get("val_map_plain"))
    if plain is None and ema is None and "val_map_plain" not in s:
        plain = val_map  # older summaries: no EMA existed, the headline was the plain model
    best = _float(s.get("best_val_map"))
    authors = _float(s.get("authors_map"))
    if authors is None and "authors_map" not in s and "val_map_ema" not in s and best is not None:
        authors = best  # older summaries: without EMA, max over epochs of the plain model = best epoch
        notes.append("authors_map taken from best_val_map (summary written before authors_map existed)")
    evaluation = s.get("evaluation_protocol") or LEGACY_PROTOCOL
    sim = s.get("simulation") or None
    labels = str(s.get("labels") or "full")
    scheme, param = parse_labels(labels, sim)

    def _int(value: Any) -> int | None:
        x = _float(value)
        return None if x is None else int(x)

    return RunRecord(
        folder=folder, summary=s, config=config, dataset=str(s.get("dataset") or config.get("dataset") or "?"),
        labels=labels, scheme=scheme, param=param, loss=loss, mode=mode, protocol=str(protocol), recipe=str(recipe),
        backbone=str(s.get("backbone") or config.get("backbone") or "?"),
        head=str(s.get("head") or config.get("head") or "?"),
        image_size=_int(s.get("image_size", config.get("image_size"))),
        epochs=_int(s.get("epochs", config.get("epochs"))), train_images=_int(s.get("train_images")),
        seed=_int(s.get("seed", config.get("seed"))), simulation_seed=_int(sim.get("seed")) if sim else None,
        val_map=val_map, val_map_plain=plain, val_map_ema=ema, best_val_map=best, authors_map=authors,
        selected_map=_float(s.get("selected_map")), evaluation_protocol=str(evaluation), notes=notes,
    )


def plugin_version(summary: dict[str, Any]) -> str | None:
    """Which code a plug-in method's run came from: the first 8 hex digits of its source file's sha256, else
    ``v<package version>``, else ``unrecorded``; None for a method of plbench itself (its version is
    plbench's) and for summaries without a method record (written before plug-ins existed)."""
    rec = summary.get("method")
    if not isinstance(rec, dict) or not rec.get("import_path"):
        return None
    from plbench.methods.provenance import is_plbench_code  # imports nothing of plbench

    if is_plbench_code(str(rec["import_path"])):
        return None
    if rec.get("source_sha256"):
        return str(rec["source_sha256"])[:8]
    return f"v{rec['version']}" if rec.get("version") else "unrecorded"


def _split_plugin_versions(records: list[RunRecord]) -> None:
    """Give each run of a plug-in method whose runs in ``records`` hold more than one version its
    :attr:`RunRecord.method_version`, so each version is a column; one version keeps the plain column."""
    versions: dict[str, set[str]] = {}
    for r in records:
        v = plugin_version(r.summary)
        if v is not None:
            versions.setdefault(r.loss, set()).add(v)
    for r in records:
        if len(versions.get(r.loss, ())) > 1:
            r.method_version = plugin_version(r.summary)


def load_records(runs: Iterable[RunFolder | str | Path]) -> list[RunRecord]:
    """Records of ``runs`` (run folders, or folders of run folders searched with :func:`find_runs`); runs of
    several versions of one plug-in method are told apart (:attr:`RunRecord.method_version`)."""
    folders: list[RunFolder] = []
    for r in runs:
        if isinstance(r, RunFolder):
            folders.append(r)
        else:
            folders.extend(find_runs([r]))
    seen: set[Path] = set()
    out = []
    for f in folders:
        key = f.path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(load_record(f))
    _split_plugin_versions(out)
    return out

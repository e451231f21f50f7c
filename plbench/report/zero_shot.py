"""Zero-shot result tables in the papers' form (ML-Decoder's NUS-WIDE table, LESA, BiAM): a row per method and
task (ZSL: unseen classes only; GZSL: seen + unseen), columns mAP, F1 (K = 3), F1 (K = 5), all percent.

Pure: run records and published numbers in, a :class:`ZeroShotTable` out; the renderings are strings.

A run is a zero-shot run when its ``summary.json`` holds a ``zero_shot`` block (written by the training and by
``plbench evaluate``)::

    "zero_shot": {"split": "nuswide", "num_seen": 925, "num_unseen": 81, "embeddings": "glove",
                  "prompt": null, "images": {"zsl": 1000, "gzsl": 1200},
                  "zsl": {"map": 31.1, "p@3": ..., "r@3": ..., "f1@3": ..., "p@5": ..., "f1@5": ...},
                  "gzsl": {...}}

Runs that differ only in their seed share a row (mean ± sample std, ddof = 1); runs that differ in anything
else named in :data:`SETTING_FIELDS` get rows of their own. Published rows (``labels`` ``zsl`` / ``gzsl`` in
``plbench/data/published.csv``, F1 from its optional ``f1_3`` / ``f1_5`` columns) follow, with their source.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Sequence

from plbench.report.published import PublishedNumber
from plbench.report.records import RunRecord
from plbench.report.tables import CellStats, cell_stats

#: the two evaluations, in the papers' order
TASKS: tuple[str, ...] = ("zsl", "gzsl")
TASK_LABELS = {"zsl": "ZSL", "gzsl": "GZSL"}
#: summary key -> column heading, in the papers' order
METRICS: tuple[tuple[str, str], ...] = (("map", "mAP"), ("f1@3", "F1 (K = 3)"), ("f1@5", "F1 (K = 5)"))
#: what makes two zero-shot runs different experiments (the seed is averaged over)
SETTING_FIELDS: tuple[str, ...] = ("protocol", "backbone", "head", "image_size", "epochs", "loss", "split",
                                   "embeddings", "prompt", "alignment_weight")
HEADER: tuple[str, ...] = ("method", "task", *(label for _, label in METRICS), "n", "source")


@dataclass(frozen=True)
class ZeroShotRow:
    """One table row: a method on one task. ``values[metric]`` is a :class:`CellStats` (ours, over seeds) or a
    float (published); a missing value is absent."""

    method: str
    task: str
    values: dict[str, CellStats | float]
    source: str
    published: bool

    @property
    def n(self) -> int | None:
        cells = [v for v in self.values.values() if isinstance(v, CellStats)]
        return max(c.n for c in cells) if cells else None


@dataclass
class ZeroShotTable:
    """The zero-shot table of one dataset: plbench's rows, then the published ones."""

    dataset: str
    rows: list[ZeroShotRow]
    notes: list[str]

    @property
    def slug(self) -> str:
        return f"zero-shot-{self.dataset}"

    @property
    def title(self) -> str:
        return f"{self.dataset} · zero-shot (ZSL: unseen classes; GZSL: seen + unseen)"


def zero_shot_block(record: RunRecord) -> dict[str, Any] | None:
    """The run's ``zero_shot`` summary block, or None for a run that is not zero-shot."""
    block = record.summary.get("zero_shot")
    return block if isinstance(block, dict) and any(isinstance(block.get(t), dict) for t in TASKS) else None


def _setting(record: RunRecord, block: dict[str, Any]) -> dict[str, Any]:
    own = {"split": block.get("split"), "embeddings": block.get("embeddings"), "prompt": block.get("prompt"),
           "alignment_weight": block.get("alignment_weight") or 0.0}  # runs from before the option: 0
    return {f: own[f] if f in own else getattr(record, f) for f in SETTING_FIELDS}


def method_label(setting: dict[str, Any]) -> str:
    """``"plbench ml-decoder, glove queries ("a photo of a {}"), alignment 1 · resnet50 448 px · fine-tuned ·
    split nuswide"``: what a row of ours ran."""
    queries = f"{setting['embeddings'] or '?'} queries"
    if setting.get("prompt"):
        queries += f' ("{setting["prompt"]}")'
    parts = [f"plbench {setting['head']}, {queries}"]
    if setting.get("alignment_weight"):
        parts[0] += f", alignment {setting['alignment_weight']:g}"
    size = f" {setting['image_size']} px" if setting.get("image_size") else ""
    parts += [f"{setting['backbone']}{size}", str(setting["protocol"])]
    if setting.get("loss"):
        parts.append(f"loss {setting['loss']}")
    if setting.get("epochs"):
        parts.append(f"{setting['epochs']} epochs")
    parts.append(f"split {setting['split'] or '?'}")
    return " · ".join(parts)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def build_zero_shot_tables(records: Sequence[RunRecord], published: Sequence[PublishedNumber] = ()
                           ) -> list[ZeroShotTable]:
    """One table per dataset that has a zero-shot run (datasets sorted by name).

    Args:
        records: any run records; those without a ``zero_shot`` block are left out.
        published: published numbers; those of the same dataset with labels ``zsl`` / ``gzsl`` are shown.
    Returns:
        Tables whose rows are ours (a setting per row pair, in first-seen order of the sorted records), then
        the published rows (file order); values in percent.
    """
    by_dataset: dict[str, dict[tuple, dict[str, Any]]] = {}
    for r in records:
        block = zero_shot_block(r)
        if block is None:
            continue
        setting = _setting(r, block)
        key = tuple(str(setting[f]) for f in SETTING_FIELDS)
        entry = by_dataset.setdefault(r.dataset, {}).setdefault(key, {"setting": setting, "values": {}, "runs": []})
        entry["runs"].append(r)
        for task in TASKS:
            scores = block.get(task) or {}
            for metric, _ in METRICS:
                v = _finite(scores.get(metric))
                if v is not None:
                    entry["values"].setdefault((task, metric), []).append((r.pair_key, v))
    tables = []
    for dataset in sorted(by_dataset):
        rows: list[ZeroShotRow] = []
        notes: list[str] = []
        for entry in by_dataset[dataset].values():
            label = method_label(entry["setting"])
            names = ", ".join(sorted(r.name for r in entry["runs"]))
            for task in TASKS:
                values = {m: cell_stats(entry["values"][(task, m)]) for m, _ in METRICS if (task, m) in entry["values"]}
                if values:
                    rows.append(ZeroShotRow(label, task, values, f"plbench runs: {names}", False))
            notes.extend(_evaluation_notes(label, entry["runs"]))
        for p in published:
            if p.dataset == dataset and p.labels in TASKS:
                values = {"map": p.map, **({"f1@3": p.f1_3} if p.f1_3 is not None else {}),
                          **({"f1@5": p.f1_5} if p.f1_5 is not None else {})}
                size = f" {p.image_size} px" if p.image_size else ""
                rows.append(ZeroShotRow(f"{p.method} · {p.backbone}{size} · {p.protocol}", p.labels, values,
                                        p.source, True))
        tables.append(ZeroShotTable(dataset, rows, notes))
    return tables


def _evaluation_notes(label: str, runs: Sequence[RunRecord]) -> list[str]:
    """What each row's numbers were computed on (class and image counts), once per distinct description."""
    out = []
    for r in runs:
        b = zero_shot_block(r) or {}
        images = b.get("images") or {}
        text = (f"{label}: {b.get('num_seen', '?')} seen and {b.get('num_unseen', '?')} unseen classes; evaluated on "
                f"{images.get('zsl', '?')} images (ZSL) and {images.get('gzsl', '?')} (GZSL)")
        if b.get("dropped_train_images") is not None:
            text += f"; {b['dropped_train_images']} training images without a seen label dropped"
        if text + "." not in out:
            out.append(text + ".")
    return out


# -- renderings ---------------------------------------------------------------------------------------


def _cell(v: CellStats | float | None) -> str:
    if v is None:
        return "–"
    if isinstance(v, CellStats):
        return f"{v.mean:.2f}" if v.n < 2 else f"{v.mean:.2f} ± {v.std:.2f}"
    return f"{v:.1f}"


def table_rows(table: ZeroShotTable) -> list[list[str]]:
    """The rows as strings in :data:`HEADER` order (published rows: values as printed in the paper)."""
    out = []
    for row in table.rows:
        cells = [_cell(row.values.get(m)) for m, _ in METRICS]
        n = "" if row.n is None else str(row.n)
        out.append([row.method + (" (published)" if row.published else ""), TASK_LABELS[row.task], *cells, n,
                    row.source])
    return out


def table_csv_rows(table: ZeroShotTable) -> tuple[list[str], list[list[Any]]]:
    """Machine-readable rows: one per (row, metric) with mean, sample std (ddof = 1) and n."""
    header = ["method", "task", "published", "metric", "mean", "std_ddof1", "n", "source"]
    rows: list[list[Any]] = []
    for row in table.rows:
        for m, _ in METRICS:
            v = row.values.get(m)
            if v is None:
                continue
            if isinstance(v, CellStats):
                std = "" if v.n < 2 else repr(round(v.std, 6))
                rows.append([row.method, row.task, 0, m, repr(round(v.mean, 6)), std, v.n, row.source])
            else:
                rows.append([row.method, row.task, 1, m, repr(float(v)), "", "", row.source])
    return header, rows


def table_csv(table: ZeroShotTable) -> str:
    """:func:`table_csv_rows` as CSV text."""
    header, rows = table_csv_rows(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


PROTOCOL_TEXT = (
    "ZSL ranks the unseen classes only, GZSL seen and unseen together (labels in the order seen then unseen). "
    "mAP: per-class average precision over the evaluation images, classes without a positive counted as 0, as "
    "LESA, BiAM and ML-Decoder compute it. F1 (K = K): per image the K highest-scored classes are predicted; "
    "precision = true positives / (images x K), recall = true positives / positives, over all images. Ours: "
    "mean ± sample standard deviation (ddof = 1) over seeds, final epoch, no selection on the evaluation split; "
    "the published numbers are those of the cited tables (ML-Decoder's code keeps its best epoch on the test set).")

"""Result tables (pure: records in, numbers out): label setting x column, mean and spread over seeds,
published numbers of the same setting, and paired differences against a reference column.

Spread is the sample standard deviation (``ddof=1``, as papers report it); it is undefined (NaN) for one seed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from plbench.report.published import PublishedNumber, match_published
from plbench.report.records import RunRecord, column_sort_key, labels_sort_key

#: runs that differ in one of these are different experiments and go into different tables; only seeds
#: (and the simulation seed) are averaged within a cell
TABLE_FIELDS = ("dataset", "protocol", "backbone", "head", "image_size", "recipe", "epochs", "train_images")
#: table metrics: summary field -> what it means (shown above the table)
METRICS = {
    "val_map": "final epoch, model fixed before training (headline)",
    "authors_map": "selected on the evaluation split (as in the authors' code): best epoch, best of plain and EMA",
    "selected_map": "the epoch chosen on a held-out selection split (the single-positive papers' protocol)",
}
#: tried in this order when no reference column is asked for
DEFAULT_REFERENCES = ("ignore", "an")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1); NaN for fewer than two values."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


@dataclass(frozen=True)
class CellStats:
    """The runs of one table cell: their values (percent) and pairing keys, sorted by key."""

    values: tuple[float, ...]
    keys: tuple[Any, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return _mean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); NaN for fewer than two runs."""
        return _sample_std(self.values)

    def by_key(self) -> dict[Any, float]:
        """Value per pairing key (runs sharing a key, e.g. a re-run, are averaged)."""
        acc: dict[Any, list[float]] = {}
        for k, v in zip(self.keys, self.values):
            acc.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in acc.items()}


def cell_stats(pairs: Sequence[tuple[Any, float]]) -> CellStats:
    ordered = sorted(pairs, key=lambda kv: str(kv[0]))
    return CellStats(tuple(float(v) for _, v in ordered), tuple(k for k, _ in ordered))


def table_title(key: dict[str, Any]) -> str:
    parts = [str(key["dataset"]), str(key["protocol"]), str(key["backbone"]), f"head {key['head']}"]
    if key.get("image_size"):
        parts.append(f"{key['image_size']} px")
    parts.append(f"recipe {key['recipe']}")
    if key.get("epochs"):
        parts.append(f"{key['epochs']} epochs")
    if key.get("train_images"):
        parts.append(f"{key['train_images']} training images")
    return " · ".join(parts)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class ResultTable:
    """One table: ``rows`` label settings, ``columns`` column keys, ``cells[(row, column)]``.

    ``published[row]`` holds the published numbers of the row's setting (same dataset, labels, protocol),
    whether or not their column is in the table.
    """

    key: dict[str, Any]
    slug: str
    metric: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], CellStats]
    published: dict[str, list[PublishedNumber]]
    records: list[RunRecord]
    annotated: dict[str, float] = field(default_factory=dict)  # row -> mean annotated fraction of training labels

    @property
    def title(self) -> str:
        return table_title(self.key)

    def best(self, row: str) -> set[str]:
        """Columns with the row's best mean at the shown precision (2 decimals); empty for a single cell."""
        means = {c: round(self.cells[(row, c)].mean, 2) for c in self.columns if (row, c) in self.cells}
        if len(means) < 2:
            return set()
        top = max(means.values())
        return {c for c, m in means.items() if m == top}

    def published_rows(self, row: str) -> list[tuple[str, dict[str, PublishedNumber]]]:
        """Published numbers of ``row`` whose column is in the table, one row per (source, backbone, size)."""
        groups: dict[str, dict[str, PublishedNumber]] = {}
        for p in self.published.get(row, []):
            if p.column in self.columns:
                groups.setdefault(p.setting, {})[p.column] = p
        return list(groups.items())

    def unmatched_published(self, row: str) -> list[PublishedNumber]:
        """Published numbers of ``row``'s setting for methods that have no column in this table."""
        return [p for p in self.published.get(row, []) if p.column not in self.columns]

    def protocols(self) -> list[str]:
        """The distinct ``evaluation_protocol`` texts of the table's runs."""
        return sorted({r.evaluation_protocol for r in self.records})


def group_records(records: Sequence[RunRecord]) -> list[tuple[dict[str, Any], list[RunRecord]]]:
    """Records grouped by :data:`TABLE_FIELDS`, in a stable order (dataset, protocol, backbone, ...)."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(r.setting(TABLE_FIELDS), []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0]))
    return [(dict(zip(TABLE_FIELDS, k)), v) for k, v in ordered]


def build_tables(records: Sequence[RunRecord], metric: str = "val_map",
                 published: Sequence[PublishedNumber] = ()) -> list[ResultTable]:
    """One :class:`ResultTable` per experiment setting; runs without ``metric`` and zero-shot runs (see
    :mod:`plbench.report.zero_shot`) are left out (a table with none is dropped).

    Args:
        metric: a :data:`METRICS` key (a run attribute, percent).
        published: numbers to match against each row (see :func:`match_published`).
    """
    if metric not in METRICS:
        raise ValueError(f"expected a metric in {{{', '.join(METRICS)}}}, but got {metric!r}")
    tables: list[ResultTable] = []
    slugs: set[str] = set()
    for key, group in group_records(records):
        # a zero-shot run's val_map covers its seen classes only: it is reported in the zero-shot tables
        runs = [r for r in group if getattr(r, metric) is not None and "zero_shot" not in r.summary]
        if not runs:
            continue
        acc: dict[tuple[str, str], list[tuple[Any, float]]] = {}
        frac: dict[str, list[float]] = {}
        for r in runs:
            acc.setdefault((r.labels, r.column), []).append((r.pair_key, getattr(r, metric)))
            f = r.summary.get("train_annotated_fraction")
            if isinstance(f, (int, float)):
                frac.setdefault(r.labels, []).append(float(f))
        rows = sorted({k[0] for k in acc}, key=labels_sort_key)
        columns = sorted({k[1] for k in acc}, key=column_sort_key)
        slug = base = _slug("-".join(str(key[f]) for f in ("dataset", "backbone", "head", "protocol")))
        i = 2
        while slug in slugs:
            slug, i = f"{base}-{i}", i + 1
        slugs.add(slug)
        tables.append(ResultTable(
            key=key, slug=slug, metric=metric, rows=rows, columns=columns,
            cells={k: cell_stats(v) for k, v in acc.items()},
            published={row: match_published(list(published), key["dataset"], row, key["protocol"]) for row in rows},
            records=runs, annotated={row: float(np.mean(v)) for row, v in frac.items()},
        ))
    return tables


# -- paired differences ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedDiff:
    """Differences ``column - reference`` (percentage points) over the seeds both columns have."""

    diffs: tuple[float, ...]
    keys: tuple[Any, ...]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return _mean(self.diffs)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1) of the per-seed differences; NaN for fewer than two pairs."""
        return _sample_std(self.diffs)

    @property
    def wins(self) -> int:
        """Seeds on which the column beats the reference."""
        return int(sum(d > 0 for d in self.diffs))


@dataclass
class PairedTable:
    table: ResultTable
    reference: str | None  # column key, or None when the table has no such column
    cells: dict[tuple[str, str], PairedDiff]

    @property
    def columns(self) -> list[str]:
        return [c for c in self.table.columns if c != self.reference]


def resolve_reference(columns: Sequence[str], reference: str | None) -> str | None:
    """The column key that ``reference`` names in ``columns``.

    ``reference`` may be a column key (``"bce:ignore"``), a mode (``"ignore"``: the first column in that
    mode, in column order) or a loss (``"an"``). None tries :data:`DEFAULT_REFERENCES`, then the first column.
    Returns None when ``reference`` matches no column.
    """
    def find(name: str) -> str | None:
        if name in columns:
            return name
        for c in columns:
            loss, _, mode = c.partition(":")
            if mode == name or loss == name:
                return c
        return None

    if reference is not None:
        return find(reference)
    for name in DEFAULT_REFERENCES:
        found = find(name)
        if found:
            return found
    return columns[0] if columns else None


def paired_differences(table: ResultTable, reference: str | None = None) -> PairedTable:
    """Per row and column, the differences against the reference column on the same pairing key (same
    simulated labels and training seed). Cells without a common seed are absent."""
    ref = resolve_reference(table.columns, reference)
    cells: dict[tuple[str, str], PairedDiff] = {}
    if ref is not None:
        for row in table.rows:
            if (row, ref) not in table.cells:
                continue
            base = table.cells[(row, ref)].by_key()
            for c in table.columns:
                if c == ref or (row, c) not in table.cells:
                    continue
                other = table.cells[(row, c)].by_key()
                common = sorted(set(base) & set(other), key=str)
                if common:
                    cells[(row, c)] = PairedDiff(tuple(other[k] - base[k] for k in common), tuple(common))
    return PairedTable(table, ref, cells)

"""Published mAP values (``plbench/data/published.csv``, one row per number with its source)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from plbench.errors import InputError
from plbench.report.records import parse_labels

FIELDS = ("dataset", "labels", "protocol", "column", "map", "method", "backbone", "image_size", "selection", "source")
#: columns a row may leave empty (and a file may lack): top-K F1 of the zero-shot tables, percent
OPTIONAL_FIELDS = ("f1_3", "f1_5")


@dataclass(frozen=True)
class PublishedNumber:
    """One published mAP (percent) and where it comes from."""

    dataset: str
    labels: str  # plbench label-setting tag
    protocol: str  # Protocol value
    column: str  # plbench column key (``loss:mode`` or ``loss``)
    map: float
    method: str  # the paper's name for it
    backbone: str
    image_size: int | None
    selection: str  # how the paper selected the model
    source: str
    f1_3: float | None = None  # zero-shot rows: overall F1 at K = 3 (percent), where the table gives it
    f1_5: float | None = None  # and at K = 5

    @property
    def citation(self) -> str:
        """Short source: the text before the first comma of :attr:`source` (``"Ben-Baruch et al. 2022"``)."""
        return self.source.split(",")[0].strip()

    @property
    def setting(self) -> str:
        size = f", {self.image_size} px" if self.image_size else ""
        return f"{self.citation}, {self.backbone}{size}"


def parse_published(text: str, path: str | Path | None = None) -> list[PublishedNumber]:
    """Rows of a published-numbers CSV (lines starting with ``#`` are comments).

    Raises:
        InputError: missing columns or a value that is not a number.
    """
    rows = csv.DictReader(io.StringIO("".join(line for line in text.splitlines(keepends=True)
                                              if not line.startswith("#"))))
    missing = [f for f in FIELDS if f not in (rows.fieldnames or [])]
    if missing:
        raise InputError(path, "header", f"expected columns {', '.join(FIELDS)}, but {', '.join(missing)} are missing",
                         "fix the header row")
    out = []
    for i, row in enumerate(rows, 2):
        try:
            value = float(row["map"])
            size = int(row["image_size"]) if row["image_size"].strip() else None
            f1 = {f: float(row[f]) if (row.get(f) or "").strip() else None for f in OPTIONAL_FIELDS}
        except ValueError:
            raise InputError(path, f"row {i}", f"expected numbers in map, image_size, {', '.join(OPTIONAL_FIELDS)}, "
                             f"but got {row['map']!r}, {row['image_size']!r}, "
                             f"{', '.join(repr(row.get(f)) for f in OPTIONAL_FIELDS)}", "fix the row") from None
        out.append(PublishedNumber(
            dataset=row["dataset"].strip(), labels=row["labels"].strip(), protocol=row["protocol"].strip(),
            column=row["column"].strip(), map=value, method=row["method"].strip(), backbone=row["backbone"].strip(),
            image_size=size, selection=row["selection"].strip(), source=row["source"].strip(), **f1,
        ))
    return out


def load_published(path: str | Path | None = None) -> list[PublishedNumber]:
    """The published numbers shipped with plbench (or those of ``path``)."""
    if path is None:
        text = resources.files("plbench").joinpath("data", "published.csv").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return parse_published(text, path or "plbench/data/published.csv")


def match_published(numbers: list[PublishedNumber], dataset: str, labels: str, protocol: str) -> list[PublishedNumber]:
    """The published numbers of one table row: same dataset, label setting and protocol."""
    scheme, param = parse_labels(labels)
    out = []
    for p in numbers:
        if p.dataset != dataset or p.protocol != protocol:
            continue
        if p.labels == labels or (scheme is not None and parse_labels(p.labels) == (scheme, param)) or (
                scheme == "spl" and parse_labels(p.labels)[0] == "spl"):  # spl has no parameter: spl == spl1
            out.append(p)
    return out

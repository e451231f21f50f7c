"""Class-prior CSV files (``Classes,avg_pred``), the format of the CSL authors' published priors.

Layout (UTF-8, ``\\n`` line ends, csv quoting only where a name needs it)::

    Classes,avg_pred
    person,0.542279
    bicycle,0.13131638
    ...

``avg_pred`` is the mean predicted probability of the class over the training images (written as the
shortest decimal that reads back to the same float32, as pandas writes a float32 column). The CSL
authors' ``prior_fpc_1000.csv`` ends with one extra line holding a single number and no comma (its
meaning is undocumented; their pandas reader turns it into an 81st row with a NaN prior). It is not a
class row: a numeric single-field last line is kept as ``trailer``, so that reading and writing the
file reproduces it byte for byte. A prior is matched to a dataset's classes BY NAME, never by position.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from plbench.artifacts.atomic import write_bytes
from plbench.errors import InputError

log = logging.getLogger(__name__)

HEADER = ("Classes", "avg_pred")


@dataclass(frozen=True)
class PriorTable:
    """A prior file as read: rows in file order.

    Attributes:
        class_names: names, in file order.
        values: float64 (K,) priors in [0, 1].
        trailer: the single-field last line of the CSL authors' file (verbatim), or None.
    """

    class_names: list[str]
    values: np.ndarray
    trailer: str | None = None

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.class_names, self.values.tolist()))


def _format_value(value: float, precision: str) -> str:
    if precision == "float32":
        return str(np.float32(value))  # shortest repr that round-trips float32, like pandas
    return repr(float(value))


def format_prior_csv(
    class_names: Sequence[str], prior: Any, *, trailer: str | None = None, precision: str = "float32"
) -> str:
    """The CSV text of a prior (see the module docstring).

    Args:
        class_names: C names.
        prior: float (C,) values in [0, 1] (numpy, torch or a sequence).
        trailer: optional last line (no comma), as in the CSL authors' file.
        precision: ``"float32"`` (the authors' format) or ``"float64"`` (shortest float64 repr).
    Raises:
        ValueError: lengths differ, a value is not finite or outside [0, 1], duplicate names, a trailer
            with a comma or line break, or an unknown precision.
    """
    if precision not in ("float32", "float64"):
        raise ValueError(f"expected precision float32 or float64, but got {precision!r}")
    values = np.asarray(prior.detach().cpu() if hasattr(prior, "detach") else prior, dtype=np.float64).ravel()
    names = [str(c) for c in class_names]
    if values.size != len(names):
        raise ValueError(f"expected one prior per class ({len(names)}), but got {values.size} values")
    if not np.all(np.isfinite(values)) or values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError("expected prior values in [0, 1], but got values outside it or non-finite")
    dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if dupes:
        raise ValueError(f"expected unique class names, but got duplicates: {dupes[:5]}")
    if trailer is not None and ("," in trailer or "\n" in trailer or "\r" in trailer):
        raise ValueError(f"expected a trailer without commas or line breaks, but got {trailer!r}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    for name, value in zip(names, values):
        writer.writerow((name, _format_value(value, precision)))
    if trailer is not None:
        buf.write(trailer + "\n")
    return buf.getvalue()


def write_prior_csv(
    path: str | Path,
    class_names: Sequence[str],
    prior: Any,
    *,
    trailer: str | None = None,
    precision: str = "float32",
) -> None:
    """Atomically write a prior CSV readable by plbench and by the CSL authors' code.

    Args and errors: as :func:`format_prior_csv`.
    """
    write_bytes(path, format_prior_csv(class_names, prior, trailer=trailer, precision=precision).encode("utf-8"))


def read_prior_table(path: str | Path) -> PriorTable:
    """Read a prior CSV without matching it to any class list.

    Raises:
        InputError: unreadable file, wrong header, a malformed row (wrong field count, not a number,
            outside [0, 1]), duplicate class names, or no class rows.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, "file", f"cannot read a UTF-8 text file ({e})",
                         "pass a prior CSV written by `plbench estimate-prior` or by the CSL authors") from None
    rows = [(i + 1, row) for i, row in enumerate(csv.reader(io.StringIO(text, newline="")))]
    rows = [(n, row) for n, row in rows if row]  # blank lines carry nothing
    if not rows or tuple(rows[0][1]) != HEADER:
        got = ",".join(rows[0][1]) if rows else "an empty file"
        raise InputError(path, "header", f"expected the header 'Classes,avg_pred', but got {got!r}",
                         "write the file with `plbench estimate-prior` or give it that header")
    trailer = None
    body = rows[1:]
    if body and len(body[-1][1]) == 1 and _is_number(body[-1][1][0]):
        trailer = body[-1][1][0]
        body = body[:-1]
        log.info("%s: kept the single-field last line %r as a trailer (not a class)", path, trailer)
    names: list[str] = []
    values: list[float] = []
    for line, row in body:
        if len(row) != 2:
            raise InputError(path, f"line {line}", f"expected 2 fields (Classes,avg_pred), but got {len(row)}: {row!r}",
                             "fix or remove that line")
        try:
            value = float(row[1])
        except ValueError:
            raise InputError(path, f"avg_pred on line {line}", f"expected a number, but got {row[1]!r}",
                             "fix that value") from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise InputError(path, f"avg_pred on line {line}", f"expected a probability in [0, 1], but got {row[1]}",
                             "fix that value")
        names.append(row[0])
        values.append(value)
    if not names:
        raise InputError(path, "Classes", "expected at least one class row, but got none", "add the class rows")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dupes = sorted({n for n in names if n in seen or seen.add(n)})
        raise InputError(path, "Classes", f"expected each class once, but got duplicates: {dupes[:5]}",
                         "keep one row per class")
    return PriorTable(names, np.asarray(values, dtype=np.float64), trailer)


def match_prior(table: PriorTable, class_names: Sequence[str], path: str | Path | None = None) -> np.ndarray:
    """Align a prior table to ``class_names`` by name.

    Returns:
        float64 (C,) priors in the order of ``class_names``.
    Raises:
        InputError: a dataset class is missing from the prior, or the prior names a class the dataset
            does not have (the message names them).
    """
    wanted = [str(c) for c in class_names]
    lookup = table.as_dict()
    missing = [c for c in wanted if c not in lookup]
    wanted_set = set(wanted)
    extra = [c for c in table.class_names if c not in wanted_set]
    if missing or extra:
        parts = []
        if missing:
            hint = difflib.get_close_matches(missing[0], extra or table.class_names, n=1)
            parts.append(f"it lacks {len(missing)} of the dataset's classes: {_names(missing)}"
                         + (f" (did you mean {hint[0]!r} for {missing[0]!r}?)" if hint else ""))
        if extra:
            parts.append(f"it has {len(extra)} classes the dataset does not: {_names(extra)}")
        raise InputError(
            path, "Classes",
            f"expected one row for each of the dataset's {len(wanted)} classes, but " + "; ".join(parts),
            "estimate the prior on this dataset (`plbench estimate-prior`) or rename the rows to the "
            "dataset's class names",
        )
    return np.asarray([lookup[c] for c in wanted], dtype=np.float64)


def read_prior_csv(path: str | Path, class_names: Sequence[str]) -> np.ndarray:
    """Read a prior CSV and align it to ``class_names`` by name.

    Returns:
        float64 (C,) priors in [0, 1], in the order of ``class_names``.
    Raises:
        InputError: as :func:`read_prior_table` and :func:`match_prior`.
    """
    return match_prior(read_prior_table(path), class_names, path)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


__all__ = ["HEADER", "PriorTable", "format_prior_csv", "match_prior", "read_prior_csv", "read_prior_table",
           "write_prior_csv"]


def default_prior_path(dataset: str, simulation: str | Path | None, backbone: str, seed: int,
                       root: str | Path = "priors") -> Path:
    """Where ``plbench estimate-prior`` writes by default.

    ``priors/<simulation file stem>-<backbone>-s<seed>.csv`` for simulated labels (the stem already names
    the dataset, scheme, parameter and simulation seed), ``priors/<dataset>-natural-<backbone>-s<seed>.csv``
    for a dataset's own labels.
    """
    stem = Path(simulation).stem if simulation is not None else f"{dataset}-natural"
    return Path(root) / f"{stem}-{backbone.replace('/', '_')}-s{seed}.csv"

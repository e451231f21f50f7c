"""Seen / unseen class splits for zero-shot training and evaluation, for any dataset.

A :class:`ZSLSplit` names the seen classes (trained on) and the unseen ones (evaluated zero-shot).
GZSL evaluates on ``split.classes`` = seen then unseen, the column order the zero-shot papers use
(LESA, BiAM: 925 tags then 81 concepts).

Sources:

* NUS-WIDE's standard split (:func:`nuswide_split`): the 925 tags of ``TagList1k.txt`` that are not
  concepts (seen, tag order) and the 81 concepts of ``Concepts81.txt`` (unseen, file order); 6
  concepts are not tags, so 1,006 classes in all;
* a split file chosen by the user (:func:`read_split_file`): ML-Decoder's ``benchmark_81_v0.json``
  form ``{"test class": [...]}`` (optionally with ``"train class"``), or a text file of unseen class
  names, one a line;
* a split drawn by a seed (:func:`draw_split`), bit-identical per seed, saved with
  :func:`write_split_file` (atomic) so a run can name it.

Training sees only seen classes: :func:`restrict_labels` keeps their columns and drops the images
with no seen positive (as ML-Decoder's ``DatasetFromList.get_relevant_samples`` does), saying how
many it dropped. Array functions are pure; only the ``read_*``/``write_*`` functions do I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from plbench.artifacts.atomic import write_json
from plbench.errors import InputError
from plbench.labels import POS, PartialLabels

#: the --zsl-split value of NUS-WIDE's standard split (read from the class files, not a split file)
NUSWIDE = "nuswide"

TEST_KEY, TRAIN_KEY = "test class", "train class"  # ML-Decoder's benchmark_81_v0.json keys


@dataclass(frozen=True)
class ZSLSplit:
    """Seen and unseen class names (disjoint, each listed once).

    Attributes:
        seen: classes trained on, in their source's order.
        unseen: classes evaluated zero-shot.
        source: where the split comes from (``nuswide``, a file path, ``seed=3``), for run records.
    """

    seen: tuple[str, ...]
    unseen: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        for what, names in (("seen", self.seen), ("unseen", self.unseen)):
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise ValueError(f"expected each {what} class once, but {dup!r} repeats")
        both = set(self.seen) & set(self.unseen)
        if both:
            raise ValueError(f"expected disjoint seen and unseen classes, but {sorted(both)[:5]} are in both")

    @property
    def classes(self) -> tuple[str, ...]:
        """Seen then unseen: the GZSL class order."""
        return self.seen + self.unseen

    @property
    def num_seen(self) -> int:
        return len(self.seen)

    @property
    def num_unseen(self) -> int:
        return len(self.unseen)

    def to_json(self) -> dict:
        """``{"test class": unseen, "train class": seen}``: readable by ML-Decoder and :func:`read_split_file`."""
        return {TEST_KEY: list(self.unseen), TRAIN_KEY: list(self.seen)}


def nuswide_split(tags: Sequence[str], concepts: Sequence[str]) -> ZSLSplit:
    """NUS-WIDE's split: seen = tags not among the concepts (tag order), unseen = the concepts.

    Args:
        tags: ``TagList1k.txt`` names (1,000 in the release).
        concepts: ``Concepts81.txt`` names (81).
    Returns:
        925 seen, 81 unseen for the release files.
    """
    concept_set = set(concepts)
    return ZSLSplit(tuple(t for t in tags if t not in concept_set), tuple(concepts), NUSWIDE)


def read_nuswide_split(root: str | Path) -> ZSLSplit:
    """:func:`nuswide_split` of the class files under ``root`` (published places or flat in ``root``).

    Raises:
        InputError: a class file is missing.
    """
    from plbench.datasets.nuswide import nuswide_class_lists  # I/O layer, imported where used

    return nuswide_split(*nuswide_class_lists(Path(root)))


def split_from_unseen(class_names: Sequence[str], unseen: Sequence[str], source: str = "",
                      seen: Sequence[str] | None = None) -> ZSLSplit:
    """The split of a dataset's classes in which ``unseen`` are held out.

    Both lists keep the dataset's class order (as ML-Decoder's ``get_class_ids_split``).

    Args:
        class_names: the dataset's classes, (C,).
        unseen: names to hold out; each must be a class.
        seen: optional explicit seen names (``"train class"``); default: every class not unseen.
    Raises:
        ValueError: an unseen or seen name that is not a class, or no seen class left.
    """
    known = set(class_names)
    for what, names in (("unseen", unseen), ("seen", seen or ())):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"expected {what} names among the {len(known)} classes, but {len(unknown)} are not "
                             f"(first: {unknown[:3]})")
    held = set(unseen)
    chosen = set(seen) if seen is not None else known - held
    out = ZSLSplit(tuple(c for c in class_names if c in chosen), tuple(c for c in class_names if c in held), source)
    if not out.seen:
        raise ValueError("expected at least one seen class, but every class is unseen")
    return out


def read_split_file(path: str | Path, class_names: Sequence[str]) -> ZSLSplit:
    """A user's split file for a dataset with classes ``class_names``.

    Formats: JSON ``{"test class": [...]}`` (ML-Decoder's ``benchmark_81_v0.json``; an optional
    ``"train class"`` list gives the seen classes, else all others are seen), or text, one unseen
    class name a line (blank lines and ``#`` comments ignored; Windows line ends accepted).

    Raises:
        InputError: missing or malformed file, a name that is not a class, or no seen class left.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "expected a split file, but it is missing",
                         "give a benchmark_81_v0.json-style JSON or a text list of unseen class names")
    text = path.read_text(encoding="utf-8")
    seen = None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(path, "JSON", f"expected valid JSON, but got {e.msg} at line {e.lineno}",
                             "fix the file") from None
        if not isinstance(data.get(TEST_KEY), list):
            raise InputError(path, TEST_KEY, f"expected a list under {TEST_KEY!r}, but the keys are "
                             f"{', '.join(map(repr, data)) or 'none'}", 'write {"test class": [unseen names]}')
        unseen = [str(n) for n in data[TEST_KEY]]
        if TRAIN_KEY in data:
            seen = [str(n) for n in data[TRAIN_KEY]]
    else:
        unseen = [line.strip() for line in text.splitlines()]
        unseen = [n for n in unseen if n and not n.startswith("#")]
    try:
        return split_from_unseen(class_names, unseen, str(path), seen)
    except ValueError as e:
        raise InputError(path, TEST_KEY, str(e), "use class names exactly as the dataset spells them") from None


def draw_split(class_names: Sequence[str], num_unseen: int, seed: int) -> ZSLSplit:
    """Hold out ``num_unseen`` classes drawn uniformly without replacement; same seed, same split.

    Args:
        class_names: the dataset's classes, (C,).
        num_unseen: in [1, C - 1].
        seed: numpy ``default_rng`` seed.
    Raises:
        ValueError: ``num_unseen`` out of range.
    """
    c = len(class_names)
    if not 1 <= num_unseen <= c - 1:
        raise ValueError(f"expected num_unseen in [1, {c - 1}], but got {num_unseen}")
    picked = np.random.default_rng(seed).choice(c, size=num_unseen, replace=False)
    return split_from_unseen(class_names, [class_names[i] for i in np.sort(picked)], f"seed={seed}")


def write_split_file(path: str | Path, split: ZSLSplit) -> None:
    """Write ``split`` as ``{"test class": ..., "train class": ...}`` JSON, atomically."""
    write_json(path, split.to_json())


def class_indices(class_names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """int64 (K,): the position of each ``wanted`` name in ``class_names``.

    Raises:
        ValueError: a wanted name that is not a class.
    """
    where = {n: i for i, n in enumerate(class_names)}
    missing = [n for n in wanted if n not in where]
    if missing:
        raise ValueError(f"expected names among the {len(where)} classes, but {len(missing)} are not "
                         f"(first: {missing[:3]})")
    return np.array([where[n] for n in wanted], dtype=np.int64)


def restrict_matrix(matrix: np.ndarray, columns: np.ndarray, drop_empty: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep ``columns`` of a label matrix and (``drop_empty``) the rows with a positive among them.

    Args:
        matrix: int8 (N, C) in {1, 0, -1}.
        columns: int (K,) class indices, in the order wanted.
    Returns:
        ``(matrix[rows][:, columns]`` int8 (M, K), ``rows`` int64 (M,) kept row indices, ``N - M``
        dropped).
    """
    sub = np.asarray(matrix)[:, columns]
    rows = np.flatnonzero((sub == POS).any(1)) if drop_empty else np.arange(sub.shape[0])
    return sub[rows], rows.astype(np.int64), int(sub.shape[0] - rows.size)


def restrict_labels(labels: PartialLabels, classes: Sequence[str], drop_empty: bool = True
                    ) -> tuple[PartialLabels, np.ndarray, int]:
    """Labels of ``classes`` only (in that order); images without a positive among them dropped.

    For training on a split's seen classes (``classes=split.seen``), and for ML-Decoder's ZSL
    evaluation, which keeps only images with an unseen positive (``classes=split.unseen``). LESA and
    BiAM evaluate every test image: pass ``drop_empty=False``.

    Returns:
        ``(labels, rows, dropped)``: the restricted labels (same layout and ``complete``), the kept row
        indices int64 (M,) into the input (to subset image paths), and how many images were dropped.
    Raises:
        ValueError: a class name that is not in ``labels``.
    """
    cols = class_indices(labels.class_names, classes)
    if not labels.is_sparse:
        sub, rows, dropped = restrict_matrix(labels.matrix, cols, drop_empty)
        out = PartialLabels.from_dense(sub, labels.image_ids[rows], list(classes), complete=labels.complete,
                                       validate=False)
        return out, rows, dropped
    # sparse (OpenImages scale): remap the stored columns, never a dense (N, C) matrix; rows by PartialLabels.subset
    r, c, v = labels.sparse
    new_col = np.full(labels.num_classes, -1, dtype=np.int64)
    new_col[cols] = np.arange(cols.size)
    keep = new_col[c] >= 0
    r, v = r[keep], v[keep]
    picked = PartialLabels.from_sparse(r, new_col[c[keep]], v, labels.image_ids, list(classes),
                                       complete=labels.complete, validate=False)
    n = labels.num_images
    if not drop_empty:
        return picked, np.arange(n, dtype=np.int64), 0
    rows = np.unique(r[v == POS]).astype(np.int64)
    return picked.subset(rows), rows, int(n - rows.size)

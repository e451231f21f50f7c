"""NUS-WIDE: the official release layout, or ML-Decoder's single-file layout of the same data.

Official layout (files as NUS-WIDE publishes them; image lists use Windows paths)::

    ROOT/
      ImageList/Imagelist.txt          all 269,648 images, e.g. C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg
      ImageList/TrainImagelist.txt     161,789 images, e.g. actor\\0001_2124494179.jpg
      ImageList/TestImagelist.txt      107,859 images
      NUS_WID_Tags/TagList1k.txt       the 1,000 user tags, one a line
      NUS_WID_Tags/AllTags1k.txt       one row per Imagelist.txt line: 1,000 tab-separated 0/1
      ConceptsList/Concepts81.txt      the 81 concepts, one a line
      Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt   one 0/1 a line, TrainImagelist order
      Groundtruth/TrainTestLabels/Labels_<concept>_Test.txt    one 0/1 a line, TestImagelist order
      Groundtruth/AllLabels/Labels_<concept>.txt               optional fallback: Imagelist order
      Flickr/actor/0001_2124494179.jpg ...

An image is named by its last two path components (``actor/0001_2124494179.jpg``), so the
absolute Windows paths of ``Imagelist.txt`` and the relative ones of the split lists match; its
file is ``ROOT/Flickr/<folder>/<file>``.

Two label sources, kept apart, and the ``nuswide_labels`` option (:class:`NusWideLabels`, CLI
``--nuswide-labels``) says which to read:

* ``concepts`` (default): the 81 concepts, annotated by people (``Groundtruth/``), in
  ``Concepts81.txt`` order;
* ``tags``: the 1,000 Flickr user tags (``AllTags1k.txt``), in ``TagList1k.txt`` order. Tags are
  noisy: a tag is what the uploader typed, so a present tag may be wrong and an absent one is not a
  verified negative; they are stored as complete 0/1 labels, as the zero-shot papers use them;
* ``zsl``: the 1,006 classes of the zero-shot protocol (LESA, BiAM): the 925 tags that are not
  concepts (seen, from ``AllTags1k.txt``, in tag order), then the 81 concepts (unseen, from
  ``Groundtruth/``). ``class_groups`` holds ``seen`` and ``unseen``.

All three are complete labels (every entry 1 or 0). ``notes["nuswide_labels"]`` records the choice.

ML-Decoder's layout (``Alibaba-MIIL/ML_Decoder``, ``train_zsl_nus.py``), used when ``ImageList/``
is absent::

    ROOT/
      data.csv              header row, then: image path, "[label1, label2]", train|val
      benchmark_81_v0.json  {"test class": [...]}: the unseen classes (read by plbench.zsl.splits)
      <image path>          each path relative to ROOT

Its classes are every label name in ``data.csv``, sorted (the order of its ``wordvec_array.pth``
columns); the split column's ``val`` is NUS-WIDE's test set. Label strings are split on commas,
with brackets, quotes and spaces stripped; ``[]`` is an image without labels (kept, all negative,
counted in ``notes["images_without_labels"]``). ``nuswide_labels`` must be unset for this layout
(``notes["nuswide_labels"]`` is ``data.csv``): the file does not say which labels came from tags.

Splits: ``train`` and ``test`` (``val`` is accepted for ``test``). Missing image files are counted,
logged and dropped (``strict=True`` makes them an error).
"""

from __future__ import annotations

import csv
from enum import Enum
from pathlib import Path
from typing import Sequence

import numpy as np

from plbench.datasets.base import DatasetSplit, SplitSource, drop_missing_images, file_fingerprint, register_dataset
from plbench.errors import InputError
from plbench.labels import PartialLabels

IMAGE_LIST = "ImageList/Imagelist.txt"
SPLIT_LISTS = {"train": "ImageList/TrainImagelist.txt", "test": "ImageList/TestImagelist.txt"}
TAG_LIST = "NUS_WID_Tags/TagList1k.txt"
ALL_TAGS = "NUS_WID_Tags/AllTags1k.txt"
CONCEPTS = "ConceptsList/Concepts81.txt"
TRAIN_TEST_LABELS = "Groundtruth/TrainTestLabels"
ALL_LABELS = "Groundtruth/AllLabels"
IMAGE_FOLDER = "Flickr"
DATA_CSV = "data.csv"
SPLIT_ALIASES = {"train": "train", "test": "test", "val": "test"}
DATA_CSV_SPLITS = {"train": "train", "test": "val"}  # canonical split -> value in data.csv's split column
NUM_TAGS, NUM_CONCEPTS = 1000, 81


class NusWideLabels(str, Enum):
    """Which NUS-WIDE labels a split is read with (see the module docstring)."""

    CONCEPTS = "concepts"  # 81 human-annotated concepts
    TAGS = "tags"  # 1,000 noisy user tags
    ZSL = "zsl"  # 925 seen tags, then 81 unseen concepts (1,006)


def parse_nuswide_labels(value: str | NusWideLabels | None) -> NusWideLabels | None:
    """The :class:`NusWideLabels` for an option value (``None`` stays ``None``).

    Raises:
        InputError: a value that is not one of the choices (the message lists them).
    """
    if value is None or isinstance(value, NusWideLabels):
        return value
    try:
        return NusWideLabels(str(value).lower())
    except ValueError:
        raise InputError(None, "--nuswide-labels", f"expected one of {', '.join(v.value for v in NusWideLabels)}, "
                         f"but got {value!r}", "pick the label set to read") from None


# -- plain file readers ------------------------------------------------------------------------------

def read_name_list(path: Path) -> list[str]:
    """Names one a line (``TagList1k.txt``, ``Concepts81.txt``); Windows line ends and blank lines dropped.

    Raises:
        InputError: missing file, or a name listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "expected a list of names, one a line, but the file is missing",
                         "point --data-root at the NUS-WIDE folder as published")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise InputError(path, "names", f"expected each name once, but {n!r} is listed twice",
                             "use the file as published")
        seen.add(n)
    return names


def image_key(path: str) -> str:
    """``folder/file`` of a NUS-WIDE image path, Windows or POSIX (``C:\\x\\Flickr\\actor\\1.jpg`` -> ``actor/1.jpg``)."""
    parts = [p for p in path.strip().replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:])


def read_image_list(path: Path) -> list[str]:
    """The image keys (:func:`image_key`) of an image-list file, in file order.

    Raises:
        InputError: missing file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "expected a NUS-WIDE image list, but the file is missing",
                         "point --data-root at the NUS-WIDE folder holding ImageList/")
    return [image_key(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


_ZERO, _ONE = ord("0"), ord("1")
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[ord(" "), ord("\t"), ord("\r")]] = True


def read_binary_rows(path: Path, width: int, chunk_bytes: int = 1 << 26) -> np.ndarray:
    """A file of ``width`` whitespace-separated 0/1 digits per line (``AllTags1k.txt``, ``Labels_*.txt``).

    Tabs, spaces, ``\\r`` and trailing separators are ignored; blank lines (a final newline) too.
    Read in chunks of about ``chunk_bytes`` cut at line ends, vectorised (no per-value Python work).

    Returns:
        uint8 (N, width) in {0, 1}.

    Raises:
        InputError: missing file, a character other than 0, 1 or whitespace, or a line with another
            number of values than ``width`` (the message gives the line number).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", f"expected a file of {width} 0/1 value(s) per line, but it is missing",
                         "point --data-root at the NUS-WIDE folder as published")
    blocks: list[np.ndarray] = []
    line_offset = 0
    first_blank: int | None = None  # first blank line so far; only trailing blank lines are allowed
    rest = b""
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk_bytes)
            final = not data
            buf = rest + data
            if not final:
                cut = buf.rfind(b"\n") + 1
                buf, rest = buf[:cut], buf[cut:]
                if not buf:
                    continue
            rows, lines, blank = _parse_binary_block(buf, width, path, line_offset)
            if rows.shape[0] and first_blank is not None:
                raise InputError(path, f"line {first_blank}", "expected a row of 0/1 values, but the line is blank",
                                 "remove the blank line (rows must stay aligned with the image list)")
            if first_blank is None and blank is not None:
                first_blank = blank
            blocks.append(rows)
            line_offset += lines
            if final:
                break
    return np.concatenate(blocks) if blocks else np.zeros((0, width), dtype=np.uint8)


def _parse_binary_block(buf: bytes, width: int, path: Path, line_offset: int) -> tuple[np.ndarray, int, int | None]:
    """(rows, lines in the block, 1-based number of the first blank line after which no row follows, or None)."""
    a = np.frombuffer(buf, dtype=np.uint8)
    if not a.size:
        return np.zeros((0, width), dtype=np.uint8), 0, None
    newline = a == ord("\n")
    digit = (a == _ZERO) | (a == _ONE)
    bad = ~(digit | newline | _SPACE[a])
    line_of = np.cumsum(newline) - newline  # line index of each byte (a newline belongs to its line)
    num_lines = int(line_of[-1]) + 1
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(path, f"line {line_offset + int(line_of[i]) + 1}", f"expected 0/1 values, but got "
                         f"{chr(a[i])!r}", "use the file as published (one row of 0/1 values per image)")
    counts = np.bincount(line_of[digit], minlength=num_lines)
    blank = counts == 0
    wrong = (counts != width) & ~blank
    if wrong.any():
        i = int(np.argmax(wrong))
        raise InputError(path, f"line {line_offset + i + 1}", f"expected {width} value(s), but got {counts[i]}",
                         "use the file as published (one row of 0/1 values per image)")
    filled = np.flatnonzero(~blank)
    inner_blank = np.flatnonzero(blank[: filled[-1]]) if filled.size else np.zeros(0, dtype=np.int64)
    if inner_blank.size:
        raise InputError(path, f"line {line_offset + int(inner_blank[0]) + 1}", "expected a row of 0/1 values, but "
                         "the line is blank", "remove the blank line (rows must stay aligned with the image list)")
    trailing = (filled[-1] + 1 if filled.size else 0)
    first_blank = line_offset + int(trailing) + 1 if trailing < num_lines else None
    values = (a[digit] - _ZERO).astype(np.uint8)
    return values.reshape(-1, width), num_lines, first_blank


# -- official layout ---------------------------------------------------------------------------------

def nuswide_class_lists(root: Path) -> tuple[list[str], list[str]]:
    """``(tags, concepts)``: ``TagList1k.txt`` (1,000) and ``Concepts81.txt`` (81) of ``root``, in file order.

    Each file is looked for at its published place, then directly in ``root`` (the zero-shot code
    releases ship them flat).

    Raises:
        InputError: a file is missing or lists a name twice.
    """
    root = Path(root)
    out = []
    for rel in (TAG_LIST, CONCEPTS):
        path = root / rel
        if not path.is_file() and (root / Path(rel).name).is_file():
            path = root / Path(rel).name
        out.append(read_name_list(path))
    return out[0], out[1]


def _concept_labels(root: Path, split: str, concepts: Sequence[str], keys: list[str]) -> tuple[np.ndarray, list[Path]]:
    """(N, 81) uint8 concept labels of a split's images, from TrainTestLabels or AllLabels."""
    suffix = {"train": "Train", "test": "Test"}[split]
    per_split = [root / TRAIN_TEST_LABELS / f"Labels_{c}_{suffix}.txt" for c in concepts]
    if all(p.is_file() for p in per_split):
        cols = [read_binary_rows(p, 1)[:, 0] for p in per_split]
        for p, col in zip(per_split, cols):
            if col.size != len(keys):
                raise InputError(p, "lines", f"expected {len(keys):,} values (one per line of "
                                 f"{SPLIT_LISTS[split]}), but got {col.size:,}", "use the files of one NUS-WIDE release")
        return np.stack(cols, axis=1), per_split
    every = [root / ALL_LABELS / f"Labels_{c}.txt" for c in concepts]
    if all(p.is_file() for p in every):
        rows = _rows_in_image_list(root, keys)
        cols = []
        for p in every:
            col = read_binary_rows(p, 1)[:, 0]
            if col.size != rows.total:
                raise InputError(p, "lines", f"expected {rows.total:,} values (one per line of {IMAGE_LIST}), but "
                                 f"got {col.size:,}", "use the files of one NUS-WIDE release")
            cols.append(col[rows.index])
        return np.stack(cols, axis=1), every
    missing = next(p for p in per_split if not p.is_file())
    raise InputError(missing, "file", f"expected the concept labels of the {split} split "
                     f"({TRAIN_TEST_LABELS}/Labels_<concept>_{suffix}.txt, or {ALL_LABELS}/Labels_<concept>.txt), "
                     "but this one is missing", "download NUS-WIDE's Groundtruth folder into --data-root")


class _Rows:
    def __init__(self, index: np.ndarray, total: int, path: Path) -> None:
        self.index, self.total, self.path = index, total, path


def _rows_in_image_list(root: Path, keys: list[str]) -> _Rows:
    """Row of each split image in ``Imagelist.txt`` (the order of AllTags1k.txt and AllLabels)."""
    path = root / IMAGE_LIST
    every = read_image_list(path)
    where = {k: i for i, k in enumerate(every)}
    if len(where) != len(every):
        raise InputError(path, "images", "expected each image once, but some folder/file names repeat",
                         "use Imagelist.txt as published")
    index = np.fromiter((where.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    if (index < 0).any():
        first = keys[int(np.argmax(index < 0))]
        raise InputError(path, "images", f"expected every image of the split list in Imagelist.txt, but "
                         f"{int((index < 0).sum()):,} are not there (first: {first})",
                         "use the image lists of one NUS-WIDE release")
    return _Rows(index, len(every), path)


def _tag_labels(root: Path, keys: list[str]) -> tuple[np.ndarray, list[Path]]:
    rows = _rows_in_image_list(root, keys)
    tags_path = root / ALL_TAGS
    tags = read_binary_rows(tags_path, NUM_TAGS)
    if tags.shape[0] != rows.total:
        raise InputError(tags_path, "lines", f"expected {rows.total:,} rows (one per line of {IMAGE_LIST}), but got "
                         f"{tags.shape[0]:,}", "use the files of one NUS-WIDE release")
    return tags[rows.index], [rows.path, tags_path]


def _load_official(root: Path, split: str, kind: NusWideLabels) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray,
                                                                          dict[str, np.ndarray], list[Path]]:
    list_path = root / SPLIT_LISTS[split]
    keys = read_image_list(list_path)
    tags, concepts = nuswide_class_lists(root)
    if len(tags) != NUM_TAGS:
        raise InputError(root / TAG_LIST, "names", f"expected {NUM_TAGS} tags, but got {len(tags)}",
                         "use TagList1k.txt as published")
    sources = [list_path]
    groups: dict[str, np.ndarray] = {}
    if kind is NusWideLabels.CONCEPTS:
        matrix, files = _concept_labels(root, split, concepts, keys)
        names = list(concepts)
    elif kind is NusWideLabels.TAGS:
        matrix, files = _tag_labels(root, keys)
        names = list(tags)
    else:
        concept_set = set(concepts)
        seen_cols = np.array([i for i, t in enumerate(tags) if t not in concept_set], dtype=np.int64)
        tag_matrix, tag_files = _tag_labels(root, keys)
        concept_matrix, concept_files = _concept_labels(root, split, concepts, keys)
        matrix = np.concatenate([tag_matrix[:, seen_cols], concept_matrix], axis=1)
        files = tag_files + concept_files
        names = [tags[i] for i in seen_cols] + list(concepts)
        groups = {"seen": np.arange(seen_cols.size, dtype=np.int64),
                  "unseen": np.arange(seen_cols.size, len(names), dtype=np.int64)}
    paths = np.array([str(root / IMAGE_FOLDER / k) for k in keys], dtype=object)
    ids = np.array(keys, dtype=object)
    return paths, ids, names, matrix, groups, sources + files


# -- ML-Decoder's data.csv ---------------------------------------------------------------------------

def parse_label_string(text: str) -> list[str]:
    """``"[airport, animal]"`` -> ``["airport", "animal"]``; brackets, quotes and spaces stripped; ``"[]"`` -> ``[]``."""
    inner = text.strip().strip("[]")
    out = [part.strip().strip("'\"").strip() for part in inner.split(",")]
    return [p for p in out if p]


def read_data_csv(path: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """ML-Decoder's ``data.csv``: ``(image paths, label lists, split values)``, one entry per row after the header.

    Columns are taken by position (image path, label string, split), as ML-Decoder reads them.

    Raises:
        InputError: missing file, or a row with fewer than three columns.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "expected ML-Decoder's data.csv, but it is missing",
                         "point --data-root at the folder holding data.csv, or at the official NUS-WIDE layout")
    images, labels, splits = [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)  # header
        for line, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) < 3:
                raise InputError(path, f"row {line}", f"expected 3 columns (image, labels, split), but got {len(row)}",
                                 "use ML-Decoder's data.csv with its split column")
            images.append(row[0].strip().replace("\\", "/"))
            labels.append(parse_label_string(row[1]))
            splits.append(row[2].strip())
    return images, labels, splits


def _load_data_csv(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, dict[str, int | str],
                                                   list[Path]]:
    path = root / DATA_CSV
    images, labels, splits = read_data_csv(path)
    names = sorted({name for row in labels for name in row})
    wanted = DATA_CSV_SPLITS[split]
    values = set(splits)
    if wanted not in values:
        raise InputError(path, "split column", f"expected rows with split {wanted!r} (for --split {split}), but the "
                         f"column holds {', '.join(sorted(values)) or 'nothing'}",
                         "use ML-Decoder's data.csv, whose split column says train or val")
    index = {n: i for i, n in enumerate(names)}
    rows = [i for i, s in enumerate(splits) if s == wanted]
    matrix = np.zeros((len(rows), len(names)), dtype=np.uint8)
    for r, i in enumerate(rows):
        matrix[r, [index[n] for n in labels[i]]] = 1
    empty = int((matrix.sum(1) == 0).sum())
    notes: dict[str, int | str] = {"images_without_labels": empty} if empty else {}
    paths = np.array([str(root / images[i]) for i in rows], dtype=object)
    ids = np.array([images[i] for i in rows], dtype=object)
    return paths, ids, names, matrix, notes, [path]


# -- registry ----------------------------------------------------------------------------------------

def nuswide_splits(root: Path) -> list[SplitSource]:
    """``train`` and ``test`` of ``root``: the official split lists, else ML-Decoder's ``data.csv``."""
    root = Path(root)
    out = []
    csv_path = root / DATA_CSV
    for split, rel in SPLIT_LISTS.items():
        found = root / rel if (root / rel).is_file() else (csv_path if csv_path.is_file() else None)
        out.append(SplitSource(split, found, (rel, DATA_CSV)))
    return out


def is_official_layout(root: str | Path) -> bool:
    """Whether ``root`` holds the official release (``ImageList/``), where ``nuswide_labels`` applies; else
    ML-Decoder's ``data.csv`` layout is read."""
    return (Path(root) / "ImageList").is_dir()


def _canonical_split(split: str) -> str:
    name = SPLIT_ALIASES.get(split)
    if name is None:
        raise InputError(None, "--split", f"expected one of {', '.join(SPLIT_ALIASES)} for NUS-WIDE, but got "
                         f"{split!r}", "pass --split train or --split test (val is NUS-WIDE's test set)")
    return name


@register_dataset("nuswide", splits=nuswide_splits)
def load_nuswide(root: Path, split: str, *, nuswide_labels: str | NusWideLabels | None = None,
                 strict: bool = False) -> DatasetSplit:
    """Load a NUS-WIDE split (official layout, else ML-Decoder's ``data.csv``; see the module docstring).

    Args:
        root: dataset root.
        split: ``train`` or ``test`` (``val`` = ``test``).
        nuswide_labels: ``concepts`` (official layout default), ``tags`` or ``zsl``; must be unset for
            the ``data.csv`` layout.
        strict: a missing image file is an error instead of being counted, logged and dropped.

    Returns:
        A :class:`DatasetSplit` with complete int8 labels; ``image_paths`` are absolute; image ids are
        the ``folder/file`` keys (official) or the ``data.csv`` paths.

    Raises:
        InputError: unknown split or label set, missing or malformed files, a label set asked of the
            ``data.csv`` layout, or (``strict``) missing images.
    """
    root = Path(root)
    split = _canonical_split(split)
    kind = parse_nuswide_labels(nuswide_labels)
    notes: dict[str, int | str] = {}
    groups: dict[str, np.ndarray] = {}
    if is_official_layout(root):
        kind = kind or NusWideLabels.CONCEPTS
        paths, ids, names, matrix, groups, sources = _load_official(root, split, kind)
        notes.update(nuswide_layout="official", nuswide_labels=kind.value)
        source = SPLIT_LISTS[split]
    elif (root / DATA_CSV).is_file():
        if kind is not None:
            raise InputError(root / DATA_CSV, "--nuswide-labels", f"expected no label set for ML-Decoder's data.csv "
                             f"(its classes are its own), but got {kind.value!r}",
                             "drop --nuswide-labels, or use the official NUS-WIDE layout (ImageList/, Groundtruth/)")
        paths, ids, names, matrix, extra, sources = _load_data_csv(root, split)
        notes.update(nuswide_layout="data.csv", nuswide_labels="data.csv", **extra)
        source = DATA_CSV
    else:
        raise InputError(root, "layout", f"expected NUS-WIDE's ImageList/ folder or ML-Decoder's {DATA_CSV}, but "
                         "found neither", "point --data-root at the NUS-WIDE folder")
    labels = PartialLabels.from_dense(matrix.astype(np.int8), ids, names, complete=True, validate=False)
    paths, labels, missing = drop_missing_images(paths, labels, strict=strict, source=source, field="image",
                                                 where=root / IMAGE_FOLDER if source != DATA_CSV else root,
                                                 fix="download the images or run without --strict")
    return DatasetSplit(dataset="nuswide", split=split, image_paths=paths, labels=labels,
                        fingerprint=file_fingerprint(*sources), class_groups=groups, missing_images=missing,
                        notes=notes)

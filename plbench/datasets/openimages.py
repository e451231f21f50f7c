"""OpenImages V6 human-verified image-level labels, read at full scale (about 9M images).

Expected layout (files as published; each may also sit in ``ROOT/annotations/``)::

    ROOT/
      oidv6-class-descriptions.csv                     LabelName,DisplayName (19,994 MIDs)
      oidv6-classes-trainable.txt                      optional: one MID per line, fixes the class set
                                                       (``classes-trainable.txt`` accepted too)
      oidv6-train-annotations-human-imagelabels.csv    ImageID,Source,LabelName,Confidence
      validation-annotations-human-imagelabels.csv
      test-annotations-human-imagelabels.csv
      train/<ImageID>.jpg   validation/<ImageID>.jpg   test/<ImageID>.jpg

The boxable subset (labels of the 600 boxable classes, same columns) is read the same way::

      train-annotations-human-imagelabels-boxable.csv
      validation-annotations-human-imagelabels-boxable.csv
      test-annotations-human-imagelabels-boxable.csv

When a root holds files of both kinds, the ``openimages_labels`` option (``full`` or ``boxable``,
CLI ``--openimages-labels``) must say which to read; the kind read is in
``DatasetSplit.notes["openimages_labels"]`` (``full``, ``boxable`` or ``data.csv``).

or the CSL authors' single-file layout, used when the per-split files are absent::

    ROOT/data.csv    one row per (image, label): ImageID,split,LabelName,Confidence
                     or one row per image: ImageID,split,positive_labels[,negative_labels]
                     (MID lists separated by spaces, commas or semicolons; brackets/quotes ignored)

Classes: the MIDs of the ``class_list`` option (a file, one MID per line, or a CSV with a
``LabelName`` column), else of the trainable-classes file, else every MID of the class
descriptions, in that file's order. Class names are the display names; the few display names
shared by several MIDs get the MID appended (``Ball (/m/018xm)``) so names stay unique.

Labels: Confidence 1 is a positive, 0 a negative, every other (image, class) unannotated.
Rows whose MID is outside the class set are skipped and counted (the train file holds about
20k MIDs, the trainable set 9,605: skipping is the normal case), and the count is logged.
Duplicate rows of one (image, class) are merged; if they disagree, the positive wins (counted and
logged). Every image listed in the split's file is kept, even if none of its rows is in the class set.
Image files: ``ROOT/<split folder>/<ImageID>.jpg``; missing ones are counted, logged and dropped
(``strict=True`` makes them an error; ``check_images=False`` skips the check).

The labels file is read with pyarrow in typed columns (dictionary-encoded ``ImageID`` and
``LabelName``, float32 ``Confidence``); MIDs map to class indices through the dictionary, and the
sparse store is built directly from integer arrays: never a dense (N, C) matrix.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Sequence

import numpy as np

from plbench.datasets.base import DatasetSplit, SplitSource, drop_missing_images, file_fingerprint, register_dataset
from plbench.errors import InputError
from plbench.labels import NEG, POS, PartialLabels

log = logging.getLogger(__name__)

SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
DESCRIPTIONS = "oidv6-class-descriptions.csv"
TRAINABLE = ("oidv6-classes-trainable.txt", "classes-trainable.txt")


class OpenImagesLabels(str, Enum):
    """Which published image-level labels file to read."""

    FULL = "full"  # every human-verified label (oidv6-train-..., validation-..., test-...-imagelabels.csv)
    BOXABLE = "boxable"  # the subset for the 600 boxable classes (...-imagelabels-boxable.csv)


# kind -> canonical split -> accepted file names (tried in this order, in ROOT then ROOT/annotations)
LABEL_FILES: dict[OpenImagesLabels, dict[str, tuple[str, ...]]] = {
    OpenImagesLabels.FULL: {
        "train": ("oidv6-train-annotations-human-imagelabels.csv", "train-annotations-human-imagelabels.csv"),
        "validation": ("validation-annotations-human-imagelabels.csv",
                       "oidv6-validation-annotations-human-imagelabels.csv"),
        "test": ("test-annotations-human-imagelabels.csv", "oidv6-test-annotations-human-imagelabels.csv"),
    },
    OpenImagesLabels.BOXABLE: {
        "train": ("train-annotations-human-imagelabels-boxable.csv",),
        "validation": ("validation-annotations-human-imagelabels-boxable.csv",),
        "test": ("test-annotations-human-imagelabels-boxable.csv",),
    },
}
CANONICAL_SPLITS = ("train", "validation", "test")
DATA_CSV = "data.csv"
LABEL_COLUMNS = ("ImageID", "LabelName", "Confidence")


@dataclass(frozen=True)
class LabelStats:
    """What :func:`build_sparse_labels` merged or skipped (row counts of the labels file)."""

    rows_read: int
    skipped_rows: int  # MID outside the class set
    skipped_mids: tuple[str, ...]  # those MIDs (sorted)
    duplicate_rows: int  # rows repeating an (image, class) already seen
    conflicting_pairs: int  # (image, class) pairs with both Confidence 1 and 0 (kept positive)


def _find(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        for folder in (root, root / "annotations"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_class_descriptions(path: Path) -> dict[str, str]:
    """MID -> display name from ``oidv6-class-descriptions.csv`` (``LabelName,DisplayName``), file order."""
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(path, read_options=pcsv.ReadOptions(use_threads=False))
    except Exception as e:  # pyarrow raises ArrowInvalid with the line number
        raise InputError(path, "csv", f"not a readable CSV ({e})", "re-download the class descriptions") from None
    if table.column_names[:2] != ["LabelName", "DisplayName"]:
        raise InputError(path, "header", f"expected columns LabelName,DisplayName, but got "
                         f"{','.join(table.column_names)}", f"use the published {DESCRIPTIONS}")
    mids = table.column("LabelName").to_pylist()
    names = [str(n) for n in table.column("DisplayName").to_pylist()]
    return dict(zip(mids, names))


def read_class_list(path: Path) -> list[str]:
    """MIDs, in file order, from a one-MID-per-line file or a CSV with a ``LabelName`` column."""
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if lines and "," in lines[0]:
        header = [h.strip() for h in lines[0].split(",")]
        if "LabelName" not in header:
            raise InputError(path, "header", f"expected a LabelName column, but got {lines[0]!r}",
                             "give one MID per line, or a CSV whose header has LabelName")
        col = header.index("LabelName")
        lines = [ln.split(",")[col].strip() for ln in lines[1:]]
    bad = [m for m in lines if not m.startswith("/")]
    if bad:
        raise InputError(path, "LabelName", f"expected MIDs such as /m/01g317, but got {bad[0]!r}",
                         "give one MID per line")
    if len(set(lines)) != len(lines):
        raise InputError(path, "LabelName", "expected each MID once, but some repeat", "remove the duplicates")
    return lines


def class_names_for(mids: Sequence[str], descriptions: dict[str, str]) -> list[str]:
    """Display names for ``mids``; shared or missing display names fall back to / include the MID."""
    names = [descriptions.get(m, m) for m in mids]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return [f"{n} ({m})" if counts[n] > 1 else n for n, m in zip(names, mids)]


def build_sparse_labels(image_col, label_col, conf_col, class_mids: Sequence[str], path: Path):
    """Turn typed label columns into sorted, unique sparse annotations.

    Args:
        image_col, label_col: pyarrow ``DictionaryArray`` (string values) of equal length M.
        conf_col: pyarrow float array (M,), values in {0, 1}.
        class_mids: (C,) MIDs fixing the class-index order.
        path: the source file, for error messages.

    Returns:
        ``(image_ids, rows, cols, values, stats)``: image ids object (N,) sorted, rows int64 (K,),
        cols int32 (K,), values int8 (K,) sorted by (row, col) without duplicates, and :class:`LabelStats`.

    Raises:
        InputError: a Confidence outside {0, 1} or a null cell.
    """
    import pyarrow.compute as pc

    m = len(image_col)
    for name, col in (("ImageID", image_col), ("LabelName", label_col), ("Confidence", conf_col)):
        if col.null_count:
            raise InputError(path, name, f"expected a value in every row, but {col.null_count} are empty",
                             "re-download the file")
    conf = conf_col.to_numpy(zero_copy_only=False)
    positive = conf == 1
    bad = ~positive & (conf != 0)
    if bad.any():
        raise InputError(path, "Confidence", f"expected 1 (positive) or 0 (negative), but got "
                         f"{float(conf[bad][0]):g} in {int(bad.sum())} rows",
                         "use the human-verified image-level labels (not machine-generated ones)")
    del conf, bad

    num_classes = len(class_mids)
    class_index = {mid: i for i, mid in enumerate(class_mids)}
    label_dict = label_col.dictionary.to_pylist()
    lut = np.array([class_index.get(mid, -1) for mid in label_dict], dtype=np.int64)
    cols = lut[label_col.indices.to_numpy(zero_copy_only=False)]
    known = cols >= 0
    skipped = int(m - known.sum())
    skipped_mids: tuple[str, ...] = ()
    if skipped:
        used = np.unique(label_col.indices.to_numpy(zero_copy_only=False)[~known])
        skipped_mids = tuple(sorted(label_dict[i] for i in used))

    # Images in sorted-id order: rank of each dictionary entry in the sorted dictionary.
    id_dict = image_col.dictionary
    order = pc.sort_indices(id_dict).to_numpy()
    rank = np.empty(len(id_dict), dtype=np.int64)
    rank[order] = np.arange(len(id_dict), dtype=np.int64)
    rows = rank[image_col.indices.to_numpy(zero_copy_only=False)]
    del rank
    image_ids = id_dict.take(order).to_numpy(zero_copy_only=False)
    # The dictionary may list ids whose rows were all dropped upstream; keep only ids with rows.
    present = np.zeros(len(image_ids), dtype=bool)
    present[rows] = True
    if not present.all():
        remap = np.cumsum(present) - 1
        rows, image_ids = remap[rows], image_ids[present]

    # key * 2 + value sorts each (image, class) group with its negatives first, positive last.
    combined = (rows[known] * num_classes + cols[known]) * 2 + positive[known]
    del rows, cols, known, positive
    combined.sort()
    key = combined >> 1
    last = np.empty(key.size, dtype=bool)
    if key.size:
        last[:-1] = key[1:] != key[:-1]
        last[-1] = True
    first = np.empty_like(last)
    if key.size:
        first[0] = True
        first[1:] = last[:-1]
    conflicts = int(((combined[first] & 1) != (combined[last] & 1)).sum())
    kept = combined[last]
    del combined, key, first, last
    values = np.where(kept & 1, POS, NEG).astype(np.int8)
    rows_out, cols_out = np.divmod(kept >> 1, num_classes)
    stats = LabelStats(rows_read=m, skipped_rows=skipped, skipped_mids=skipped_mids,
                       duplicate_rows=int(m - skipped - kept.size), conflicting_pairs=conflicts)
    return image_ids, rows_out, cols_out.astype(np.int32), values, stats


def read_label_table(path: Path, splits: Sequence[str] | None = None):
    """Read ``ImageID,LabelName,Confidence`` (and ``split``) typed columns from a labels CSV.

    Returns:
        pyarrow Table, one chunk per column, ImageID/LabelName dictionary-encoded, Confidence float32.
        With ``splits`` the table keeps the rows whose ``split`` column is one of them.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    with open(path, encoding="utf-8", errors="replace") as f:
        header = [h.strip() for h in f.readline().split(",")]
    need = list(LABEL_COLUMNS) + (["split"] if splits is not None else [])
    missing = [c for c in need if c not in header]
    if missing:
        raise InputError(path, "header", f"expected columns {','.join(need)} (ImageID,Source,LabelName,"
                         f"Confidence as published), but got {','.join(header)}",
                         "use the human-verified image-level labels file")
    dict_str = pa.dictionary(pa.int32(), pa.string())
    types = {"ImageID": dict_str, "LabelName": dict_str, "Confidence": pa.float32()}
    if splits is not None:
        types["split"] = dict_str
    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=64 << 20),
            convert_options=pcsv.ConvertOptions(column_types=types, include_columns=need),
        )
    except pa.ArrowInvalid as e:
        raise InputError(path, "csv", f"expected {','.join(need)} rows, but parsing failed ({e})",
                         "re-download the file") from None
    if splits is not None:
        keep = pc.is_in(table.column("split").cast(pa.string()), value_set=pa.array(list(splits), pa.string()))
        table = table.filter(keep).select(list(LABEL_COLUMNS))
    return table.unify_dictionaries().combine_chunks()


def _single(col):
    import pyarrow as pa

    chunks = col.chunks
    if len(chunks) == 1:
        return chunks[0]
    if not chunks:
        return pa.array([], type=col.type)
    return pa.concat_arrays(chunks)


def list_image_files(folder: Path, suffix: str = ".jpg") -> list[str]:
    """Stems of the ``*suffix`` files in ``folder`` (one ``scandir`` pass, no per-file stat)."""
    with os.scandir(folder) as it:
        return [e.name[: -len(suffix)] for e in it if e.name.endswith(suffix)]


def present_mask(image_ids: np.ndarray, available: Sequence[str]) -> np.ndarray:
    """bool (N,): which ``image_ids`` are in ``available`` (hash join in pyarrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.is_in(pa.array(image_ids, type=pa.string()),
                    value_set=pa.array(available, type=pa.string())).to_numpy(zero_copy_only=False)


_MID = re.compile(r"/[a-z]/[0-9a-z_]+")


def _wide_to_long(path: Path, splits: Sequence[str]):
    """CSL ``data.csv`` with one row per image and MID-list columns -> long typed table."""
    import pandas as pd
    import pyarrow as pa

    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    pos_col = next((c for c in ("positive_labels", "image_labels", "pos_labels") if c in df.columns), None)
    neg_col = next((c for c in ("negative_labels", "neg_labels", "neg_image_labels") if c in df.columns), None)
    if pos_col is None or "ImageID" not in df.columns or "split" not in df.columns:
        raise InputError(path, "header", f"expected ImageID,split,LabelName,Confidence or ImageID,split,"
                         f"positive_labels[,negative_labels], but got {','.join(df.columns)}",
                         "see the OpenImages layout in the plbench documentation")
    df = df[df["split"].isin(list(splits))]
    ids, mids, conf = [], [], []
    for col, value in ((pos_col, 1.0), (neg_col, 0.0)):
        if col is None:
            continue
        for image_id, cell in zip(df["ImageID"], df[col]):
            found = _MID.findall(cell)
            ids.extend([image_id] * len(found))
            mids.extend(found)
            conf.extend([value] * len(found))
    # Images whose lists are empty still belong to the split.
    listed = set(ids)
    for image_id in df["ImageID"]:
        if image_id not in listed:
            ids.append(image_id)
            mids.append("")
            conf.append(0.0)
    return pa.table({
        "ImageID": pa.array(ids, pa.string()).dictionary_encode(),
        "LabelName": pa.array(mids, pa.string()).dictionary_encode(),
        "Confidence": pa.array(conf, pa.float32()),
    })


def parse_labels_kind(value: str | OpenImagesLabels | None) -> OpenImagesLabels | None:
    """``openimages_labels`` option -> :class:`OpenImagesLabels` (``None`` stays ``None``: choose by the files).

    Raises:
        InputError: a value other than ``full`` or ``boxable``.
    """
    if value is None or isinstance(value, OpenImagesLabels):
        return value
    try:
        return OpenImagesLabels(value)
    except ValueError:
        raise InputError(None, "--openimages-labels", f"expected one of "
                         f"{', '.join(k.value for k in OpenImagesLabels)}, but got {value!r}",
                         "pass --openimages-labels full or --openimages-labels boxable") from None


def accepted_label_files(split: str) -> tuple[str, ...]:
    """Every file name accepted for a canonical split's labels, in the order they are tried."""
    return tuple(n for kind in OpenImagesLabels for n in LABEL_FILES[kind][split]) + (DATA_CSV,)


def labels_kind(root: Path, openimages_labels: str | OpenImagesLabels | None = None) -> OpenImagesLabels | None:
    """The kind of per-split labels files to read under ``root``.

    Returns:
        The kind chosen, else the only kind with files under ``root``, else ``None`` (no per-split
        file: the CSL ``data.csv`` is the fallback).

    Raises:
        InputError: an unknown choice, or files of both kinds and no choice (train on one kind and
            evaluate on the other would be a silent mix).
    """
    chosen = parse_labels_kind(openimages_labels)
    if chosen is not None:
        return chosen
    present = {kind: [p for names in LABEL_FILES[kind].values() if (p := _find(root, names)) is not None]
               for kind in OpenImagesLabels}
    kinds = [k for k, paths in present.items() if paths]
    if len(kinds) > 1:
        listed = "; ".join(f"{k.value}: {', '.join(str(p.relative_to(root)) for p in present[k])}" for k in kinds)
        raise InputError(root, "openimages_labels", f"expected one kind of image-level labels files, but found "
                         f"both ({listed})", "choose with --openimages-labels full or --openimages-labels boxable "
                         "(config: dataset_options.openimages_labels)")
    return kinds[0] if kinds else None


def _labels_source(root: Path, canonical: str, kind: OpenImagesLabels | None):
    """(labels file, reader, kind read) for a split; kind is ``None`` for ``data.csv``."""
    if kind is not None:
        path = _find(root, LABEL_FILES[kind][canonical])
        if path is not None:
            return path, lambda p, _split: read_label_table(p), kind
    else:
        data_csv = _find(root, (DATA_CSV,))
        if data_csv is not None:
            return data_csv, _read_data_csv, None
    if kind is None:
        tried = ", ".join(accepted_label_files(canonical))
    else:
        tried = ", ".join(LABEL_FILES[kind][canonical])
        others = [n for n in accepted_label_files(canonical) if n not in LABEL_FILES[kind][canonical]]
        tried += f" (the {kind.value} labels; other accepted names: {', '.join(others)})"
    raise InputError(root, "annotations", f"no OpenImages labels for split {canonical!r} (looked in the folder "
                     f"and its annotations/ subfolder for {tried})",
                     "point --data-root at the folder holding the OpenImages CSV files, named as published"
                     + ("" if kind is None else ", or choose the other kind with --openimages-labels"))


def _data_csv_splits(path: Path) -> set[str]:
    """Canonical split names present in the ``split`` column of a CSL ``data.csv`` (all, without it)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    with open(path, encoding="utf-8", errors="replace") as f:
        header = [h.strip() for h in f.readline().split(",")]
    if "split" not in header:
        return set(CANONICAL_SPLITS)
    try:
        column = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            include_columns=["split"], column_types={"split": pa.string()})).column("split")
    except pa.ArrowInvalid as e:
        raise InputError(path, "split", f"expected a readable split column, but parsing failed ({e})",
                         "re-download or regenerate the file") from None
    return {SPLITS[v] for v in pc.unique(column).to_pylist() if v in SPLITS}


def openimages_splits(root: Path, openimages_labels: str | OpenImagesLabels | None = None) -> list[SplitSource]:
    """The ``train``, ``validation`` and ``test`` labels ``root`` holds; see :func:`plbench.datasets.find_splits`.

    Per-split CSV files of the kind :func:`labels_kind` picks win; without any, a CSL ``data.csv``
    provides the splits named in its ``split`` column.

    Raises:
        InputError: as :func:`labels_kind`.
    """
    kind = labels_kind(root, openimages_labels)
    if kind is not None:
        found = {split: _find(root, LABEL_FILES[kind][split]) for split in CANONICAL_SPLITS}
    else:
        data_csv = _find(root, (DATA_CSV,))
        in_data_csv = _data_csv_splits(data_csv) if data_csv is not None else set()
        found = {split: data_csv if split in in_data_csv else None for split in CANONICAL_SPLITS}
    out = []
    for split in CANONICAL_SPLITS:
        names = LABEL_FILES[kind][split] if kind is not None else accepted_label_files(split)
        accepted = tuple(f"{folder}{n}" for n in names for folder in ("", "annotations/"))
        out.append(SplitSource(split, found[split], accepted))
    return out


def _read_data_csv(path: Path, split: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    with open(path, encoding="utf-8", errors="replace") as f:
        header = [h.strip() for h in f.readline().split(",")]
    aliases = sorted({split} | {k for k, v in SPLITS.items() if v == split})
    if "LabelName" in header:
        return read_label_table(path, splits=aliases if "split" in header else None)
    table = _wide_to_long(path, aliases)
    # Rows with an empty LabelName only carry an image id (an image without annotation).
    empty = int(pc.sum(pc.equal(table.column("LabelName").cast(pa.string()), "")).as_py() or 0)
    return table, empty


@register_dataset("openimages", splits=openimages_splits)
def load_openimages(root: Path, split: str, *, class_list: str | Path | None = None, strict: bool = False,
                    check_images: bool = True,
                    openimages_labels: str | OpenImagesLabels | None = None) -> DatasetSplit:
    """Load an OpenImages V6 split as sparse natural partial labels (see module docstring).

    Args:
        root: dataset root.
        split: ``train``, ``validation`` (``val`` accepted) or ``test``.
        class_list: file of MIDs fixing the class set and order (default: the trainable-classes file
            in ``root`` if present, else every described MID).
        strict: missing image files are an error instead of being counted and dropped.
        check_images: look for the image files at all (``False`` keeps every listed image).
        openimages_labels: ``full`` or ``boxable``: which per-split labels files to read. Required
            when ``root`` holds both kinds; otherwise the kind present is read (``data.csv`` when none).

    Raises:
        InputError: unknown split or ``openimages_labels``, both labels kinds and no choice, missing
            (the message lists every accepted file name) or malformed files, or (``strict``) missing images.
    """
    root = Path(root)
    if split not in SPLITS:
        raise InputError(None, "split", f"expected one of {', '.join(SPLITS)}, but got {split!r}",
                         "pass --split train, validation or test")
    canonical = SPLITS[split]
    desc_path = _find(root, (DESCRIPTIONS,))
    if desc_path is None:
        raise InputError(root, DESCRIPTIONS, "expected the class descriptions file, but it is missing",
                         f"download {DESCRIPTIONS} into --data-root")
    descriptions = read_class_descriptions(desc_path)
    list_path = Path(class_list) if class_list is not None else _find(root, TRAINABLE)
    if list_path is not None:
        if not list_path.is_file():
            raise InputError(list_path, "class_list", "expected a file of MIDs, but it does not exist",
                             "give an existing file")
        mids = read_class_list(list_path)
    else:
        log.warning("no trainable-classes file in %s: using all %d described classes", root, len(descriptions))
        mids = list(descriptions)
    undescribed = [m for m in mids if m not in descriptions]
    if undescribed:
        log.warning("%d classes have no display name in %s (first: %s); their MID is used as name",
                    len(undescribed), desc_path.name, undescribed[0])

    kind = labels_kind(root, openimages_labels)
    labels_path, reader, kind = _labels_source(root, canonical, kind)
    log.info("%s: OpenImages %s labels", labels_path.name, kind.value if kind is not None else "CSL data.csv")
    result = reader(labels_path, canonical)
    table, empty_rows = result if isinstance(result, tuple) else (result, 0)
    image_col, label_col, conf_col = (_single(table.column(c)) for c in LABEL_COLUMNS)
    del table
    image_ids, rows, cols, vals, stats = build_sparse_labels(image_col, label_col, conf_col, mids, labels_path)
    del image_col, label_col, conf_col
    skipped_rows = stats.skipped_rows - empty_rows
    if skipped_rows:
        shown = [m for m in stats.skipped_mids if m][:5]
        log.info("%s: skipped %d of %d rows whose MID is outside the %d classes (%d MIDs, e.g. %s)",
                 labels_path.name, skipped_rows, stats.rows_read, len(mids),
                 len([m for m in stats.skipped_mids if m]), ", ".join(shown))
    if stats.duplicate_rows:
        log.warning("%s: merged %d duplicate rows; %d (image, class) pairs had both Confidence 1 and 0 "
                    "and were kept positive", labels_path.name, stats.duplicate_rows, stats.conflicting_pairs)

    import pyarrow as pa
    import pyarrow.compute as pc

    folder = root / canonical
    ids_arr = pa.array(image_ids, pa.string())
    paths = pc.binary_join_element_wise(str(folder) + os.sep, ids_arr, ".jpg", "").to_numpy(zero_copy_only=False)
    labels = PartialLabels.from_sparse(rows, cols, vals, image_ids, class_names_for(mids, descriptions),
                                       complete=False, validate=False)
    del rows, cols, vals
    missing = 0
    if check_images:
        if not folder.is_dir():
            raise InputError(folder, "images", f"expected the {canonical} image folder, but it does not exist",
                             "download the images into ROOT/<split>/<ImageID>.jpg, or pass check_images=False")
        paths, labels, missing = drop_missing_images(
            paths, labels, strict=strict, source=labels_path.name, field="ImageID", where=folder,
            exists=present_mask(image_ids, list_image_files(folder)),
        )
    sources = [p for p in (desc_path, list_path, labels_path) if p is not None]
    notes = {"rows_outside_class_list": int(skipped_rows), "duplicate_rows_merged": int(stats.duplicate_rows),
             "conflicting_pairs_kept_positive": int(stats.conflicting_pairs)}
    read = {"openimages_labels": kind.value if kind is not None else DATA_CSV, "annotation_file": labels_path.name}
    return DatasetSplit(dataset="openimages", split=split, image_paths=paths, labels=labels,
                        fingerprint=file_fingerprint(*sources), missing_images=missing,
                        notes={**read, **{k: v for k, v in notes.items() if v}})

"""LVIS v1 and v0.5 (the lvis-api JSON format), with their images in the COCO 2017 folders.

Expected layout::

    ROOT/
      lvis_v1_train.json   (or annotations/lvis_v1_train.json)
      lvis_v1_val.json
      train2017/000000391895.jpg ...   (COCO 2017 images; LVIS val uses images of both folders)
      val2017/...

LVIS v0.5 files (``lvis_v0.5_train.json``, ``lvis_v0.5_val.json``) are read the same way. A root
holding files of both versions is refused (train and val of different versions have different class
sets). The version of a file is checked by its name and its class set (1,203 categories with ids up to
1,203 in v1; 1,230 in v0.5; a smaller class set, e.g. a test excerpt, says nothing), which must agree, and by
its ``info.version`` (``1.0``/``0.5``) only when the ``info`` block is LVIS's own: the published files carry
COCO 2017's block (``"description": "COCO 2017 Dataset"``, ``"version": "1.0"``), which dates the images,
not the annotations. The version read is in ``DatasetSplit.notes["lvis_version"]`` (``v1`` or ``v0.5``).

Each image's file is found from its ``coco_url`` (``.../train2017/000000391895.jpg`` ->
``ROOT/train2017/000000391895.jpg``), falling back to ``file_name`` in the split's own folder.

Classes are the categories sorted by id. Labels per image (natural partial labels):

* positive: every category with at least one annotation on the image, and every category in the
  image's ``not_exhaustive_category_ids``. Not-exhaustive categories are present in the image but
  not every instance was boxed; at image level they are plain positives (the flag only matters for
  detection, where an unboxed instance must not count as a false positive);
* negative: ``neg_category_ids`` (verified absent);
* unannotated: everything else.

A category both negative and positive on the same image is a contradiction in the file and raises
:class:`~plbench.errors.InputError`. ``class_groups`` holds the LVIS frequency groups ``rare``,
``common``, ``frequent`` (int64 class indices, from each category's ``frequency`` r/c/f).
"""

from __future__ import annotations

import logging
import re
from enum import Enum
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from plbench.artifacts.files import read_json
from plbench.datasets.base import DatasetSplit, SplitSource, drop_missing_images, file_fingerprint, register_dataset
from plbench.errors import InputError
from plbench.labels import NEG, POS, PartialLabels

log = logging.getLogger(__name__)

FREQUENCY_GROUPS = {"r": "rare", "c": "common", "f": "frequent"}
SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val"}


class LvisVersion(str, Enum):
    """LVIS annotation versions; the value is the tag in the published file names (``lvis_v1_val.json``)."""

    V1 = "v1"
    V0_5 = "v0.5"


NUM_CLASSES = {LvisVersion.V1: 1203, LvisVersion.V0_5: 1230}  # full category lists (ids 1..N)


def _accepted(split: str, version: LvisVersion) -> tuple[str, ...]:
    name = f"lvis_{version.value}_{split}.json"
    return (name, f"annotations/{name}")


def lvis_splits(root: Path) -> list[SplitSource]:
    """The ``train`` and ``val`` files ``root`` holds; see :func:`plbench.datasets.find_splits`.

    Raises:
        InputError: files of more than one LVIS version under ``root``.
    """
    found: dict[str, list[tuple[LvisVersion, Path]]] = {"train": [], "val": []}
    for split in found:
        for version in LvisVersion:
            found[split] += [(version, root / a) for a in _accepted(split, version) if (root / a).is_file()]
    versions = {v for files in found.values() for v, _ in files}
    if len(versions) > 1:
        listed = ", ".join(f"{p.relative_to(root)} ({v.value})" for files in found.values() for v, p in files)
        raise InputError(root, "annotations", f"expected the files of one LVIS version, but found {listed}",
                         "keep one version's files under --data-root (move the other version to a folder of "
                         "its own): train and val of different versions have different class sets")
    return [SplitSource(split, files[0][1] if files else None,
                        tuple(a for v in LvisVersion for a in _accepted(split, v)))
            for split, files in found.items()]


def find_lvis_file(root: Path, split: str) -> Path:
    """Resolve ``lvis_{v1,v0.5}_{split}.json`` in ``root`` or ``root/annotations``.

    Raises:
        InputError: unknown split, no file for it, or files of two LVIS versions under ``root``.
    """
    name = SPLIT_ALIASES.get(split)
    if name is None:
        raise InputError(None, "--split", f"expected one of {', '.join(SPLIT_ALIASES)} for LVIS, but got {split!r}",
                         "pass --split train or --split val")
    source = next(s for s in lvis_splits(root) if s.split == name)
    if source.path is None:
        raise InputError(root, "annotations", f"no LVIS file for split {split!r} (looked for "
                         f"{', '.join(source.accepted)})",
                         "point --data-root at the folder holding lvis_v1_train.json / lvis_v1_val.json")
    return source.path


def _version_of_name(path: Path) -> LvisVersion:
    return next(v for v in LvisVersion if path.name.startswith(f"lvis_{v.value}_"))


_VERSION = re.compile(r"^\s*v?(\d+)(?:\.(\d+))?")


def _is_coco_info(info: dict) -> bool:
    """Whether an ``info`` block is COCO's (copied into the published LVIS v0.5 and v1 files), not LVIS's."""
    said = " ".join(str(info.get(k, "")) for k in ("description", "contributor", "url"))
    return "coco" in said.lower()


def lvis_version(data: dict, path: Path) -> LvisVersion:
    """The LVIS version of a parsed file, from its name, class set and LVIS ``info.version``, which must agree.

    Args:
        data: the parsed file (``categories`` required; ``info`` optional, and ignored when it is
            COCO's block, as in the published files).
        path: the file, named ``lvis_<version>_<split>.json``.

    Returns:
        The version all available signals give (the file name alone for an excerpt without ``info``
        and with a partial class set).

    Raises:
        InputError: the signals disagree (e.g. a v0.5 file renamed ``lvis_v1_val.json``).
    """
    named = _version_of_name(path)
    signals: dict[str, LvisVersion] = {f"file name {path.name}": named}
    info = data.get("info")
    raw = info.get("version") if isinstance(info, dict) and not _is_coco_info(info) else None
    m = _VERSION.match(str(raw)) if raw is not None else None
    if m is not None:
        major, minor = int(m.group(1)), int(m.group(2) or 0)
        tagged = {(1, 0): LvisVersion.V1, (0, 5): LvisVersion.V0_5}.get((major, minor))
        if tagged is not None:
            signals[f"info.version {raw!r}"] = tagged
    cats = data["categories"]
    by_count = {n: v for v, n in NUM_CLASSES.items()}
    if len(cats) in by_count:
        signals[f"{len(cats):,} categories"] = by_count[len(cats)]
    max_id = max((c.get("id", 0) for c in cats if isinstance(c.get("id"), int)), default=0)
    if max_id > NUM_CLASSES[LvisVersion.V1]:
        signals[f"category id {max_id:,} (v1 ids end at {NUM_CLASSES[LvisVersion.V1]:,})"] = LvisVersion.V0_5
    if len(set(signals.values())) > 1:
        said = "; ".join(f"{k}: {v.value}" for k, v in signals.items())
        content = next(v for v in signals.values() if v != named)
        split = path.name[len(f"lvis_{named.value}_"):]
        raise InputError(path, "info.version / categories", f"expected one LVIS version from the file name, "
                         f"info.version and class set, but got {said}",
                         f"if the file is LVIS {content.value}, name it lvis_{content.value}_{split}; otherwise "
                         f"download the published lvis_{named.value}_{split}")
    return named


def _image_path(root: Path, img: dict, split: str) -> Path:
    url = img.get("coco_url")
    if url:
        parts = Path(urlparse(url).path).parts
        if len(parts) >= 2:
            return root / parts[-2] / parts[-1]
    if "file_name" in img:
        return root / f"{split}2017" / img["file_name"]
    raise InputError(None, "images", f"image {img.get('id')} has neither coco_url nor file_name",
                     "use an unmodified lvis_v1_*.json file")


def lvis_labels(data: dict, path: Path) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray,
                                                  dict[str, np.ndarray]]:
    """Parse an LVIS dict to sparse labels.

    Returns:
        image ids int64 (N,), class names (C,) in category-id order, rows int64 (M,),
        cols int32 (M,), values int8 (M,) (sorted by (row, col), unique) and the frequency groups.

    Raises:
        InputError: missing keys, unknown image/category ids, a category both positive and negative,
            or a category without a valid ``frequency``.
    """
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(path, key, f"missing top-level key {key!r}", "use an lvis_v1_*.json file")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    cat_ids = np.array([c["id"] for c in cats], dtype=np.int64)
    if np.unique(cat_ids).size != cat_ids.size:
        raise InputError(path, "categories", "expected unique category ids, but some repeat",
                         "use an unmodified lvis_v1_*.json file")
    groups: dict[str, list[int]] = {g: [] for g in FREQUENCY_GROUPS.values()}
    for i, c in enumerate(cats):
        f = c.get("frequency")
        if f not in FREQUENCY_GROUPS:
            raise InputError(path, "categories.frequency", f"expected 'r', 'c' or 'f' for category {c['id']} "
                             f"({c.get('name')}), but got {f!r}", "use the LVIS v1 category list")
        groups[FREQUENCY_GROUPS[f]].append(i)
    images = data["images"]
    img_ids = np.array([img["id"] for img in images], dtype=np.int64)
    n, num_classes = len(images), len(cats)

    def to_index(sorted_ids: np.ndarray, order: np.ndarray, query: np.ndarray, what: str, field: str) -> np.ndarray:
        pos = np.searchsorted(sorted_ids, query)
        pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
        bad = (sorted_ids[pos] != query) if len(sorted_ids) else np.ones(len(query), bool)
        if bad.any():
            raise InputError(path, field, f"expected known {what} ids, but got {int(bad.sum())} unknown "
                             f"(first: {int(query[bad][0])})", "use a complete, unmodified lvis_v1_*.json file")
        return order[pos]

    img_order = np.argsort(img_ids, kind="stable")
    img_sorted = img_ids[img_order]
    if n > 1 and (np.diff(img_sorted) == 0).any():
        raise InputError(path, "images", "expected unique image ids, but some repeat", "use an unmodified file")
    cat_order = np.arange(num_classes)  # cats already sorted by id

    anns = data["annotations"]
    pos_rows = to_index(img_sorted, img_order, np.fromiter((a["image_id"] for a in anns), np.int64, len(anns)),
                        "image", "annotations.image_id")
    pos_cols = to_index(cat_ids, cat_order, np.fromiter((a["category_id"] for a in anns), np.int64, len(anns)),
                        "category", "annotations.category_id")

    def per_image(key: str) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.fromiter((len(img.get(key, ())) for img in images), np.int64, n)
        flat = np.fromiter((c for img in images for c in img.get(key, ())), np.int64, int(lengths.sum()))
        rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
        return rows, to_index(cat_ids, cat_order, flat, "category", f"images.{key}")

    ne_rows, ne_cols = per_image("not_exhaustive_category_ids")
    neg_rows, neg_cols = per_image("neg_category_ids")

    pos_key = np.unique(np.concatenate([pos_rows * num_classes + pos_cols, ne_rows * num_classes + ne_cols]))
    neg_key = np.unique(neg_rows * num_classes + neg_cols)
    clash = np.intersect1d(pos_key, neg_key, assume_unique=True)
    if clash.size:
        r, c = divmod(int(clash[0]), num_classes)
        raise InputError(path, "images.neg_category_ids", f"expected negatives disjoint from positives, but "
                         f"{clash.size} (image, category) pairs are both (first: image {int(img_ids[r])}, "
                         f"category {int(cat_ids[c])})", "use an unmodified lvis_v1_*.json file")
    key = np.concatenate([pos_key, neg_key])
    vals = np.concatenate([np.full(pos_key.size, POS, np.int8), np.full(neg_key.size, NEG, np.int8)])
    order = np.argsort(key, kind="stable")
    key, vals = key[order], vals[order]
    rows, cols = np.divmod(key, num_classes)
    group_idx = {g: np.asarray(v, dtype=np.int64) for g, v in groups.items()}
    return img_ids, [c["name"] for c in cats], rows, cols.astype(np.int32), vals, group_idx


@register_dataset("lvis", splits=lvis_splits)
def load_lvis(root: Path, split: str, *, strict: bool = False) -> DatasetSplit:
    """Load an LVIS v1 or v0.5 split as natural partial labels (see module docstring).

    Args:
        root: dataset root (see module docstring).
        split: ``train`` or ``val`` (``validation`` accepted).
        strict: a missing image file is an error instead of being counted and dropped.

    Raises:
        InputError: missing or malformed file, files of two LVIS versions, a file whose name, info and
            class set disagree on the version, contradictory labels, or (``strict``) missing images.
    """
    root = Path(root)
    path = find_lvis_file(root, split)
    data = read_json(path, "re-download the LVIS annotations")
    ids, names, rows, cols, vals, groups = lvis_labels(data, path)
    version = lvis_version(data, path)
    log.info("%s: LVIS %s, %d categories, %d images", path.name, version.value, len(names), len(ids))
    canonical = SPLIT_ALIASES.get(split, split)
    paths = np.array([str(_image_path(root, img, canonical)) for img in data["images"]], dtype=object)
    del data
    labels = PartialLabels.from_sparse(rows, cols, vals, ids, names, complete=False, validate=False)
    paths, labels, missing = drop_missing_images(
        paths, labels, strict=strict, source=path.name, field="coco_url", where=root,
        fix="download the COCO 2017 train and val images, or run without --strict",
    )
    return DatasetSplit(
        dataset="lvis", split=split, image_paths=paths, labels=labels,
        fingerprint=file_fingerprint(path), class_groups=groups, missing_images=missing,
        notes={"lvis_version": version.value, "annotation_file": path.name},
    )

"""COCO 2014/2017 instances files (and the built-in synthetic dataset, written in the same format).

Expected layout (the official one)::

    ROOT/
      annotations/instances_train2017.json   (or instances_train2014.json)
      annotations/instances_val2017.json
      train2017/000000000009.jpg ...
      val2017/...

Classes are the categories sorted by category id (COCO: 80 classes, ids 1..90 with gaps), so the
class index is the position in that order, never ``id - 1``. An image is positive for each category
with at least one instance (crowd instances included unless ``include_crowd=False``) and negative for
every other one: complete labels. Images without any instance are kept (all negative).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from plbench.artifacts.files import read_json
from plbench.datasets.base import DatasetSplit, SplitSource, drop_missing_images, file_fingerprint, register_dataset
from plbench.errors import InputError
from plbench.labels import NEG, POS, PartialLabels

YEARS = ("2017", "2014")


def find_coco_split(root: Path, split: str) -> tuple[Path, Path]:
    """Resolve (annotation json, image folder) for ``split`` (``train``, ``val``, or ``train2014`` ...)."""
    ann_dir = root / "annotations"
    names = [split] if split[-4:].isdigit() else [split + y for y in YEARS]
    for name in names:
        ann = ann_dir / f"instances_{name}.json"
        if ann.is_file():
            return ann, root / name
    tried = ", ".join(str(ann_dir / f"instances_{n}.json") for n in names)
    raise InputError(
        root, "annotations", f"no COCO instances file for split {split!r} (looked for {tried})",
        "point --data-root at the folder that holds annotations/ and the image folders",
    )


def coco_splits(root: Path) -> list[SplitSource]:
    """The ``train`` and ``val`` instances files ``root`` holds (newest year first); see :func:`find_splits`."""
    out = []
    for split in ("train", "val"):
        accepted = tuple(f"annotations/instances_{split}{y}.json" for y in YEARS)
        found = next((root / a for a in accepted if (root / a).is_file()), None)
        out.append(SplitSource(split, found, accepted))
    return out


def _load_json(path: Path) -> dict:
    return read_json(path, "re-download or regenerate the file")


def _require_unique_ids(items: list[dict], key: str, path: Path) -> None:
    """Raise :class:`InputError` naming the first repeated ``id`` among ``items`` (the ``key`` list of the file)."""
    seen: set = set()
    for item in items:
        if item["id"] in seen:
            raise InputError(path, f"{key}[id]", f"expected unique ids, but id {item['id']!r} appears more than once",
                             "re-download or regenerate the file (each image, annotation and category once)")
        seen.add(item["id"])


def coco_labels(data: dict, path: Path, include_crowd: bool = True) -> tuple[list[int], list[str], list[str], np.ndarray]:
    """Parse a COCO instances dict.

    Returns:
        image ids (N,), file names (N,), class names (C,) in category-id order, and the
        complete int8 (N, C) label matrix.
    """
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(path, key, f"missing top-level key {key!r}", "use a COCO instances_*.json file")
    for key in ("images", "annotations", "categories"):
        _require_unique_ids(data[key], key, path)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    images = data["images"]
    img_index = {img["id"]: i for i, img in enumerate(images)}
    matrix = np.full((len(images), len(cats)), NEG, dtype=np.int8)
    for ann in data["annotations"]:
        if not include_crowd and ann.get("iscrowd", 0):
            continue
        for field, index in (("image_id", img_index), ("category_id", cat_index)):
            if ann[field] not in index:
                what = "images" if field == "image_id" else "categories"
                raise InputError(
                    path, f"annotations[{field}]", f"annotation {ann.get('id')} refers to {field} {ann[field]!r}, "
                    f"which is not in {what}", "check that the file is a complete COCO instances file",
                )
        matrix[img_index[ann["image_id"]], cat_index[ann["category_id"]]] = POS
    return (
        [img["id"] for img in images],
        [img["file_name"] for img in images],
        [c["name"] for c in cats],
        matrix,
    )


def load_coco(root: Path, split: str, *, include_crowd: bool = True, strict: bool = False) -> DatasetSplit:
    """Load a COCO split with pycocotools' parser.

    Args:
        root: dataset root (see module docstring).
        split: ``train``/``val`` (newest year found) or an explicit ``train2014``-style name.
        include_crowd: count ``iscrowd`` instances as positives.
        strict: a missing image file is an error instead of being counted, logged and dropped.

    Raises:
        InputError: no instances file for the split, a malformed file, or (``strict``) missing images.
    """
    return _read_coco(Path(root), split, include_crowd=include_crowd, strict=strict, dataset_name="coco")


def _read_coco(root: Path, split: str, *, include_crowd: bool, strict: bool, dataset_name: str) -> DatasetSplit:
    from pycocotools.coco import COCO

    ann_path, image_dir = find_coco_split(root, split)
    data = _load_json(ann_path)
    coco = COCO()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.dataset = data
        coco.createIndex()
    ids, files, names, matrix = coco_labels(coco.dataset, ann_path, include_crowd)
    paths = np.array([str(image_dir / f) for f in files], dtype=object)
    labels = PartialLabels.from_dense(matrix, np.asarray(ids), names, complete=True, validate=False)
    paths, labels, missing = drop_missing_images(
        paths, labels, strict=strict, source=ann_path.name, field="file_name", where=image_dir,
        fix="download the images or run without --strict",
    )
    return DatasetSplit(
        dataset=dataset_name, split=split, image_paths=paths, labels=labels,
        fingerprint=file_fingerprint(ann_path), missing_images=missing,
    )


register_dataset("coco", splits=coco_splits)(load_coco)


@register_dataset("synthetic", splits=coco_splits)
def load_synthetic(root: Path, split: str, *, include_crowd: bool = True, strict: bool = False) -> DatasetSplit:
    """The built-in synthetic dataset: plain COCO layout, read by the COCO loader (same options)."""
    return _read_coco(Path(root), split, include_crowd=include_crowd, strict=strict, dataset_name="synthetic")


def coco_instances(root: Path, split: str, labels: PartialLabels, *, include_crowd: bool = True):
    """The object instances of a COCO-format split, aligned with ``labels`` (the loaded split's rows).

    For the biased single-positive simulations (:mod:`plbench.simulate_biased`), which weigh each positive
    by its instances' areas or box positions. Instances of images not in ``labels`` (missing files, the
    other part of a ``-spml-`` split) are left out.

    Args:
        root, split: as :func:`load_coco` (a ``<split>-spml-train|val`` name reads ``<split>``'s file).
        labels: the loaded split's labels (``image_ids`` and ``class_names`` give rows and columns).
        include_crowd: as the loader's option (crowd instances count unless False).
    Returns:
        :class:`plbench.simulate_biased.Instances`, in annotation-file order.
    Raises:
        InputError: no instances file, or annotations without ``area``, ``bbox`` or image ``width``/``height``.
    """
    from plbench.datasets.holdout import parse_holdout_split
    from plbench.simulate_biased import Instances

    ann_path, _ = find_coco_split(Path(root), parse_holdout_split(split)[0])
    data = _load_json(ann_path)
    row_of = {str(i): r for r, i in enumerate(labels.image_ids)}
    cats = sorted(data.get("categories", []), key=lambda c: c["id"])
    col_of = {c["id"]: labels.class_names.index(c["name"]) for c in cats if c["name"] in labels.class_names}
    sizes = {img["id"]: (img.get("width"), img.get("height")) for img in data.get("images", [])}
    rows, cols, areas, boxes, image_sizes = [], [], [], [], []
    for ann in data.get("annotations", []):
        row = row_of.get(str(ann["image_id"]))
        if row is None or (not include_crowd and ann.get("iscrowd", 0)) or ann["category_id"] not in col_of:
            continue
        size = sizes.get(ann["image_id"], (None, None))
        if "area" not in ann or "bbox" not in ann or None in size:
            raise InputError(ann_path, "annotations[area/bbox]", f"annotation {ann.get('id')} lacks area, bbox or its "
                             "image's width/height", "use a complete COCO instances file (or --bias uniform/frequency)")
        rows.append(row)
        cols.append(col_of[ann["category_id"]])
        areas.append(float(ann["area"]))
        boxes.append([float(x) for x in ann["bbox"]])
        image_sizes.append([float(size[0]), float(size[1])])
    as_array = (lambda x, dt, shape: np.asarray(x, dtype=dt).reshape(shape))
    return Instances(rows=as_array(rows, np.int64, (-1,)), cols=as_array(cols, np.int64, (-1,)),
                     areas=as_array(areas, np.float64, (-1,)), boxes=as_array(boxes, np.float64, (-1, 4)),
                     image_sizes=as_array(image_sizes, np.float64, (-1, 2)))

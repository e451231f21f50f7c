"""Simulation files: a :class:`PartialLabels` plus its provenance in one parquet file.

Layout (documented for users in ``simulations/README.md``): one row per image, in label-row order,

* ``image_id``: int64 or string, the dataset's image id;
* ``class_index``: list<int32>, the annotated classes of the image, increasing;
* ``label``: list<int8>, aligned with ``class_index``: 1 positive, 0 negative.

Absent classes are unannotated (or negative when the metadata says ``complete``). The schema
metadata key ``plbench`` holds a JSON object: format, format_version, dataset, fingerprint,
class_names, scheme, param, seed, plbench_version, complete, num_images, num_classes, extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from plbench.artifacts.atomic import atomic_path
from plbench.errors import InputError
from plbench.labels import LABEL_DTYPE, PartialLabels

FORMAT = "plbench-simulation"
FORMAT_VERSION = 1
METADATA_KEY = b"plbench"
_REGENERATE = "regenerate it with `plbench simulate` for this dataset"


def format_param(param: float | int | None) -> str:
    """Parameter as it appears in file names: ``1000``, ``0.5``, or empty for none."""
    if param is None:
        return ""
    value = float(param)
    if value.is_integer():
        return str(int(value))
    return repr(value)


def default_simulation_path(
    dataset: str, scheme: str, param: float | int | None, seed: int, root: str | Path = "simulations",
    *, split: str = "train",
) -> Path:
    """Where ``plbench simulate`` writes by default: ``ROOT/<dataset>[-<split>]-<scheme><param>-s<seed>.parquet``.

    The split appears only when it is not ``train``. Example: ``simulations/coco-fpc1000-s0.parquet``.
    """
    scheme = getattr(scheme, "value", scheme)
    name = dataset if split == "train" else f"{dataset}-{split}"
    return Path(root) / f"{name}-{scheme}{format_param(param)}-s{int(seed)}.parquet"


def _json_value(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    return getattr(x, "value", x)  # enums


def save_simulation(
    path: str | Path,
    labels: PartialLabels,
    *,
    dataset: str,
    fingerprint: str,
    scheme: str,
    param: float | int | None,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``labels`` and their provenance to ``path`` (atomically: temp file, then rename).

    Args:
        path: target ``.parquet`` file; parent folders are created.
        labels: the simulated labels (dense or sparse).
        dataset: dataset registry name.
        fingerprint: sha256 of the source annotation files (``DatasetSplit.fingerprint``).
        scheme, param, seed: how the labels were simulated.
        extra: further JSON-serialisable provenance (kept under ``extra``).
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from plbench import __version__

    path = Path(path)
    sp = labels.to_sparse()
    rows, cols, values = sp.sparse
    n = labels.num_images
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    list_type, off_dtype = (pa.list_, np.int32) if offsets[-1] < 2**31 else (pa.large_list, np.int64)
    offsets = pa.array(offsets.astype(off_dtype))
    class_col = pa.ListArray if list_type is pa.list_ else pa.LargeListArray
    ids = labels.image_ids
    try:
        id_array = pa.array(ids)
    except (pa.ArrowException, TypeError):  # mixed or exotic id types: store their text
        id_array = pa.array(ids.astype(str))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "fingerprint": fingerprint,
        "class_names": labels.class_names,
        "scheme": _json_value(scheme),
        "param": _json_value(param),
        "seed": int(seed),
        "plbench_version": __version__,
        "complete": sp.complete,
        "num_images": n,
        "num_classes": labels.num_classes,
        "extra": extra or {},
    }
    table = pa.table(
        {
            "image_id": id_array,
            "class_index": class_col.from_arrays(offsets, pa.array(cols.astype(np.int32, copy=False))),
            "label": class_col.from_arrays(offsets, pa.array(values.astype(np.int8, copy=False))),
        }
    ).replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def _read(path: Path) -> tuple[Any, dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(path, "file", "expected a simulation file, but it does not exist",
                         "check the path, or create it with `plbench simulate`")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, "file", f"expected a parquet file, but reading failed ({e})", _REGENERATE) from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise InputError(path, "metadata", "expected plbench metadata in the parquet schema, but found none",
                         f"this is not a plbench simulation file; {_REGENERATE}")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InputError(path, "metadata", f"expected JSON metadata, but got invalid JSON ({e})", _REGENERATE) from None
    if meta.get("format") != FORMAT or not isinstance(meta.get("format_version"), int) \
            or meta["format_version"] > FORMAT_VERSION:
        raise InputError(
            path, "metadata.format",
            f"expected {FORMAT} version <= {FORMAT_VERSION}, but got {meta.get('format')} "
            f"version {meta.get('format_version')}", f"upgrade plbench or {_REGENERATE}",
        )
    for key in ("image_id", "class_index", "label"):
        if key not in table.column_names:
            raise InputError(path, key, f"expected a column {key!r}, but the file has {table.column_names}",
                             _REGENERATE)
    return table, meta


def _first_difference(expected: Sequence[str], got: Sequence[str]) -> str:
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return f"class {i} is {b!r} in the file but {a!r} in the dataset"
    return f"the file has {len(got)} classes but the dataset has {len(expected)}"


def load_simulation(
    path: str | Path,
    *,
    expected_fingerprint: str | None = None,
    expected_class_names: Sequence[str] | None = None,
) -> tuple[PartialLabels, dict[str, Any]]:
    """Read a simulation file written by :func:`save_simulation`.

    Args:
        path: the ``.parquet`` file.
        expected_fingerprint: the source fingerprint of the dataset it will be used with.
        expected_class_names: that dataset's classes, in class-index order.
    Returns:
        (labels, metadata): sparse :class:`PartialLabels`, and the metadata dict (the JSON fields of
        the module docstring plus ``image_ids``, the same array as ``labels.image_ids``).
    Raises:
        plbench.errors.InputError: missing or malformed file, or a fingerprint or class list that
            differs from the expected one.
    """
    import pyarrow.compute as pc

    path = Path(path)
    table, meta = _read(path)
    if expected_fingerprint is not None and meta.get("fingerprint") != expected_fingerprint:
        raise InputError(
            path, "fingerprint",
            f"expected the source fingerprint {expected_fingerprint[:16]}... of the dataset in use, but the file "
            f"was simulated from {str(meta.get('fingerprint'))[:16]}... (dataset {meta.get('dataset')!r})",
            f"pass the simulation file made from this dataset's annotations, or {_REGENERATE}",
        )
    class_names = [str(c) for c in meta.get("class_names", [])]
    if expected_class_names is not None and list(expected_class_names) != class_names:
        raise InputError(
            path, "class_names",
            f"expected the dataset's {len(expected_class_names)} classes in the same order, but "
            f"{_first_difference(list(expected_class_names), class_names)}",
            f"use a simulation file made for this dataset, or {_REGENERATE}",
        )
    n = table.num_rows
    if meta.get("num_images") not in (None, n) or meta.get("num_classes") not in (None, len(class_names)):
        raise InputError(path, "metadata", f"expected {meta.get('num_images')} images and "
                         f"{meta.get('num_classes')} classes, but the file has {n} rows and "
                         f"{len(class_names)} class names", _REGENERATE)
    classes = table.column("class_index").combine_chunks()
    labels_col = table.column("label").combine_chunks()
    offsets = classes.offsets.to_numpy()
    lengths = np.diff(offsets.astype(np.int64))
    if not np.array_equal(lengths, np.diff(labels_col.offsets.to_numpy().astype(np.int64))):
        raise InputError(path, "label", "expected one label per class index in every row, but the list "
                         "lengths differ", _REGENERATE)
    cols = np.asarray(classes.flatten().to_numpy(), dtype=np.int32)
    values = np.asarray(pc.cast(labels_col.flatten(), "int8").to_numpy(), dtype=LABEL_DTYPE)
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    ids = table.column("image_id").to_numpy()
    try:
        labels = PartialLabels.from_sparse(rows, cols, values, ids, class_names, complete=bool(meta.get("complete")))
    except ValueError as e:
        raise InputError(path, "class_index/label", f"expected valid annotations, but {e}", _REGENERATE) from None
    meta["image_ids"] = labels.image_ids
    return labels, meta


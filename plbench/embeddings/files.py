"""Class embeddings read from files: name -> vector tables.

Formats (each read to an :class:`EmbeddingTable`, names in file order):

* ML-Decoder's ``wordvec_array.pth`` (``train_zsl_nus.py``): a float tensor (D, C) = [300, 1006] whose
  columns follow the *sorted* class names (ML-Decoder indexes it with the class ids of a scikit-learn
  ``MultiLabelBinarizer``, whose classes are sorted). Any ``.pth``/``.pt`` holding a 2-D tensor of
  shape (D, C), with C = len(file_classes) != D, is read this way: columns in sorted name order.
* ``.pt``/``.pth`` with a (C, D) tensor: rows in ``file_classes`` order (as given: a run passes its
  dataset's class order), like ``.npy``; or a dict {name: (D,) tensor}. A square tensor (C = D) is
  refused: its orientation, and so its order, cannot be told.
* the LESA / BiAM GloVe pickle (``NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300``): a list of two
  arrays, (1000, 300) in ``TagList1k.txt`` order and (81, 300) in ``Concepts81.txt`` order; give
  ``file_classes`` = tags + concepts (:func:`plbench.datasets.nuswide.nuswide_class_lists`). A
  concept that is also a tag takes its concept vector (the second array), as BiAM uses it.
  Any pickle of one array or a list of arrays is read the same way (rows stacked in order).
* ``.npy``: (C, D), rows in ``file_classes`` order.
* ``.csv``: a header row; the class-name column is ``class``, ``class_name`` or ``name`` (else the
  first), every other column a float.

``file_classes`` is needed wherever the file itself holds no names (``.npy``, tensors, pickles).
"""

from __future__ import annotations

import csv
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from plbench.errors import InputError

NAME_COLUMNS = ("class", "class_name", "name")


@dataclass(frozen=True)
class EmbeddingTable:
    """Vectors of named classes: ``vectors`` float32 (M, D), row i for ``names[i]`` (unique)."""

    names: tuple[str, ...]
    vectors: np.ndarray

    @classmethod
    def from_rows(cls, names: Sequence[str], vectors: np.ndarray) -> "EmbeddingTable":
        """Rows in ``names`` order; a name listed again replaces its earlier row (last wins)."""
        where: dict[str, int] = {}
        for i, n in enumerate(names):
            where[str(n)] = i
        idx = np.fromiter(where.values(), dtype=np.int64, count=len(where))
        return cls(tuple(where), np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[idx]))

    def lookup(self, class_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """float32 (C, D) in ``class_names`` order (zeros where absent) and the absent names."""
        where = {n: i for i, n in enumerate(self.names)}
        out = np.zeros((len(class_names), self.vectors.shape[1]), dtype=np.float32)
        missing = []
        for i, n in enumerate(class_names):
            j = where.get(n)
            if j is None:
                missing.append(n)
            else:
                out[i] = self.vectors[j]
        return out, missing


def _need_classes(path: Path, file_classes: Sequence[str] | None, rows: int, what: str) -> list[str]:
    if file_classes is None:
        raise InputError(path, "class names", f"expected the class of each of the {rows} {what} (the file holds "
                         "no names), but none were given", "pass the file's class list (file_classes)")
    if len(file_classes) != rows:
        raise InputError(path, "shape", f"expected {len(file_classes)} {what} (one per given class name), but the "
                         f"file holds {rows}", "pass the class list the file was written for")
    return [str(n) for n in file_classes]


def _check_matrix(path: Path, m: np.ndarray) -> np.ndarray:
    if m.ndim != 2 or not np.issubdtype(m.dtype, np.number):
        raise InputError(path, "array", f"expected a 2-D numeric array, but got shape {m.shape} ({m.dtype})",
                         "save a (classes, dim) float array")
    m = m.astype(np.float32)
    if not np.isfinite(m).all():
        raise InputError(path, "array", "expected finite values, but got NaN or inf", "regenerate the file")
    return m


def read_torch_file(path: Path, file_classes: Sequence[str] | None) -> EmbeddingTable:
    """``.pth``/``.pt``: ML-Decoder's (D, C) ``wordvec_array`` (columns: sorted ``file_classes``), a (C, D)
    tensor (rows: ``file_classes`` as given) or a dict."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or non-tensor files
        raise InputError(path, "file", f"expected a torch tensor file, but it could not be read ({e})",
                         "save the vectors with torch.save(tensor, path)") from None
    if isinstance(obj, dict):
        names = [str(k) for k in obj]
        return EmbeddingTable.from_rows(names, _check_matrix(path, np.stack([np.asarray(v).reshape(-1)
                                                                             for v in obj.values()])))
    m = _check_matrix(path, np.asarray(obj.float() if hasattr(obj, "float") else obj))
    if file_classes is not None and m.shape[0] == m.shape[1] == len(file_classes):
        raise InputError(path, "shape", f"expected a (classes, dim) tensor or ML-Decoder's (dim, classes) one, but "
                         f"got a square {tuple(m.shape)} tensor, whose rows and columns cannot be told apart",
                         "save the (classes, dim) vectors as .npy, or a {class name: vector} dict with torch.save")
    if file_classes is not None and m.shape[1] == len(file_classes) and m.shape[0] != len(file_classes):
        return EmbeddingTable.from_rows(sorted(str(n) for n in file_classes), m.T)  # ML-Decoder: (D, C), sorted
    return EmbeddingTable.from_rows(_need_classes(path, file_classes, m.shape[0], "rows"), m)


def read_pickle_file(path: Path, file_classes: Sequence[str] | None) -> EmbeddingTable:
    """LESA / BiAM GloVe pickle: arrays stacked in order, rows named by ``file_classes``."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)  # noqa: S301 (a file the user names as their embeddings)
    except Exception as e:
        raise InputError(path, "file", f"expected a pickle of embedding arrays, but it could not be read ({e})",
                         "use the pickle as published") from None
    parts = obj if isinstance(obj, (list, tuple)) else [obj]
    m = _check_matrix(path, np.concatenate([np.asarray(p) for p in parts], axis=0))
    return EmbeddingTable.from_rows(_need_classes(path, file_classes, m.shape[0], "rows"), m)


def read_npy_file(path: Path, file_classes: Sequence[str] | None) -> EmbeddingTable:
    """``.npy`` (C, D), rows in ``file_classes`` order."""
    try:
        m = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(path, "file", f"expected a .npy array, but it could not be read ({e})",
                         "save the vectors with numpy.save") from None
    m = _check_matrix(path, m)
    return EmbeddingTable.from_rows(_need_classes(path, file_classes, m.shape[0], "rows"), m)


def read_csv_file(path: Path) -> EmbeddingTable:
    """CSV with a class-name column and one float column per dimension."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise InputError(path, "rows", "expected a header and at least one class row, but got fewer",
                         "write a header row, then one row per class")
    header = [h.strip() for h in rows[0]]
    col = next((header.index(c) for c in NAME_COLUMNS if c in header), 0)
    names, vectors = [], []
    for line, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != len(header):
            raise InputError(path, f"row {line}", f"expected {len(header)} columns, but got {len(row)}", "fix the row")
        try:
            vectors.append([float(v) for i, v in enumerate(row) if i != col])
        except ValueError:
            raise InputError(path, f"row {line}", "expected numbers in every column but the class name",
                             "fix the row") from None
        names.append(row[col].strip())
    return EmbeddingTable.from_rows(names, _check_matrix(path, np.array(vectors)))


def read_embedding_file(path: str | Path, file_classes: Sequence[str] | None = None) -> EmbeddingTable:
    """Read any supported file (by suffix: ``.pth``/``.pt``, ``.npy``, ``.csv``; pickle otherwise).

    Raises:
        InputError: missing or unreadable file, wrong shape, or class names needed and not given.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "expected a class-embedding file, but it is missing",
                         "give an existing .pth/.pt/.npy/.csv or the GloVe pickle")
    suffix = path.suffix.lower()
    if suffix in (".pth", ".pt"):
        return read_torch_file(path, file_classes)
    if suffix == ".npy":
        return read_npy_file(path, file_classes)
    if suffix == ".csv":
        return read_csv_file(path)
    return read_pickle_file(path, file_classes)

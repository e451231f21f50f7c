"""Biased single positives: keep one positive per image chosen by a bias instead of uniformly.

Arroyo, Perona and Cole, "Understanding Label Bias in Single Positive Multi-Label Learning", ICLR 2023
Tiny Papers (arXiv:2305.15584); code: the ``spml-bias`` branch of
github.com/elijahcole/single-positive-multi-label (pull request #14), ``preproc/biased_labels.py``
(``make_biased_matrix``, ``make_semantic_bias_matrix``). Each image keeps exactly one of its positives,
drawn with probability proportional to a non-negative weight per (image, class):

* size bias (:func:`size_bias_weights`): the summed area of the class's instances in the image, so
  large objects are kept more often;
* location bias (:func:`location_bias_weights`): the sum over the class's instances of 1 / distance
  from the instance's box centre to the image centre (a distance of 0 counts as 0.0005, as theirs);
* class bias (:func:`class_bias_weights`): one weight per class for every image (the paper's
  "semantic" bias uses per-class weights from crowd-sourced annotation clicks;
  :func:`class_frequency_weights` gives the class-frequency variant). An image whose positives all
  have weight 0 keeps a uniformly random one, as ``make_semantic_bias_matrix`` does.

``mode="max"`` keeps the positive with the largest weight instead (ties: lowest class index; no
randomness): the "largest object" extreme of the size bias.

:func:`simulate_biased_spl` is what ``plbench simulate --scheme spl --bias NAME`` runs (:class:`Bias`); a
biased file records the scheme ``spl-<bias>`` (``spl-largest``, ...), so its runs and report rows are told
apart from uniform ``spl`` ones, and ``--bias uniform`` is plain ``spl`` (the same bits).

Conventions as :mod:`plbench.simulate`: pure functions, randomness only from ``make_rng(seed)``, one
uniform double per image with at least one positive, in row order; the same seed gives the same bits
for dense and sparse layouts. The pick is the inverse CDF: the first positive (in class order) whose
cumulative weight exceeds ``u * total``, which is also the rule of Python's ``random.choices`` that the
authors call, so the same uniforms give their choices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plbench.choices import Choice
from plbench.labels import LABEL_DTYPE, POS, UNK, PartialLabels
from plbench.simulate import make_rng, simulate_single_positive

__all__ = ["Bias", "INSTANCE_DATASETS", "Instances", "simulate_biased_spl", "biased_scheme_name", "simulate_single_positive_biased", "pick_positives", "size_bias_weights", "location_bias_weights",
           "class_bias_weights", "class_frequency_weights", "LOCATION_MIN_DISTANCE"]

#: loaders whose annotation files carry instance areas and boxes (COCO format), which the size, largest and
#: location biases read (:func:`plbench.datasets.coco.coco_instances`)
INSTANCE_DATASETS = ("coco", "synthetic")

#: distance (pixels) used for an instance centred exactly on the image centre (the authors' value).
LOCATION_MIN_DISTANCE = 0.0005


def _positives(labels: PartialLabels) -> tuple[np.ndarray, np.ndarray]:
    if labels.is_sparse:
        rows, cols, values = labels.sparse
        return rows[values == POS].astype(np.int64), cols[values == POS].astype(np.int64)
    r, c = np.nonzero(labels.matrix == POS)
    return r.astype(np.int64), c.astype(np.int64)


def pick_positives(pos_rows: np.ndarray, pos_weights: np.ndarray, uniforms: np.ndarray | None,
                   num_images: int) -> np.ndarray:
    """Index into the positives of the one kept per image (pure; the rule of the module docstring).

    Args:
        pos_rows: int (P,) image of each positive, sorted (row-major order of the positives).
        pos_weights: float (P,) non-negative weight of each positive.
        uniforms: float (K,) in [0, 1), one per image with a positive in row order; None for ``max``.
        num_images: N.
    Returns:
        int64 (K,) indices into the positives, one per image that has any.
    """
    counts = np.bincount(pos_rows, minlength=num_images)
    has = np.flatnonzero(counts)
    starts = (np.cumsum(counts) - counts)[has]
    picks = np.empty(has.size, dtype=np.int64)
    for j, (s, k) in enumerate(zip(starts, counts[has])):
        w = pos_weights[s:s + k]
        if uniforms is None:  # max mode: first largest weight
            picks[j] = s + int(np.argmax(w))
            continue
        cum = np.cumsum(w)
        total = cum[-1]
        if total <= 0:  # no weight on any positive: uniform, as the authors' semantic branch
            picks[j] = s + min(int(uniforms[j] * k), k - 1)
        else:
            picks[j] = s + min(int(np.searchsorted(cum, uniforms[j] * total, side="right")), k - 1)
    return picks


def simulate_single_positive_biased(
    labels: PartialLabels, weights: np.ndarray, seed: int, *, mode: str = "sample"
) -> PartialLabels:
    """Keep one positive per image, chosen by ``weights``; every other entry becomes unannotated.

    Args:
        labels: (N, C) labels, dense or sparse, complete or partial.
        weights: float (N, C), finite and >= 0; read at the positives only.
        seed: non-negative int (unused by ``mode="max"`` but still validated).
        mode: ``sample`` (probability proportional to the weight) or ``max`` (the largest weight).
    Returns:
        (N, C) labels with ``complete=False``, at most one (positive) annotation per row, in the input
        layout. Images without a positive stay fully unannotated. Same seed, same bits.
    Raises:
        ValueError: weights of the wrong shape, negative or not finite; an unknown mode; a bad seed.
    """
    if not isinstance(labels, PartialLabels):
        raise TypeError(f"expected a PartialLabels, but got {type(labels).__name__}")
    if mode not in ("sample", "max"):
        raise ValueError(f"expected mode in {{sample, max}}, but got {mode!r}")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != labels.shape:
        raise ValueError(f"expected weights of shape {labels.shape}, but got {weights.shape}")
    rng = make_rng(seed)
    pos_rows, pos_cols = _positives(labels)
    w = weights[pos_rows, pos_cols]
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("expected finite, non-negative weights at the positives, but got negative or non-finite values")
    num_images = labels.num_images
    k = int(np.count_nonzero(np.bincount(pos_rows, minlength=num_images)))
    uniforms = None if mode == "max" else rng.random(k)
    pick = pick_positives(pos_rows, w, uniforms, num_images)
    rows, cols = pos_rows[pick], pos_cols[pick]
    if labels.is_sparse:
        return PartialLabels(labels.image_ids, labels.class_names, rows=rows, cols=cols.astype(np.int32),
                             values=np.full(rows.size, POS, LABEL_DTYPE), complete=False)
    out = np.full(labels.shape, UNK, dtype=LABEL_DTYPE)
    out[rows, cols] = POS
    return PartialLabels(labels.image_ids, labels.class_names, matrix=out, complete=False)


def _instances_to_matrix(rows, cols, values, shape) -> np.ndarray:
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if not (rows.shape == cols.shape == values.shape) or rows.ndim != 1:
        raise ValueError(f"expected instance arrays of one (M,) shape, but got {rows.shape}, {cols.shape}, {values.shape}")
    out = np.zeros(shape, dtype=np.float64)
    np.add.at(out, (rows, cols), values)  # in instance order, as the authors' loop
    return out


def size_bias_weights(rows: np.ndarray, cols: np.ndarray, areas: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Size-bias weights (N, C): summed instance area per (image, class).

    Args:
        rows, cols: int (M,) image row and class column of each instance (e.g. COCO annotations).
        areas: float (M,) instance areas (COCO ``area``, pixels).
    """
    return _instances_to_matrix(rows, cols, areas, shape)


def location_bias_weights(rows: np.ndarray, cols: np.ndarray, boxes: np.ndarray, image_sizes: np.ndarray,
                          shape: tuple[int, int]) -> np.ndarray:
    """Location-bias weights (N, C): sum of 1 / (distance of box centre to image centre) per (image, class).

    Args:
        rows, cols: int (M,) per instance.
        boxes: float (M, 4) COCO ``bbox`` (x, y, width, height), pixels.
        image_sizes: float (M, 2) (width, height) of each instance's image, pixels.
    The authors also scale each image's weights by a constant, which does not change the draw.
    """
    boxes, image_sizes = np.asarray(boxes, dtype=np.float64), np.asarray(image_sizes, dtype=np.float64)
    cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    d = np.sqrt((cx - 0.5 * image_sizes[:, 0]) ** 2 + (cy - 0.5 * image_sizes[:, 1]) ** 2)
    d = np.where(d == 0, LOCATION_MIN_DISTANCE, d)
    return _instances_to_matrix(rows, cols, 1.0 / d, shape)


def class_bias_weights(class_weights: np.ndarray, num_images: int) -> np.ndarray:
    """float (N, C): the same per-class weights (C,) for every image."""
    class_weights = np.asarray(class_weights, dtype=np.float64)
    if class_weights.ndim != 1:
        raise ValueError(f"expected class weights of shape (C,), but got {class_weights.shape}")
    return np.broadcast_to(class_weights, (int(num_images), class_weights.size))


def class_frequency_weights(labels: PartialLabels) -> np.ndarray:
    """float (C,): fraction of images in which each class is a positive (frequent classes kept more often)."""
    counts = labels.counts()
    return counts.positives.astype(np.float64) / max(labels.num_images, 1)


class Bias(Choice):
    """Which positive a single-positive simulation keeps (``plbench simulate --bias``)."""

    UNIFORM = "uniform"  # uniformly random: plain spl (Cole et al.)
    SIZE = "size"  # probability proportional to the summed instance area of the class
    LARGEST = "largest"  # the class with the largest summed instance area (no randomness)
    LOCATION = "location"  # probability proportional to the summed 1 / distance of box centres to the image centre
    FREQUENCY = "frequency"  # probability proportional to the class's frequency in the training labels

    @property
    def needs_instances(self) -> bool:
        """Whether the bias reads per-instance areas or boxes (COCO-format annotations)."""
        return self in (Bias.SIZE, Bias.LARGEST, Bias.LOCATION)


@dataclass(frozen=True)
class Instances:
    """Object instances of a split, aligned with its label rows (see :func:`plbench.datasets.coco.coco_instances`).

    Attributes:
        rows, cols: int64 (M,) label row and class column of each instance.
        areas: float64 (M,) instance area, pixels (COCO ``area``).
        boxes: float64 (M, 4) COCO ``bbox`` (x, y, width, height), pixels.
        image_sizes: float64 (M, 2) (width, height) of each instance's image, pixels.
    """

    rows: np.ndarray
    cols: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray
    image_sizes: np.ndarray


def biased_scheme_name(bias: Bias | str) -> str:
    """The scheme a simulation file records: ``spl`` for the uniform draw, else ``spl-<bias>``."""
    bias = Bias.parse(bias)
    return "spl" if bias is Bias.UNIFORM else f"spl-{bias.value}"


def simulate_biased_spl(labels: PartialLabels, bias: Bias | str, seed: int,
                        instances: Instances | None = None) -> PartialLabels:
    """One positive per image, chosen by ``bias``.

    Args:
        labels: (N, C) labels, dense or sparse.
        bias: a :class:`Bias` (``uniform`` is :func:`plbench.simulate.simulate_single_positive`, bit for bit).
        seed: non-negative int.
        instances: required for ``size``, ``largest`` and ``location``.
    Returns:
        (N, C) labels, at most one positive per row, ``complete=False``. Same seed, same bits.
    Raises:
        ValueError: an unknown bias, or a bias that needs instances given none.
    """
    bias = Bias.parse(bias)
    if bias is Bias.UNIFORM:
        return simulate_single_positive(labels, seed)
    if bias.needs_instances and instances is None:
        raise ValueError(f"bias {bias.value!r} needs the object instances (areas, boxes) of the split, but got none")
    shape = labels.shape
    if bias is Bias.FREQUENCY:
        weights = class_bias_weights(class_frequency_weights(labels), labels.num_images)
    elif bias is Bias.LOCATION:
        weights = location_bias_weights(instances.rows, instances.cols, instances.boxes, instances.image_sizes, shape)
    else:
        weights = size_bias_weights(instances.rows, instances.cols, instances.areas, shape)
    return simulate_single_positive_biased(labels, weights, seed, mode="max" if bias is Bias.LARGEST else "sample")

"""What ``plbench data info`` shows about a loaded split, as records and as text (no printing here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from plbench.datasets.base import DatasetSplit


@dataclass(frozen=True)
class ClassFrequency:
    """One class's annotation counts in a split."""

    index: int
    name: str
    positives: int
    negatives: int


@dataclass(frozen=True)
class SplitSummary:
    """Counts for one split.

    Attributes:
        positives / negatives: annotated entries over all images and classes (for complete labels
            every non-positive entry is a negative).
        annotated_fraction: (positives + negatives) / (images * classes), in [0, 1].
        most_frequent: up to ``top`` classes by decreasing positive count, only classes with at least
            one positive (ties: lower class index first).
        least_frequent: up to ``top`` classes by increasing positive count (classes without any
            positive included: they are the least frequent).
        classes_without_positives: number of classes with no positive in the split.
        groups: number of classes in each named class group (LVIS frequency groups).
    """

    dataset: str
    split: str
    images: int
    classes: int
    complete: bool
    positives: int
    negatives: int
    annotated_fraction: float
    missing_images: int
    most_frequent: list[ClassFrequency] = field(default_factory=list)
    least_frequent: list[ClassFrequency] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)
    classes_without_positives: int = 0
    notes: dict[str, int | str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_split(split: DatasetSplit, top: int = 5) -> SplitSummary:
    """Count annotations of ``split`` (sparse stores stay sparse).

    Args:
        top: how many most and least frequent classes to list.
    """
    counts = split.labels.counts()
    pos, neg = counts.positives, counts.negatives
    k = min(top, split.num_classes)
    # Stable sorts keep the lower class index first among equal counts.
    most = np.argsort(-pos, kind="stable")[:min(k, int(np.count_nonzero(pos)))]
    least = np.argsort(pos, kind="stable")[:k]

    def rec(i: int) -> ClassFrequency:
        return ClassFrequency(int(i), split.class_names[i], int(pos[i]), int(neg[i]))

    return SplitSummary(
        dataset=split.dataset, split=split.split, images=len(split), classes=split.num_classes,
        complete=split.labels.complete, positives=int(pos.sum()), negatives=int(neg.sum()),
        annotated_fraction=split.labels.annotated_fraction(), missing_images=split.missing_images,
        most_frequent=[rec(i) for i in most], least_frequent=[rec(i) for i in least],
        groups={g: int(len(v)) for g, v in split.class_groups.items()},
        classes_without_positives=int(np.count_nonzero(pos == 0)),
        notes=dict(split.notes),
    )


def format_summary(s: SplitSummary) -> str:
    """Human-readable block for one split."""
    kind = "complete labels" if s.complete else "partial labels"
    lines = [
        f"{s.dataset} / {s.split}: {s.images:,} images, {s.classes:,} classes ({kind})",
        f"  annotations: {s.positives:,} positive, {s.negatives:,} negative; "
        f"annotated fraction {s.annotated_fraction:.4f}",
    ]
    if s.missing_images:
        lines.append(f"  missing image files: {s.missing_images:,} (left out)")
    for reason, value in s.notes.items():
        lines.append(f"  {reason.replace('_', ' ')}: {value:,}" if isinstance(value, int)
                     else f"  {reason.replace('_', ' ')}: {value}")
    if s.classes_without_positives:
        lines.append(f"  classes without any positive: {s.classes_without_positives:,} of {s.classes:,}")
    if s.groups:
        lines.append("  class groups: " + ", ".join(f"{g} {n}" for g, n in s.groups.items()))
    for title, recs in (("most frequent", s.most_frequent), ("least frequent", s.least_frequent)):
        if not recs:
            continue
        lines.append(f"  {title}:")
        width = max((len(r.name) for r in recs), default=0)
        for r in recs:
            lines.append(f"    {r.name:<{width}}  {r.positives:>10,} pos  {r.negatives:>10,} neg")
    return "\n".join(lines)

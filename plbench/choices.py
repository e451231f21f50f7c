"""Closed choices shared by the CLI, the config, the engine, the losses and the report: one enum each.

Every enum is a ``str`` enum, so its values are what config files, summaries and the CLI hold, and
``parse`` turns a string into a member with an error that lists the allowed values.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

E = TypeVar("E", bound="Choice")


class Choice(str, Enum):
    """Base of plbench's closed choices."""

    @classmethod
    def parse(cls: type[E], value: "str | E") -> E:
        """The member with this value; raises ValueError listing the allowed values."""
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise ValueError(f"expected a {cls.__name__.lower()} in {{{allowed}}}, but got {value!r}") from None

    def __str__(self) -> str:
        return self.value


class Mode(Choice):
    """How a partial-label loss treats unannotated (``-1``) targets."""

    IGNORE = "ignore"  # unannotated entries get weight 0
    NEGATIVE = "negative"  # unannotated entries are negatives (weight 1)
    SELECTIVE = "selective"  # CSL: ignore high-prior classes and the most likely positives
    IGNORE_NORMALIZED = "ignore_normalized"  # Durand et al. 2019 partial-BCE normalisation


class Head(Choice):
    """The built-in classification heads' names (:mod:`plbench.heads` registers them). Not a closed choice: a
    head spec may also name an installed plug-in or ``package.module:Name``
    (:func:`plbench.heads.resolve_head`)."""

    GAP = "gap"
    ML_DECODER = "ml-decoder"
    BOOSTLU = "boostlu"  # plbench.heads.boostlu.BoostLUHead


class Recipe(Choice):
    """Training recipe preset (see :mod:`plbench.engine.recipes`)."""

    CSL = "csl"  # the CSL authors' train.py: Cutout + RandAugment, EMA 0.9997, 30 epochs, batch 64
    LIGHT = "light"  # horizontal flip only, no EMA: quick CPU runs and the demo
    SPML = "spml"  # Cole et al. 2021's single-positive protocol: 448 px, flip, Adam, batch 8, lr 1e-5, 10 epochs


class Protocol(Choice):
    """What is trained (Cole et al. 2021 report both)."""

    FINE_TUNED = "fine-tuned"  # backbone and head trained end to end on images
    LINEAR = "linear"  # backbone frozen: only the head is trained, on cached features
    LINEAR_INIT = "linear-init"  # fine-tuned, its head starting from a linear run's (Cole et al.'s LinearInit.)


class Augment(Choice):
    """Training-image augmentation."""

    FLIP = "flip"  # random horizontal flip (p = 0.5)
    CUTOUT_RANDAUGMENT = "cutout-randaugment"  # the CSL authors' get_data.py: Cutout(0.5), RandAugment


class Checkpoint(Choice):
    """Which saved model of a run."""

    LAST = "last"
    BEST = "best"


class MissingEmbeddings(Choice):
    """What a zero-shot run does with a class its embedding source has no vector for (a name absent from an
    embedding file, or without any word GloVe knows: NUS-WIDE's tag ``interestingness``)."""

    ERROR = "error"  # refuse the run, naming the classes
    ZERO = "zero"  # a zero vector; the classes are listed in the summary's zero_shot block (``missing``)

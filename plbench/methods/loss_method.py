"""Today's losses as methods: :class:`LossMethod` wraps a registered :class:`~plbench.losses.PartialLoss`.

The wrapped loss is built exactly as the loop built it before methods existed (``create_loss(name,
mode=..., prior=..., **options)``), called with ``(logits, targets)`` and told the epoch through its
``set_epoch``, so its numbers are unchanged. What the loss class declares (whether it takes a mode, its
default mode, its reduction, its report label) is read from the class, never restated here.
"""

from __future__ import annotations

import inspect
import re
from functools import lru_cache
from typing import Any, ClassVar

from torch import Tensor

from plbench.methods.api import REQUIRED, BatchInfo, Method, MethodContext, Needs

__all__ = ["LossMethod", "loss_method_class", "LOSS_PAPERS"]

#: papers of the registered losses (shown by ``plbench methods show``)
LOSS_PAPERS: dict[str, str] = {
    "pasl": "Ben-Baruch et al., Multi-label Classification with Partial Annotations using Class-aware "
            "Selective Loss, CVPR 2022",
    "asl": "Ridnik et al., Asymmetric Loss for Multi-Label Classification, ICCV 2021",
    "an": "Cole et al., Multi-Label Learning from Single Positive Labels, CVPR 2021",
    "an_ls": "Cole et al., Multi-Label Learning from Single Positive Labels, CVPR 2021",
    "wan": "Cole et al., Multi-Label Learning from Single Positive Labels, CVPR 2021",
    "epr": "Cole et al., Multi-Label Learning from Single Positive Labels, CVPR 2021",
    "ll_r": "Kim et al., Large Loss Matters in Weakly Supervised Multi-Label Classification, CVPR 2022",
}

class LossMethod(Method):
    """A registered loss as a method (one subclass per loss: :func:`loss_method_class`)."""

    loss_name: ClassVar[str] = ""
    implementation: ClassVar[type | None] = None  # the wrapped PartialLoss class (recorded in provenance)

    def __init__(self, **options: Any) -> None:
        super().__init__()
        allowed = type(self).options()
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"method {self.loss_name!r} does not take {', '.join(unknown)}; it takes: "
                             f"{', '.join(allowed) or 'no options'}")
        from plbench.losses import create_loss

        self.loss_options = dict(options)
        # built now with the default mode, so bad options fail before a run starts; setup() builds the run's
        self.criterion: Any = create_loss(self.loss_name, **self.loss_options)

    @classmethod
    def options(cls) -> dict[str, Any]:
        """The wrapped loss's ``options()`` (what ``loss_options`` may set)."""
        return {n: (REQUIRED if d is inspect.Parameter.empty else d) for n, d in cls.implementation.options().items()}

    def setup(self, context: MethodContext) -> None:
        from plbench.losses import create_loss

        kw: dict[str, Any] = dict(self.loss_options)
        if self.needs.mode:
            kw.update(mode=context.mode, prior=context.prior)
        self.criterion = create_loss(self.loss_name, **kw).to(context.device)

    def loss(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        return self.criterion(logits, targets)

    def on_epoch_start(self, epoch: int) -> None:
        self.criterion.set_epoch(epoch)


def _first_sentence(doc: str) -> str:
    """The docstring's first sentence as plain text (reST roles and literals unwrapped)."""
    text = " ".join(doc.split("\n\n")[0].split())
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text).replace("``", "")
    return re.split(r"(?<!al\.)(?<=\.)\s+(?=[A-Z])|;\s", text, maxsplit=1)[0]


@lru_cache(maxsize=None)
def loss_method_class(name: str) -> type[LossMethod]:
    """The :class:`LossMethod` subclass of registered loss ``name`` (a new class per call; :func:`plbench.methods.registry.builtin_methods` caches them).

    Raises:
        ValueError: unknown loss (lists the available ones).
    """
    from plbench.losses import LOSSES, list_losses

    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(list_losses())}")
    cls = LOSSES[name]
    default_mode = getattr(cls, "default_mode", None)
    doc = (inspect.getdoc(cls) or "").strip()
    attrs = {
        "__doc__": doc or f"The {name} loss.",
        "__module__": __name__,
        "loss_name": name,
        "implementation": cls,
        "summary": _first_sentence(doc) or f"the {name} loss",
        "paper": LOSS_PAPERS.get(name),
        "needs": Needs(mode=cls.has_modes, prior=cls.has_modes),
        "default_mode": None if default_mode is None else str(getattr(default_mode, "value", default_mode)),
        "reduction": cls.reduction,
        "label": getattr(cls, "label", None),
    }
    return type(f"{cls.__name__}Method", (LossMethod,), attrs)

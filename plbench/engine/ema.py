"""Exponential moving average (EMA) of a model's weights, as the CSL authors train with.

After every optimizer step, every floating-point ``state_dict`` entry (parameters and buffers such as
BatchNorm running statistics) moves towards the model's::

    ema = decay * ema + (1 - decay) * model

and integer buffers (BatchNorm's ``num_batches_tracked``) are copied. The CSL authors use decay 0.9997
(their ``ModelEma(model, 0.9997)``), with no warm-up: at 64 images a step, the average spans about
1 / (1 - 0.9997) = 3333 steps, some 2.6 COCO epochs.

The arithmetic is timm's :class:`timm.utils.ModelEmaV3` (``torch._foreach_lerp_``, no warm-up: ``step``
is never passed). The CSL authors' ``ModelEma`` (timm's ``ModelEmaV2``) computes the same average as
``decay * ema + (1 - decay) * model`` in float32; the two differ only by rounding, and lerp rounds less:
after 3000 Adam steps of a small conv net with BatchNorm (decay 0.9997, float32, 2-core CPU) the largest
weight (0.76) was within 1.5e-6 of the float64 average with lerp and 1.7e-5 with the authors'
arithmetic (plbench's own earlier implementation matched the authors' to 6e-8). ``ModelEmaV2`` also
averages integer buffers (``num_batches_tracked`` stays 0 after truncation), where V3 and plbench copy them.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.utils import ModelEmaV3
from torch import nn

#: the CSL authors' decay
CSL_EMA_DECAY = 0.9997


class ModelEma:
    """A deep copy of a model whose weights follow the model's by EMA.

    Args:
        model: the model being trained; copied once, on its device and dtype.
        decay: in (0, 1).
    Attributes:
        module: the averaged model, always in eval mode and without gradients; evaluate it directly.
        decay: the decay.
        updates: number of :meth:`update` calls so far.
    Raises:
        ValueError: ``decay`` outside (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float = CSL_EMA_DECAY) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"expected an EMA decay in (0, 1), but got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self._ema = ModelEmaV3(model, decay=self.decay)  # deep copy in eval mode; constant decay
        self.module = self._ema.module
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model`` (call after every optimizer step; the same architecture
        as the copied model: entries are matched by position in the ``state_dict``)."""
        self._ema.update(model)  # no step: no warm-up, as the CSL authors
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "updates", "module": the averaged model's state_dict}`` for a checkpoint."""
        return {"decay": self.decay, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (weights copied in place, so ``module`` stays the same object).

        Raises:
            ValueError: the saved decay differs from this one.
            RuntimeError: the saved weights do not fit ``module`` (``load_state_dict(strict=True)``).
        """
        if float(state["decay"]) != self.decay:
            raise ValueError(f"expected a saved EMA with decay {self.decay}, but got {state['decay']}")
        self.module.load_state_dict(state["module"], strict=True)
        self.updates = int(state["updates"])

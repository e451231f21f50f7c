"""Exponential moving average (EMA) of a model's weights, as the CSL authors train with.

After every optimizer step, every floating-point ``state_dict`` entry (parameters and buffers such as
BatchNorm running statistics) moves towards the model's::

    ema = decay * ema + (1 - decay) * model

and integer buffers (BatchNorm's ``num_batches_tracked``) are copied. The CSL authors use decay 0.9997
(their ``ModelEma(model, 0.9997)``), with no warm-up: at 64 images a step, the average spans about
1 / (1 - 0.9997) = 3333 steps, some 2.6 COCO epochs.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
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
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        state = self.module.state_dict()
        self._float_keys = [k for k, v in state.items() if v.is_floating_point()]
        self._other_keys = [k for k, v in state.items() if not v.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model`` (call after every optimizer step).

        Raises:
            KeyError: ``model`` lacks an entry of the copied model (another architecture).
        """
        # both state_dicts are fetched each time: they share storage with the modules even after .to(device)
        ema_state, state = self.module.state_dict(), model.state_dict()
        averaged = [ema_state[k] for k in self._float_keys]
        torch._foreach_mul_(averaged, self.decay)
        torch._foreach_add_(averaged, [state[k] for k in self._float_keys], alpha=1.0 - self.decay)
        for k in self._other_keys:
            ema_state[k].copy_(state[k])
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

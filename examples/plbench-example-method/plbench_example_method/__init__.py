"""A complete plbench method outside plbench: soft targets for unannotated labels.

Assume-negative BCE, except that from ``warmup_epochs`` on an unannotated label's target is the image's
running mean of the model's own predictions for it (per-image state, N x C, saved in ``last.pt``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plbench.methods.api import BatchInfo, Method, MethodContext, Needs


class SoftTargets(Method):
    """Unannotated labels learn towards each image's running mean prediction (an N x C state)."""

    paper = "after Laine and Aila, Temporal Ensembling for Semi-Supervised Learning, ICLR 2017"
    needs = Needs(per_image_state=True)

    def __init__(self, momentum: float = 0.9, warmup_epochs: int = 1) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"expected momentum in [0, 1), but got {momentum}")
        self.momentum, self.warmup_epochs = float(momentum), int(warmup_epochs)

    def setup(self, context: MethodContext) -> None:
        # (N, C) running means, row = dataset index; a buffer, so state_dict() carries it
        self.register_buffer("running", torch.zeros(context.num_images, context.num_classes, device=context.device))

    def loss(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        probs = torch.sigmoid(logits.detach())
        running = self.running[batch.indices]  # (B, C)
        soft = running if batch.epoch >= self.warmup_epochs else torch.zeros_like(running)
        target = torch.where(targets == 1, 1.0, torch.where(targets == 0, 0.0, soft))
        # written on every torchrun process (a collective call), so the replicas stay identical
        self.write_rows(self.running, batch.indices, self.momentum * running + (1 - self.momentum) * probs)
        return F.binary_cross_entropy_with_logits(logits, target)


class MaxPoolHead(nn.Module):
    """Global max pooling over positions, then a linear layer: (B, D, H, W) or (B, L, D) -> (B, C)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        pooled = features.amax(dim=(2, 3)) if features.ndim == 4 else features.amax(dim=1)
        return self.fc(pooled)

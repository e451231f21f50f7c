"""BoostLU (Kim et al., "Bridging the Gap between Model Explanations in Partially Annotated Multi-label
Classification", CVPR 2023; code: github.com/youngwk/BridgeGapExplanationPAMC, ``models.py::
ImageClassifier.forward``, ``config.py``).

A head computing class activation maps (CAMs) with a 1x1 convolution over the backbone's spatial
features, multiplying positive map values by ``alpha`` (BoostLU(x) = alpha x for x > 0, x otherwise)
in every forward pass, training and evaluation alike, then averaging the maps into logits. With
``alpha = 1`` it is the plain global-average-pooling head (the mean commutes with the linear map).
The authors train it with LL-R, LL-Ct or LL-Cp (:mod:`plbench.methods.large_loss`; ``--head boostlu``), ``alpha = 5``, the
1x1 convolution at 10 times the backbone's learning rate (``lr_mult`` in ``config.py``).

It needs spatial features: (B, D, H, W) maps of a fine-tuned CNN, or (B, L, D) tokens (feature stores
written with tokens); pooled (B, D) features cannot be boosted and are refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BOOSTLU_ALPHA", "BOOSTLU_LR_MULT", "boost_positive", "BoostLUHead"]

#: ``--alpha`` default of the authors' ``config.py``.
BOOSTLU_ALPHA = 5.0
#: learning-rate multiplier of the 1x1 convolution (``lr_mult`` in ``config.py``).
BOOSTLU_LR_MULT = 10.0


def boost_positive(maps: Tensor, alpha: float = BOOSTLU_ALPHA) -> Tensor:
    """BoostLU: ``alpha * x`` where ``x > 0``, ``x`` elsewhere (any shape; gradient alpha or 1)."""
    return torch.where(maps > 0, maps * alpha, maps)


class BoostLUHead(nn.Module):
    """1x1-convolution CAMs, BoostLU, average pooling.

    The weights live in ``fc`` (an ``nn.Linear(D, C)``, the same layout and initialisation as a 1x1
    ``nn.Conv2d``), so a :class:`plbench.heads.GAPHead`'s state dict loads into it.

    Args:
        in_features: D.
        num_classes: C.
        alpha: factor on positive map values.
    Shapes:
        (B, D, H, W) or (B, L, D) -> logits (B, C).
    Raises:
        ValueError: features of another rank (pooled (B, D) features have no maps to boost).
    """

    lr_mult: float = BOOSTLU_LR_MULT
    needs_spatial_features: bool = True

    def __init__(self, in_features: int, num_classes: int, alpha: float = BOOSTLU_ALPHA) -> None:
        super().__init__()
        self.in_features, self.num_classes, self.alpha = int(in_features), int(num_classes), float(alpha)
        self.fc = nn.Linear(self.in_features, self.num_classes)

    def class_maps(self, features: Tensor) -> Tensor:
        """Boosted CAMs: (B, C, H, W) for maps, (B, C, L) for tokens."""
        if features.ndim == 4:  # (B, D, H, W)
            cam = F.conv2d(features, self.fc.weight[:, :, None, None], self.fc.bias)  # (B, C, H, W)
        elif features.ndim == 3:  # (B, L, D)
            cam = F.linear(features, self.fc.weight, self.fc.bias).transpose(1, 2)  # (B, C, L)
        else:
            raise ValueError(
                f"BoostLU needs spatial features (B, D, H, W) or tokens (B, L, D), but got shape "
                f"{tuple(features.shape)}; pooled features have no class maps to boost"
            )
        return boost_positive(cam, self.alpha)

    def forward(self, features: Tensor) -> Tensor:
        maps = self.class_maps(features)
        return maps.flatten(2).mean(dim=2)  # (B, C)

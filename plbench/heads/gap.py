"""Global-average-pooling head: the plain linear classifier of a CNN."""

from __future__ import annotations

from torch import Tensor, nn


def tokens_from_features(features: Tensor) -> Tensor:
    """(B, D, H, W) feature maps or (B, L, D) tokens -> (B, L, D) tokens (L = H * W).

    Raises:
        ValueError: any other rank.
    """
    if features.ndim == 4:
        return features.flatten(2).transpose(1, 2)
    if features.ndim == 3:
        return features
    raise ValueError(f"expected features (B, D, H, W) or (B, L, D), but got shape {tuple(features.shape)}")


class GAPHead(nn.Module):
    """Average the spatial positions (or tokens), then one linear layer.

    Args:
        in_features: D, the backbone's ``num_features``.
        num_classes: C.
    Shapes:
        (B, D, H, W) or (B, L, D) -> logits (B, C); a linear-protocol run gives it pooled features (B, 1, D).
    """

    #: pooled features suffice (see :func:`plbench.heads.needs_spatial_features`)
    needs_spatial_features: bool = False

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        self.fc = nn.Linear(self.in_features, self.num_classes)

    def forward(self, features: Tensor) -> Tensor:
        if features.ndim == 4:
            pooled = features.mean(dim=(2, 3))  # (B, D)
        else:
            pooled = tokens_from_features(features).mean(dim=1)
        return self.fc(pooled)

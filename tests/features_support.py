"""What the linear-protocol tests share: a synthetic dataset and feature stores of a seeded random resnet10t."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def random_backbone_stores(base: Path, *, train: int, val: int, num_classes: int, data_seed: int, torch_seed: int,
                           splits: Sequence[str] = ("train", "val"), image_size: int = 32,
                           tokens: bool = False) -> tuple[Path, Path, Path]:
    """Write ``base/synthetic`` (32 px images), save a resnet10t initialised under ``torch.manual_seed(torch_seed)``
    to ``base/resnet10t.pt`` and extract ``splits`` with it at ``image_size`` into ``base/features``.

    Returns:
        (data root, features folder, weights file).
    """
    import timm

    from plbench.datasets.synthetic import write_synthetic_coco
    from plbench.engine.features import extract_split

    root = base / "synthetic"
    write_synthetic_coco(root, train=train, val=val, num_classes=num_classes, image_size=32, seed=data_seed)
    torch.manual_seed(torch_seed)
    weights = base / "resnet10t.pt"
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=0, global_pool="").state_dict(), weights)
    for split in splits:
        extract_split("synthetic", root, split, base / "features", backbone="resnet10t", image_size=image_size,
                      checkpoint=weights, batch_size=16, device="cpu", tokens=tokens)
    return root, base / "features", weights

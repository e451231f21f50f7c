"""Test support for zero-shot tests: a tiny open_clip architecture with random weights (no CLIP weights can be
installed offline, so the clip:FILE path is tested with these)."""

from __future__ import annotations

import json
from pathlib import Path


def tiny_clip(folder: Path, name: str, embed_dim: int = 16, seed: int = 0) -> Path:
    """Register the open_clip architecture ``name`` (a 1-layer text tower of width 32, output ``embed_dim``) and
    save a randomly initialised model's weights (seeded) as ``folder/<name>.pt``; returns that file.

    The registration is process-wide (``open_clip.add_model_config``), as a user's own architecture file would be.
    """
    import open_clip
    import torch

    cfg = {"embed_dim": embed_dim,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder / f"{name}.json")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(name).eval()
    path = folder / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return path

"""Linear-protocol runs through the engine: a head trained on cached features equals a fine-tuned run whose
backbone is frozen (eval mode, no gradient) and whose images are not augmented; mismatches are InputErrors.

Tolerance of the equivalence: the two runs see the same images, order, initial head and optimizer; they
differ only by the float16 rounding of the stored features (relative 2^-11) and summation order, so the
validation scores agree to 2e-3 and the mAP to 0.5 points.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plbench.config import TrainConfig
from plbench.errors import InputError
from features_support import random_backbone_stores


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return random_backbone_stores(tmp_path_factory.mktemp("linear"), train=40, val=24, num_classes=5, data_seed=4,
                                  torch_seed=123)


def _config(root, features, weights, out, **kw):
    cfg = dict(dataset="synthetic", data_root=str(root), features=None if features is None else str(features), backbone="resnet10t",
               checkpoint=str(weights), head="gap", image_size=32, batch_size=16, epochs=4, lr=1e-2, seed=2,
               device="cpu", out_dir=str(out), mode="ignore")
    cfg.update(kw)
    return TrainConfig(**cfg)


class FrozenBackbone(torch.nn.Module):
    """A fine-tuned-protocol model whose backbone never trains: no gradient, BatchNorm in eval mode."""

    def __init__(self, model):
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images):
        return self.head(self.backbone.forward_features(images))


def test_head_only_run_equals_frozen_backbone_run(setup, tmp_path, monkeypatch):
    from plbench.engine import train as engine
    from plbench.engine.model import build_model
    from plbench.heads import create_head

    root, features, weights = setup
    linear = engine.train(_config(root, features, weights, tmp_path / "lin"), progress=False)
    assert linear.summary["protocol"] == "linear"
    assert set(linear.model.state_dict()) == {"head.fc.weight", "head.fc.bias"}
    other = engine.train(_config(root, features, weights, tmp_path / "other", seed=3), progress=False)

    def frozen_model(config, data, device):
        # the head first, from the same RNG state as build_head_model; the backbone (fixed weights) aside
        head = create_head(config.head, in_features=512, num_classes=len(data.class_names))
        with torch.random.fork_rng():
            model = build_model(config.backbone, config.head, len(data.class_names), checkpoint=config.checkpoint)
        model.head = head
        return FrozenBackbone(model).to(device)

    original = engine.make_dataset
    monkeypatch.setattr(engine, "make_model", frozen_model)
    monkeypatch.setattr(engine, "make_dataset", lambda *a, train, **k: original(*a, train=False, **k))
    fine = engine.train(_config(root, None, weights, tmp_path / "fine"), progress=False)
    assert fine.summary["protocol"] == "fine-tuned"

    np.testing.assert_allclose(linear.model.head.fc.weight.detach().numpy(),
                               fine.model.head.fc.weight.detach().numpy(), atol=2e-3)
    from plbench.artifacts.runs import RunFolder

    s_lin = RunFolder(linear.run_dir).predictions()["scores"]
    s_fine = RunFolder(fine.run_dir).predictions()["scores"]
    np.testing.assert_allclose(s_lin, s_fine, atol=2e-3)
    assert abs(linear.summary["val_map"] - fine.summary["val_map"]) < 0.5
    # and the comparison can fail: another seed (initial head, order) gives other scores
    assert not np.allclose(s_lin, RunFolder(other.run_dir).predictions()["scores"], atol=2e-3)


@pytest.mark.parametrize("change, field", [({"backbone": "resnet18"}, "backbone"), ({"image_size": 64}, "image_size"),
                                           ({"pretrained": True}, "pretrained"), ({"head": "ml-decoder"}, "tokens")])
def test_mismatched_run_is_an_input_error(setup, tmp_path, change, field):
    from plbench.engine.train import train

    root, features, weights = setup
    with pytest.raises(InputError) as e:
        train(_config(root, features, weights, tmp_path, **change), progress=False)
    assert e.value.field == field


def test_missing_split_store_says_how_to_extract(setup, tmp_path):
    from plbench.engine.train import train

    import shutil

    root, features, weights = setup
    shutil.copytree(features / "train", tmp_path / "only-train" / "train")  # no val store
    with pytest.raises(InputError, match="no features of split 'val'.*plbench features extract.*--split val"):
        train(_config(root, tmp_path / "only-train", weights, tmp_path), progress=False)

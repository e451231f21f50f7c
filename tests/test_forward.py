"""The one batch-forward core (plbench.engine.forward) and the per-epoch predict built on it.

A probe model records what it saw (grad mode, autocast dtype, memory layout, train/eval mode) and
computes logits = per-channel image means @ W, so the scores can be checked against numpy by hand.
"""

import numpy as np
import pytest
import torch
from torch import nn

from plbench.engine.evaluate import predict
from plbench.engine.forward import LoaderBatch, score_batches
from plbench.engine.runtime import CHANNELS_LAST_ENV
from plbench.labels import PartialLabels

MEAN, STD = [0.5, 0.25, 0.0], [0.5, 0.5, 1.0]
W = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])  # (3 channels, C=2)


class Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(W.clone())
        self.seen = []

    def forward(self, x):
        self.seen.append({"grad": torch.is_grad_enabled(), "training": self.training,
                          "autocast": torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"),
                          "channels_last": x.is_contiguous(memory_format=torch.channels_last), "dtype": x.dtype})
        return x.mean(dim=(2, 3)) @ self.w  # (B, C); bfloat16 under CPU autocast


def _images(seed, n):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, 4, 4), dtype=np.uint8))


def _reference(images):
    x = (images.numpy().astype(np.float64) / 255 - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]
    logits = x.mean(axis=(2, 3)) @ W.double().numpy()
    return 1 / (1 + np.exp(-logits))


@pytest.mark.parametrize("amp", [False, True])
def test_scores_by_hand_under_the_one_precision_policy(amp, monkeypatch):
    monkeypatch.delenv(CHANNELS_LAST_ENV, raising=False)
    model = Probe().train()
    images = _images(0, 3)
    batches = [LoaderBatch(images, np.array([4, 5, 7]), failed=[6]), LoaderBatch(None, np.zeros(0, np.int64),
                                                                                  failed=[8, 9])]
    out = list(score_batches(model, batches, torch.device("cpu"), mean=MEAN, std=STD, amp=amp, num_classes=2))
    assert [b.index.tolist() for b in out] == [[4, 5, 7], []] and [b.failed for b in out] == [[6], [8, 9]]
    assert out[0].scores.dtype == np.float32 and out[1].scores.shape == (0, 2)
    # bfloat16 keeps 8 bits of mantissa: logits within ~1e-2, so scores within ~3e-3
    np.testing.assert_allclose(out[0].scores, _reference(images), rtol=0, atol=3e-3 if amp else 1e-6)
    (seen,) = model.seen  # the empty batch never reaches the model
    assert seen == {"grad": False, "training": False, "autocast": torch.bfloat16 if amp else False,
                    "channels_last": False, "dtype": torch.float32}
    assert model.training  # the caller's mode is restored


@pytest.mark.parametrize("forced", ["0", "1"])
def test_layout_follows_the_environment_switch(forced, monkeypatch):
    monkeypatch.setenv(CHANNELS_LAST_ENV, forced)
    model = Probe()
    list(score_batches(model, [LoaderBatch(_images(1, 2), np.arange(2))], torch.device("cpu"), mean=MEAN, std=STD))
    assert model.seen[0]["channels_last"] is (forced == "1")


class _Items(torch.utils.data.Dataset):
    """(image, labels, index) items; None for the indices in ``broken`` (an undecodable image)."""

    def __init__(self, images, labels, broken):
        self.images, self.broken = images, set(broken)
        self.labels = PartialLabels.from_dense(labels, np.arange(len(labels)), ["a", "b"])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i in self.broken:
            return None
        return self.images[i], torch.from_numpy(self.labels.batch([i])[0]), i


def test_per_epoch_predict_skips_undecodable_batches():
    from plbench.datasets.images import collate_skip_none

    images = _images(2, 6)
    labels = np.array([[1, 0], [0, -1], [1, 1], [0, 0], [-1, 1], [1, 0]], np.int8)
    loader = torch.utils.data.DataLoader(_Items(images, labels, broken=[2, 3]), batch_size=2,
                                         collate_fn=collate_skip_none)  # batch 2 = items 2, 3: all broken
    model = Probe()
    scores, targets, index = predict(model, loader, torch.device("cpu"), mean=MEAN, std=STD)
    assert index.tolist() == [0, 1, 4, 5] and index.dtype == np.int64
    np.testing.assert_array_equal(targets, labels[[0, 1, 4, 5]])
    np.testing.assert_allclose(scores, _reference(images[[0, 1, 4, 5]]), rtol=0, atol=1e-6)
    assert len(model.seen) == 2

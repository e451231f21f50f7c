"""CLIP-Decoder's alignment term in zero-shot training (plbench.engine.zero_shot_alignment, --alignment-weight):
captions from each image's positive seen labels, the weighted sum with the classification loss, weight 0 the
run without it bit for bit, weight > 0 a finite loss that changes the decoder's gradient, and the errors (no
spatial tokens, a fixed embedding file, no zero-shot split)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plbench.errors import InputError
from plbench.labels import PartialLabels
from test_zero_shot_train import UNSEEN
from features_support import random_backbone_stores


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A token store at 64 px (2 x 2 tokens per image: resnet10t's stride is 32), as test_zero_shot_train's."""
    base = tmp_path_factory.mktemp("align")
    root, features, weights = random_backbone_stores(base, train=48, val=16, num_classes=12, data_seed=5,
                                                     torch_seed=7, image_size=64, tokens=True)
    split_file = base / "unseen.txt"
    split_file.write_text("\n".join(UNSEEN) + "\n")
    return root, features, weights, split_file


def _config(setup, out, **kw):
    from plbench.config import TrainConfig

    root, features, weights, split_file = setup
    cfg = dict(dataset="synthetic", data_root=str(root), features=str(features), backbone="resnet10t",
               checkpoint=str(weights), head="ml-decoder", image_size=64, batch_size=16, epochs=1, lr=1e-3, seed=1,
               device="cpu", out_dir=str(out), mode="negative", zsl_split=str(split_file), class_embeddings="glove",
               head_options={"embed_dim": 32, "num_heads": 2, "ff_dim": 64})
    cfg.update(kw)
    return TrainConfig(**cfg)


def _term(weight, classification=1.0, trainable=False):
    from plbench.engine.zero_shot_alignment import AlignmentTerm, CaptionTable
    from plbench.heads.ml_decoder import MLDecoderHead

    torch.manual_seed(0)
    head = MLDecoderHead(8, 3, embed_dim=16, num_heads=2, ff_dim=32, dropout=0.0,
                         query_embeddings=torch.randn(3, 5))
    captions = CaptionTable(["a photo of sky", "a photo of dog and sky", "a photo of "], "random", torch.device("cpu"))
    return head, AlignmentTerm(head, captions, weight, classification, seed=3, trainable=trainable)


def _grads(weight, classification=1.0, tokens=4):
    head, term = _term(weight, classification)
    torch.manual_seed(1)
    x = torch.randn(3, tokens, 8)
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0]])
    with torch.enable_grad():
        logits = head(x)
        loss = term.combine(F.binary_cross_entropy_with_logits(logits, targets, reduction="sum"),
                            torch.tensor([2, 0, 1]))
        loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}


def test_weight_zero_is_the_classification_loss_and_weight_changes_the_gradient():
    base_loss, base = _grads(0.0)
    loss, grads = _grads(0.7)
    assert torch.isfinite(loss) and loss > base_loss  # the alignment loss is a positive cross-entropy
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert not torch.equal(grads["embed.weight"], base["embed.weight"])  # reaches the decoder's memory
    assert torch.equal(grads["group_weight"], base["group_weight"])  # the classifier sees the classification only
    half_loss, half = _grads(0.0, classification=0.5)
    assert torch.equal(half_loss, base_loss * 0.5) and torch.allclose(half["embed.weight"], base["embed.weight"] * 0.5)


def test_alignment_term_equals_the_loss_by_hand():
    from plbench.embeddings import class_embeddings
    from plbench.losses.alignment import ImageTextAlignment

    head, term = _term(1.0)
    torch.manual_seed(1)
    x = torch.randn(3, 4, 8)
    with torch.enable_grad():
        head(x)
    got = term.combine(torch.tensor(0.0), torch.tensor([2, 0, 1]))
    texts = class_embeddings(["a photo of ", "a photo of sky", "a photo of dog and sky"], "random").vectors
    torch.manual_seed(3)  # the term's projections: drawn from the run's seed
    ref = ImageTextAlignment(16, 50, 512)
    want = ref(torch.relu(head.embed(x)), torch.from_numpy(texts))
    assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("trainable", [False, True])
def test_learnable_temperature_gets_a_gradient_and_moves(trainable):
    """Frozen (the default, as the authors' GPU runs): no gradient reaches the projections or the logit scale.
    Learnable: the logit scale and both projections get finite non-zero gradients, and one optimizer step moves
    the scale away from its initial log value 0.1."""
    head, term = _term(1.0, trainable=trainable)
    torch.manual_seed(1)
    x = torch.randn(3, 4, 8)
    with torch.enable_grad():
        head(x)
        term.combine(torch.tensor(0.0), torch.tensor([2, 0, 1])).backward()
    scale = term.loss.log_logit_scale
    assert scale.item() == pytest.approx(0.1)
    if not trainable:
        assert all(p.grad is None and not p.requires_grad for p in term.loss.parameters())
        return
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in term.loss.parameters())
    before = {n: p.detach().clone() for n, p in term.loss.named_parameters()}
    torch.optim.SGD(term.loss.parameters(), lr=0.5).step()
    assert scale.item() == pytest.approx(0.1 - 0.5 * scale.grad.item()) and scale.item() != pytest.approx(0.1)
    assert not torch.equal(term.loss.image_proj, before["image_proj"])


def test_pooled_features_are_refused():
    with pytest.raises(InputError, match="spatial tokens"):
        _grads(1.0, tokens=1)


def test_captions_list_the_positive_seen_labels():
    from plbench.engine.zero_shot_alignment import image_captions

    labels = PartialLabels.from_dense([[1, 0, 1, -1], [0, 0, 0, 0], [1, 1, 1, 0]], ["a", "b", "c"],
                                      ["sky", "blue_sea", "dog", "cat"])
    assert image_captions(labels, labels.class_names) == ["a photo of sky and dog", "a photo of ",
                                                         "a photo of sky, blue sea and dog"]
    assert image_captions(labels.to_sparse(), labels.class_names) == image_captions(labels, labels.class_names)


def test_weight_zero_run_is_the_run_without_it_and_weight_one_trains(setup, tmp_path):
    from plbench.artifacts.runs import RunFolder
    from plbench.engine.train import train

    base = train(_config(setup, tmp_path / "a"), progress=False)
    zero = train(_config(setup, tmp_path / "b", alignment_weight=0.0, classification_weight=1.0),
                 progress=False)
    a, b = RunFolder(base.run_dir), RunFolder(zero.run_dir)
    assert np.array_equal(a.predictions()["scores"], b.predictions()["scores"])
    wa, wb = a.load_checkpoint("last")["model"], b.load_checkpoint("last")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert base.summary["zero_shot"]["zsl"] == zero.summary["zero_shot"]["zsl"]

    aligned = train(_config(setup, tmp_path / "c", alignment_weight=1.0), progress=False)
    c = RunFolder(aligned.run_dir)
    assert json.loads((aligned.run_dir / "config.json").read_text())["alignment_weight"] == 1.0
    assert aligned.summary["zero_shot"]["alignment_weight"] == 1.0
    assert np.isfinite(c.metrics()[0]["train_loss"]) and c.metrics()[0]["train_loss"] > a.metrics()[0]["train_loss"]
    assert not np.array_equal(c.predictions()["scores"], a.predictions()["scores"])


def test_trainable_run_optimises_and_checkpoints_the_alignment_parameters(setup, tmp_path):
    """--alignment-trainable: the run's optimizer has a group of the alignment's 3 parameters (no weight decay);
    after the epoch's steps the checkpointed logit scale and projections differ from their seeded initial
    values; re-opening the finished run restores that checkpoint (its optimizer groups, the alignment state);
    the default run checkpoints none."""
    from plbench.artifacts.runs import RunFolder
    from plbench.engine.train import train
    from plbench.losses.alignment import ImageTextAlignment

    result = train(_config(setup, tmp_path / "t", alignment_weight=1.0, alignment_trainable=True), progress=False)
    state = RunFolder(result.run_dir).load_checkpoint("last")
    groups = state["optimizer"]["param_groups"]
    assert len(groups[-1]["params"]) == 3 and groups[-1]["weight_decay"] == 0.0
    learnt = state["extra"]["alignment"]
    torch.manual_seed(1)  # the run's seed draws the initial projections (engine.zero_shot_alignment)
    initial = ImageTextAlignment(32, 50, 512).state_dict()
    assert learnt["log_logit_scale"].item() != pytest.approx(0.1)
    assert not torch.equal(learnt["image_proj"], initial["image_proj"])
    assert torch.allclose(learnt["image_proj"], initial["image_proj"], atol=0.1)  # moved, from that start
    assert result.summary["zero_shot"]["alignment_trainable"] is True
    again = train(_config(setup, tmp_path / "t", alignment_weight=1.0, alignment_trainable=True), progress=False)
    assert again.summary["zero_shot"] == result.summary["zero_shot"]  # restored, finished: returned as it is

    frozen = train(_config(setup, tmp_path / "f", alignment_weight=1.0), progress=False)
    assert "alignment" not in (RunFolder(frozen.run_dir).load_checkpoint("last").get("extra") or {})
    assert frozen.summary["zero_shot"]["alignment_trainable"] is False


@pytest.mark.parametrize("change, message", [
    ({"alignment_trainable": True}, "--alignment-weight is 0"),
    ({"alignment_weight": 1.0, "class_embeddings": "FILE"}, "fixed embedding file"),
    ({"alignment_weight": 1.0, "zsl_split": None, "class_embeddings": None}, "no --zsl-split"),
    ({"classification_weight": 0.5, "zsl_split": None, "class_embeddings": None}, "no --zsl-split"),
])
def test_bad_alignment_settings_are_input_errors(setup, tmp_path, change, message):
    from plbench.engine.train import train

    if change.get("class_embeddings") == "FILE":
        emb = tmp_path / "emb.csv"
        emb.write_text("class,d0\nx,1.0\n")
        change = {**change, "class_embeddings": str(emb)}
    out = tmp_path / "runs"
    with pytest.raises(InputError, match=message) as e:
        train(_config(setup, out, **change), progress=False)
    assert e.value.field == ("--alignment-trainable" if "trainable" in str(change) else "--alignment-weight")
    assert not out.exists()

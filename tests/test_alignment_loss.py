"""CLIP-Decoder's alignment loss: captions, the symmetric in-batch cross-entropy vs numpy and a closed
form, parity with the authors' CLIPLoss (values and gradients), trainable/frozen parameters, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plbench.heads import MLDecoderHead
from plbench.losses.alignment import ImageTextAlignment, caption_from_labels, image_text_alignment_loss

# Captions from the authors' builder: aliman80/ML_Decoder, src_files/helper_functions/helper_functions.py,
# parse_csv_data (the loop over image_labels_list), run on a data.csv holding these label lists. "[]" parses
# there to [""], giving the same "a photo of " as no labels here.
CAPTIONS = [
    ([], "a photo of "),
    (["sky"], "a photo of sky"),
    (["sky", "clouds"], "a photo of sky and clouds"),
    (["sky", "clouds", "water"], "a photo of sky, clouds and water"),
    (["a", "b", "c", "d"], "a photo of a, b, c and d"),
    (["x" * 30, "y" * 30, "z" * 30], "a photo of " + "x" * 30 + ", " + "y" * 30 + " and "),
    (["short", "w" * 80, "tail"], "a photo of short, tail"),
    (["p" * 30, "q" * 20, "r" * 30], "a photo of " + "p" * 30 + ", " + "q" * 20 + " and "),
    (["p" * 30, "q" * 20, "r" * 5, "s" * 30], "a photo of " + "p" * 30 + ", " + "q" * 20 + ", rrrrr and "),
]


@pytest.mark.parametrize("names, caption", CAPTIONS)
def test_caption_matches_authors_builder(names, caption):
    assert caption_from_labels(names) == caption
    assert len(caption_from_labels(names)) < 77 + 5  # names only while under 77 characters, then a separator


def test_caption_options():
    assert caption_from_labels(["dog", "cat"], prefix="an image of ") == "an image of dog and cat"
    assert caption_from_labels(["dog", "cat"], max_chars=16) == "a photo of dog and "


def numpy_symmetric_ce(img: np.ndarray, txt: np.ndarray, scale: float) -> float:
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    logits = scale * img @ txt.T

    def ce_rows(z: np.ndarray) -> float:
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-np.mean(np.diag(log_p)))

    return (ce_rows(logits) + ce_rows(logits.T)) / 2


def test_loss_vs_numpy():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    for log_scale in (0.1, math.log(1 / 0.07), -1.0):
        got = image_text_alignment_loss(torch.tensor(img), torch.tensor(txt), log_scale)
        assert got.dtype == torch.float32 and got.ndim == 0
        assert got.item() == pytest.approx(numpy_symmetric_ce(img, txt, math.exp(log_scale)), rel=1e-5)


def test_loss_closed_form_and_asymmetric_case():
    # orthonormal, matched pairs: logits s * I, each row -log(e^s / (e^s + (B-1)))
    s = 0.1
    eye = torch.eye(3)
    assert image_text_alignment_loss(eye, eye * 4.0, s).item() == pytest.approx(
        math.log(1 + 2 * math.exp(-math.exp(s))), rel=1e-6)
    # rows and columns differ when one caption matches two images: image 0 and 1 both along e0
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    e = math.exp(1.0)  # log scale 0 -> scale 1
    rows = (-math.log(e / (e + 1)) - math.log(1 / (e + 1))) / 2  # both images: logits (1, 0)
    cols = (-math.log(e / (2 * e)) - math.log(1 / 2)) / 2  # caption 0: (1, 1); caption 1: (0, 0)
    assert image_text_alignment_loss(img, txt, 0.0).item() == pytest.approx((rows + cols) / 2, rel=1e-6)
    assert image_text_alignment_loss(eye[:1], eye[:1], 0.1).item() == 0.0  # one pair, no negatives


# Reference from the authors' code: aliman80/ML_Decoder, src_files/loss_functions/losses.py, CLIPLoss(
# temperature=0.1, img_latent_size=8, text_latent_size=6, proj_size=5, device="cpu") with W_i, W_j copied
# from below, called on (tokens.mean(1), text) as train_zsl_nus.py does with the decoder's
# embedding_spatial_786.mean(1); float32. It returns (loss, loss_i.mean(), loss_j.mean()); gradients of loss
# as (sum, L2 norm).
REF_LOSS, REF_LOSS_I, REF_LOSS_J = 1.192232608795166, 1.196563482284546, 1.1879017353057861
REF_GRAD = {
    "tokens": (0.2399786412715912, 0.13596703112125397),
    "text": (-0.24182680249214172, 0.18933981657028198),
    "image_proj": (-0.066031813621521, 0.18671059608459473),
    "text_proj": (-0.24611671268939972, 0.15526221692562103),
}
REF_GRAD_SCALE = -0.08486513048410416
REF_GRAD_TEXT0 = [0.023892130702733994, 0.01628408022224903, 0.01728067733347416, 0.0022222446277737617,
                  -0.0014659203588962555, -0.013236844912171364]


def _parity_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(5)
    tokens, text = torch.randn(4, 3, 8, generator=g), torch.randn(4, 6, generator=g)
    w_img, w_txt = torch.randn(8, 5, generator=g), torch.randn(6, 5, generator=g)
    return tokens, text, w_img, w_txt


def test_matches_authors_clip_loss_values_and_gradients():
    tokens, text, w_img, w_txt = _parity_inputs()
    align = ImageTextAlignment(8, 6, proj_dim=5, trainable=True)
    with torch.no_grad():
        align.image_proj.copy_(w_img)
        align.text_proj.copy_(w_txt)
    tokens.requires_grad_(True)
    text.requires_grad_(True)
    loss = align(tokens, text)
    assert loss.item() == pytest.approx(REF_LOSS, rel=1e-6)
    assert REF_LOSS == pytest.approx((REF_LOSS_I + REF_LOSS_J) / 2, rel=1e-6)
    loss.backward()
    grads = {"tokens": tokens.grad, "text": text.grad, "image_proj": align.image_proj.grad,
             "text_proj": align.text_proj.grad}
    for name, (total, norm) in REF_GRAD.items():
        assert grads[name].sum().item() == pytest.approx(total, rel=1e-4, abs=1e-6), name
        assert grads[name].norm().item() == pytest.approx(norm, rel=1e-5), name
    assert align.log_logit_scale.grad.item() == pytest.approx(REF_GRAD_SCALE, rel=1e-5)
    np.testing.assert_allclose(text.grad[0].numpy(), REF_GRAD_TEXT0, rtol=1e-5, atol=1e-7)
    # pooled (B, D_img) input is the same loss
    assert align(tokens.detach().mean(1), text.detach()).item() == pytest.approx(REF_LOSS, rel=1e-6)


def test_frozen_by_default_as_the_published_runs():
    torch.manual_seed(0)
    align = ImageTextAlignment(8, 6)
    assert align.image_proj.shape == (8, 512) and align.text_proj.shape == (6, 512)
    assert align.log_logit_scale.item() == pytest.approx(0.1)
    assert not any(p.requires_grad for p in align.parameters())
    assert set(align.state_dict()) == {"image_proj", "text_proj", "log_logit_scale"}  # travel in checkpoints
    # N(0, 1) projections, as torch.randn in the code
    torch.manual_seed(0)
    assert torch.equal(align.image_proj, torch.randn(8, 512))
    # gradients still reach the image tokens and the text embeddings
    tokens, text = torch.randn(5, 4, 8, requires_grad=True), torch.randn(5, 6, requires_grad=True)
    align(tokens, text).backward()
    assert tokens.grad.abs().sum() > 0 and text.grad.abs().sum() > 0
    assert align.image_proj.grad is None


def test_with_ml_decoder_memory_any_text_width():
    torch.manual_seed(0)
    head = MLDecoderHead(8, 3, embed_dim=16, num_heads=2, ff_dim=16, query_embeddings=torch.randn(3, 10))
    x = torch.randn(4, 8, 2, 2)
    for text_dim in (50, 384, 512):
        align = ImageTextAlignment(16, text_dim, proj_dim=32, trainable=True)
        out = head.decode(x)
        total = 1.0 * out.logits.sigmoid().sum() + 1.0 * align(out.memory, torch.randn(4, text_dim))
        total.backward()
        assert head.embed.weight.grad.abs().sum() > 0 and align.text_proj.grad.abs().sum() > 0
        head.zero_grad()


def test_bf16_autocast_computes_in_float32():
    torch.manual_seed(0)
    align = ImageTextAlignment(8, 6, proj_dim=5)
    tokens, text = torch.randn(4, 3, 8), torch.randn(4, 6)
    ref = align(tokens, text)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = align(tokens.bfloat16(), text.bfloat16())
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), rel=2e-2)


@pytest.mark.parametrize("args, match", [
    ((torch.randn(4, 3, 7), torch.randn(4, 6)), r"image tokens \(B, L, 8\) or \(B, 8\), but got shape \(4, 3, 7\)"),
    ((torch.randn(4, 3, 8), torch.randn(3, 6)), r"text embeddings \(4, 6\), but got shape \(3, 6\)"),
    ((torch.randn(4, 8), torch.randn(4, 5)), r"text embeddings \(4, 6\), but got shape \(4, 5\)"),
])
def test_shape_errors(args, match):
    with pytest.raises(ValueError, match=match):
        ImageTextAlignment(8, 6, proj_dim=5)(*args)


def test_functional_and_constructor_errors():
    with pytest.raises(ValueError, match=r"one shape \(B, P\), but got \(2, 3\) and \(2, 4\)"):
        image_text_alignment_loss(torch.randn(2, 3), torch.randn(2, 4), 0.1)
    with pytest.raises(ValueError, match="at least one"):
        image_text_alignment_loss(torch.randn(0, 3), torch.randn(0, 3), 0.1)
    with pytest.raises(ValueError, match="text_dim >= 1, but got 0"):
        ImageTextAlignment(8, 0)

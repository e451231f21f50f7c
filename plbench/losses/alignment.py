"""CLIP-Decoder's image-text alignment loss (Ali & Khan, "CLIP-Decoder: ZeroShot Multilabel Classification
using Multimodal CLIP Aligned Representation", arXiv 2406.14830; code ``aliman80/ML_Decoder``).

Each training image gets a caption built from its positive label names (:func:`caption_from_labels`),
embedded by a text encoder (any width). The image side is the mean of the ML-Decoder's memory tokens
(:meth:`plbench.heads.MLDecoderHead.decode`, ``.memory``). Both are projected into a shared space, L2
normalised and compared by cosine similarity times ``exp(log_logit_scale)``; the loss is the in-batch
cross-entropy of the matching pairs, averaged over both directions (image -> captions, caption -> images).
The total training loss is ``classif_weight * classification_loss + align_weight * alignment_loss`` with
both weights 1 in the authors' ``train_zsl_nus.py`` (``--classif-loss-weight``, ``--clip-loss-weight``).

Where the paper's description and the code behind its numbers part (we follow the code):

* "Learnable" projections and temperature: the code's ``CLIPLoss`` registers them as ``nn.Parameter(...)
  .to(device)``; on a GPU that ``.to`` returns a plain tensor, so ``CLIPLoss.parameters()`` is empty, the
  optimizer never sees them, and the published runs trained with the random projections and the scale
  they were initialised with. Hence ``trainable=False`` by default; ``trainable=True`` is what the paper
  (and the code on CPU) describes (``plbench train --alignment-trainable``). The same optimizer does train
  the authors' CLIP model (``clip_model.parameters()`` are added to it); plbench's text encoders stay fixed.
* "Temperature": the code multiplies the cosine logits by ``exp(t)`` with ``t = 0.1``
  (``--clip-loss-temp``), a logit scale of 1.105, not a division by 0.1 (a scale of 10).
* Projections are bias-free (D, P) matrices drawn from N(0, 1) (``torch.randn``), P = 512.
* Captions list every positive label of the image as it appears in ML-Decoder's ``data.csv``; in the
  NUS-WIDE zero-shot split that includes unseen labels, which leaks unseen class names into training.
  Which names to pass is the caller's choice (seen positives only keeps the protocol clean).
* The classification loss the alignment term is added to is ASL summed over the batch and classes, while
  the alignment term is a batch mean: at weights 1 and 1 it is small next to the classification loss.
* The code casts to float32 but runs under CUDA autocast (float16 products); here the loss is computed in
  float32 with autocast off. L2 normalisation has an epsilon (the code divides by the norm: NaN for a
  zero vector, where this gives a zero vector).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the authors' caption opening (no article: "a photo of sky and clouds")
CAPTION_PREFIX = "a photo of "
#: CLIP's context length, applied by the authors' caption builder to characters, not tokens
CAPTION_MAX_CHARS = 77


def caption_from_labels(label_names: Sequence[str], prefix: str = CAPTION_PREFIX,
                        max_chars: int = CAPTION_MAX_CHARS) -> str:
    """Caption of an image from its positive label names, in the authors' format.

    ``["sky"]`` -> ``"a photo of sky"``; ``["sky", "clouds", "water"]`` -> ``"a photo of sky, clouds and
    water"``. A name is appended only while the caption so far plus the name is shorter than ``max_chars``
    characters; each appended name is followed by ``" and "`` if it is second to last in ``label_names``,
    nothing if last, ``", "`` otherwise, so a skipped name can leave ``"..., b and "`` or ``"a, c"``
    (exactly what the code produces). No positives: ``"a photo of "`` (the trailing space kept).

    Args:
        label_names: the image's positive class names, in the order to list them.
    Returns:
        The caption string.
    """
    caption = prefix
    last = len(label_names) - 1
    for i, name in enumerate(label_names):
        if len(caption + name) >= max_chars:
            continue
        caption += name + (" and " if i == last - 1 else "" if i == last else ", ")
    return caption


def image_text_alignment_loss(image_embeddings: Tensor, text_embeddings: Tensor,
                              log_logit_scale: Tensor | float) -> Tensor:
    """Symmetric in-batch cross-entropy of image / caption pairs.

    logits[i, j] = exp(log_logit_scale) * cos(image_i, text_j); the loss is
    ``(CE(logits, arange(B)) + CE(logits.T, arange(B))) / 2``, each CE a mean over the batch.

    Args:
        image_embeddings: float (B, P), already projected.
        text_embeddings: float (B, P), already projected; row i is image i's caption.
        log_logit_scale: scalar (tensor or float).
    Returns:
        Scalar float32 loss; 0 when B == 1 (a single pair has no negatives).
    Raises:
        ValueError: not two (B, P) tensors of the same shape, or B == 0.
    """
    if image_embeddings.ndim != 2 or image_embeddings.shape != text_embeddings.shape:
        raise ValueError(f"expected image and text embeddings of one shape (B, P), but got "
                         f"{tuple(image_embeddings.shape)} and {tuple(text_embeddings.shape)}")
    if image_embeddings.shape[0] == 0:
        raise ValueError("expected a batch of at least one image-text pair, but got 0")
    with torch.autocast(image_embeddings.device.type, enabled=False):
        img = F.normalize(image_embeddings.float(), dim=1)
        txt = F.normalize(text_embeddings.float(), dim=1)
        scale = torch.as_tensor(log_logit_scale, dtype=torch.float32, device=img.device).exp()
        logits = img @ txt.T * scale  # (B, B): rows images, columns captions
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class ImageTextAlignment(nn.Module):
    """CLIP-Decoder's alignment loss with its projections and logit scale.

    Args:
        image_dim: D_img, the width of the image tokens (the ML-Decoder's ``embed_dim``).
        text_dim: D_txt, the width of the text embeddings (any text encoder).
        proj_dim: P, the shared space.
        log_logit_scale: initial log of the logit scale (the code's ``--clip-loss-temp``).
        trainable: whether the projections and the scale get gradients; False reproduces the published
            runs (see the module docstring).
    Shapes:
        forward(image_tokens (B, L, D_img) or pooled (B, D_img), text_embeddings (B, D_txt)) -> scalar.
        Tokens are averaged over L before the projection.
    Raises:
        ValueError: non-positive sizes; at forward, widths or batch sizes that do not match.
    """

    def __init__(self, image_dim: int, text_dim: int, proj_dim: int = 512, log_logit_scale: float = 0.1,
                 trainable: bool = False) -> None:
        super().__init__()
        for name, value in (("image_dim", image_dim), ("text_dim", text_dim), ("proj_dim", proj_dim)):
            if int(value) < 1:
                raise ValueError(f"expected {name} >= 1, but got {value}")
        self.image_dim, self.text_dim, self.proj_dim = int(image_dim), int(text_dim), int(proj_dim)
        # parameters even when frozen: the random projections are part of the run and go in its checkpoint
        self.image_proj = nn.Parameter(torch.randn(self.image_dim, self.proj_dim), requires_grad=trainable)
        self.text_proj = nn.Parameter(torch.randn(self.text_dim, self.proj_dim), requires_grad=trainable)
        self.log_logit_scale = nn.Parameter(torch.tensor(float(log_logit_scale)), requires_grad=trainable)

    def forward(self, image_tokens: Tensor, text_embeddings: Tensor) -> Tensor:
        if image_tokens.ndim not in (2, 3) or image_tokens.shape[-1] != self.image_dim:
            raise ValueError(f"expected image tokens (B, L, {self.image_dim}) or (B, {self.image_dim}), "
                             f"but got shape {tuple(image_tokens.shape)}")
        if image_tokens.ndim == 3:
            image_tokens = image_tokens.mean(1)  # (B, D_img)
        if text_embeddings.ndim != 2 or text_embeddings.shape != (image_tokens.shape[0], self.text_dim):
            raise ValueError(f"expected text embeddings ({image_tokens.shape[0]}, {self.text_dim}), "
                             f"but got shape {tuple(text_embeddings.shape)}")
        with torch.autocast(image_tokens.device.type, enabled=False):
            img = image_tokens.float() @ self.image_proj.float()  # (B, P)
            txt = text_embeddings.float() @ self.text_proj.float()  # (B, P)
        return image_text_alignment_loss(img, txt, self.log_logit_scale)

    def extra_repr(self) -> str:
        return (f"image_dim={self.image_dim}, text_dim={self.text_dim}, proj_dim={self.proj_dim}, "
                f"trainable={self.image_proj.requires_grad}")

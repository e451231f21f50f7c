"""ML-Decoder head (Ridnik et al., "ML-Decoder: Scalable and Versatile Classification Head", WACV 2023).

Same architecture and parameter count as the authors' ``MLDecoder`` for the same settings, rewritten
for current PyTorch: attention through ``F.scaled_dot_product_attention`` and the group fully-connected
layer as one batched matrix product instead of a Python loop over groups.

Architecture: tokens (B, L, D) -> Linear(D, E) -> ReLU = memory; G fixed (not trained) queries (G, E);
one transformer-decoder layer without self-attention (``q + dropout(q)``, LayerNorm, cross-attention
to the memory, residual, LayerNorm, feed-forward E -> F -> E with ReLU, residual, LayerNorm); group
fully-connected: query g yields K = ceil(C / G) logits through its own (E, K) matrix; the first C of
the G * K outputs, plus a bias per class, are the logits.

Zero-shot mode (the authors' ``MLDecoder(zsl=1)``, trained by their ``train_zsl_nus.py``): the queries are
``relu(Linear(Q, E)(class_embeddings))``, one per class, and the group fully-connected layer is a single
(E, 1) matrix plus one bias shared by every query, so the class set is whatever embeddings are given:
seen classes in training, unseen (ZSL) or seen + unseen (GZSL) at evaluation. One decoder serves both
query sources.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plbench.heads.gap import tokens_from_features


class MLDecoderOutput(NamedTuple):
    """What :meth:`MLDecoderHead.decode` returns.

    Attributes:
        logits: (B, C).
        memory: (B, L, E), the spatial tokens after the input projection and ReLU, i.e. what the
            queries attend to. ``memory.mean(1)`` is CLIP-Decoder's image embedding for its alignment loss
            (its ``MLDecoder.forward`` returns ``embedding_spatial_786.mean(1)``).
        hidden: (B, G, E), the decoder's output per query (before the group fully-connected layer);
            G = C in zero-shot mode.
    """

    logits: Tensor
    memory: Tensor
    hidden: Tensor


class MLDecoderHead(nn.Module):
    """ML-Decoder classification head.

    Args:
        in_features: D, the backbone's ``num_features``.
        num_classes: C.
        num_groups: G, the number of queries; a value above C is capped at C, and a negative value
            (``-1``) means 100, both as in the authors' code (so the same settings give the same
            parameter count). Full decoding (one query per class) is ``num_groups=num_classes``.
        embed_dim: E, the decoder width.
        num_heads: attention heads (E must be divisible by it).
        ff_dim: F, the feed-forward width.
        dropout: dropout probability of the decoder layer (residuals, attention weights, feed-forward).
        query_embeddings: optional float (C, Q) class embeddings (e.g. word2vec or CLIP text vectors)
            for the zero-shot mode of the ML-Decoder paper: the queries are ``relu(Linear(Q, E)(emb))``
            (no projection when Q == E), one per class, and a single (E, 1) classifier plus one bias is
            shared by all classes, so new classes need only new embeddings: set them
            (:meth:`set_query_embeddings`) or pass them to one call (``forward(x, class_embeddings)``).
            ``num_groups`` is then ignored. The embeddings are a buffer (saved in the state dict); a state
            dict holding another number of classes loads and replaces them.
    Shapes:
        (B, D, H, W) or (B, L, D) features -> (B, C) logits (float32 unless run under autocast), C the
        number of class embeddings in use in zero-shot mode. :meth:`decode` also returns the tokens.
    Raises:
        ValueError: non-positive sizes, a bad ``num_groups``, ``embed_dim % num_heads != 0`` or
            ``query_embeddings`` not of shape (C, Q).
    """

    #: attends over positions: a linear-protocol run needs a feature store with tokens
    needs_spatial_features: bool = True

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_groups: int = 100,
        embed_dim: int = 768,
        num_heads: int = 8,
        ff_dim: int = 2048,
        dropout: float = 0.1,
        query_embeddings: Tensor | Any | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("num_classes", num_classes),
                            ("embed_dim", embed_dim), ("num_heads", num_heads), ("ff_dim", ff_dim)):
            if int(value) < 1:
                raise ValueError(f"expected {name} >= 1, but got {value}")
        if embed_dim % num_heads:
            raise ValueError(f"expected embed_dim divisible by num_heads, but got {embed_dim} and {num_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"expected dropout in [0, 1), but got {dropout}")
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        self.embed_dim, self.num_heads, self.dropout = int(embed_dim), int(num_heads), float(dropout)
        self.zero_shot = query_embeddings is not None

        self.embed = nn.Linear(self.in_features, self.embed_dim)
        if self.zero_shot:
            emb = torch.as_tensor(query_embeddings, dtype=torch.float32)
            self._check_embeddings(emb, self.num_classes)
            self.num_groups, self.group_size = self.num_classes, 1
            self.register_buffer("query_embeddings", emb.clone())
            self.query_proj = (
                nn.Identity() if emb.shape[1] == self.embed_dim else nn.Linear(emb.shape[1], self.embed_dim)
            )
            self.query = None
        else:
            if num_groups == 0:
                raise ValueError(f"expected num_groups >= 1 or negative (100 groups), but got {num_groups}")
            groups = min(100 if num_groups < 0 else int(num_groups), self.num_classes)
            self.num_groups = groups
            self.group_size = math.ceil(self.num_classes / groups)
            # fixed queries: a parameter with requires_grad=False, as in the original (same count)
            self.query = nn.Parameter(torch.empty(groups, self.embed_dim), requires_grad=False)

        e = self.embed_dim
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(e), nn.LayerNorm(e), nn.LayerNorm(e)
        self.q_proj = nn.Linear(e, e)
        self.kv_proj = nn.Linear(e, 2 * e)
        self.out_proj = nn.Linear(e, e)
        self.ff1 = nn.Linear(e, ff_dim)
        self.ff2 = nn.Linear(ff_dim, e)
        if self.zero_shot:
            self.group_weight = nn.Parameter(torch.empty(e, 1))
            self.group_bias = nn.Parameter(torch.empty(1))
        else:
            self.group_weight = nn.Parameter(torch.empty(self.num_groups, e, self.group_size))
            self.group_bias = nn.Parameter(torch.empty(self.num_classes))
        self.reset_parameters()

    @staticmethod
    def _check_embeddings(emb: Tensor, num_classes: int | None) -> None:
        if emb.ndim != 2 or (num_classes is not None and emb.shape[0] != num_classes):
            raise ValueError(
                f"expected query_embeddings of shape ({num_classes if num_classes else 'C'}, Q), "
                f"but got {tuple(emb.shape)}"
            )

    def reset_parameters(self) -> None:
        """The original's initialisation (``nn.MultiheadAttention``, ``nn.Embedding``, xavier group FC)."""
        e = self.embed_dim
        if self.query is not None:
            nn.init.normal_(self.query)
        # nn.MultiheadAttention draws its packed (3E, E) input projection with xavier_uniform
        bound = math.sqrt(6.0 / (e + 3 * e))
        for lin in (self.q_proj, self.kv_proj):
            nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.out_proj.bias)
        nn.init.xavier_normal_(self.group_weight)
        nn.init.zeros_(self.group_bias)

    def set_query_embeddings(self, query_embeddings: Tensor | Any) -> None:
        """Zero-shot mode only: replace the class embeddings (C', Q), e.g. with unseen classes.

        Raises:
            ValueError: not in zero-shot mode, or not of shape (C', Q) with the built width Q.
        """
        emb = self._checked_embeddings(query_embeddings)
        self.query_embeddings = emb.clone()
        self.num_classes = self.num_groups = emb.shape[0]

    def _checked_embeddings(self, query_embeddings: Tensor | Any) -> Tensor:
        if not self.zero_shot:
            raise ValueError("class embeddings need a head built with query_embeddings (zero-shot mode)")
        old = self.query_embeddings
        emb = torch.as_tensor(query_embeddings, dtype=old.dtype, device=old.device)
        self._check_embeddings(emb, None)
        if emb.shape[1] != old.shape[1]:
            raise ValueError(f"expected query_embeddings of width {old.shape[1]}, but got {emb.shape[1]}")
        if emb.shape[0] < 1:
            raise ValueError("expected at least one class embedding, but got 0 rows")
        return emb

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # a zero-shot checkpoint holds the embeddings of the classes it was last used with (seen or
        # unseen): take its class count instead of failing on a shape mismatch
        key = prefix + "query_embeddings"
        if self.zero_shot and key in state_dict:
            saved = state_dict[key]
            if saved.ndim == 2 and saved.shape[1] == self.query_embeddings.shape[1]:
                self.set_query_embeddings(saved)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _queries(self, class_embeddings: Tensor | None = None) -> Tensor:
        if self.zero_shot:
            emb = self.query_embeddings if class_embeddings is None else self._checked_embeddings(class_embeddings)
            return F.relu(self.query_proj(emb))
        if class_embeddings is not None:
            raise ValueError("class embeddings need a head built with query_embeddings (zero-shot mode)")
        return self.query

    def forward(self, features: Tensor, class_embeddings: Tensor | None = None) -> Tensor:
        """(B, D, H, W) or (B, L, D) features -> (B, C) logits.

        Args:
            features: backbone output.
            class_embeddings: zero-shot mode only, optional float (C', Q): score these classes in this
                call (C = C') instead of the stored embeddings, which stay as they are.
        Raises:
            ValueError: a bad feature rank, or class embeddings outside zero-shot mode / of the wrong width.
        """
        return self.decode(features, class_embeddings).logits

    def decode(self, features: Tensor, class_embeddings: Tensor | None = None) -> MLDecoderOutput:
        """As :meth:`forward`, also returning the memory tokens (B, L, E) and query outputs (B, G, E)."""
        tokens = tokens_from_features(features)  # (B, L, D)
        memory = F.relu(self.embed(tokens))  # (B, L, E)
        b, length, e = memory.shape
        h, d = self.num_heads, e // self.num_heads
        p = self.dropout if self.training else 0.0

        queries = self._queries(class_embeddings)  # (G, E)
        if p > 0:
            tgt = queries.unsqueeze(0).expand(b, -1, -1)  # per-sample dropout masks, as the original
            tgt = tgt + F.dropout(tgt, p, True)
        else:
            tgt = (queries + queries).unsqueeze(0)  # (1, G, E): identical for every sample
        tgt = self.norm1(tgt)
        g = tgt.shape[1]

        q = self.q_proj(tgt).view(tgt.shape[0], g, h, d).transpose(1, 2).expand(b, -1, -1, -1)  # (B, h, G, d)
        # unbind (not kv[0], kv[1]): its backward stacks the two gradients instead of zero-filling twice
        k, v = self.kv_proj(memory).view(b, length, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, L, d)
        attn = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, h, G, d)
        attn = attn.transpose(1, 2).reshape(b, g, e)
        tgt = self.norm2(tgt + F.dropout(self.out_proj(attn), p, self.training))  # (B, G, E)
        ff = self.ff2(F.dropout(F.relu(self.ff1(tgt)), p, self.training))
        tgt = self.norm3(tgt + F.dropout(ff, p, self.training))  # (B, G, E)
        return MLDecoderOutput(self._group_fc(tgt), memory, tgt)

    def _group_fc(self, hidden: Tensor) -> Tensor:
        """(B, G, E) -> (B, C): one batched product over the groups instead of a loop."""
        b = hidden.shape[0]
        if self.zero_shot:
            return (hidden @ self.group_weight).squeeze(-1) + self.group_bias  # shared (E, 1) classifier
        out = torch.bmm(hidden.transpose(0, 1), self.group_weight)  # (G, B, K)
        out = out.transpose(0, 1).reshape(b, self.num_groups * self.group_size)
        return out[:, : self.num_classes] + self.group_bias

    def extra_repr(self) -> str:
        mode = "zero-shot" if self.zero_shot else f"groups={self.num_groups}, group_size={self.group_size}"
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, {mode}, "
                f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}")

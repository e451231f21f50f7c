"""Heads: shapes, parameter counts vs the original ML-Decoder, equivalence with a reference forward
(nn.MultiheadAttention path + per-group loop), autocast and torch.compile on CPU."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plbench.heads import HEADS, GAPHead, MLDecoderHead, create_head, list_heads


def original_ml_decoder_params(d: int, c: int, groups: int, e: int = 768, ff: int = 2048) -> int:
    """Parameter count of the authors' MLDecoder(num_classes=c, num_of_groups=groups,
    decoder_embedding=e, initial_num_features=d), read off its definition:
    embed_standart Linear(d, e); query_embed Embedding(G, e) (frozen, still a parameter);
    one TransformerDecoderLayerOptimal: MultiheadAttention (in_proj 3e x e + 3e, out_proj e x e + e),
    linear1 (e x ff + ff), linear2 (ff x e + e), norm1-3 (2e each); duplicate_pooling G x e x K with
    K = int(c / G + 0.999); duplicate_pooling_bias c. G = min(groups, c)."""
    g = min(groups, c)
    k = int(c / g + 0.999)
    embed = d * e + e
    query = g * e
    attn = 3 * e * e + 3 * e + e * e + e
    ffn = e * ff + ff + ff * e + e
    norms = 3 * 2 * e
    group_fc = g * e * k + c
    return embed + query + attn + ffn + norms + group_fc


def count(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@pytest.mark.parametrize("c", [80, 1203, 9605])
@pytest.mark.parametrize("groups", [-1, 100, "C"])
def test_ml_decoder_shape_and_param_count(c, groups):
    g = c if groups == "C" else groups
    head = MLDecoderHead(2048, c, num_groups=g)
    expected_groups = min(100, c) if g == -1 else min(g, c)  # the original maps negatives to 100
    assert head.num_groups == expected_groups
    assert head.group_size == math.ceil(c / expected_groups)
    assert count(head) == original_ml_decoder_params(2048, c, expected_groups)
    # the queries are fixed: trainable count excludes them, as in the original
    assert count(head, trainable_only=True) == count(head) - expected_groups * 768
    if expected_groups <= 1203:  # full decoding of 9605 classes costs ~100 GFLOP per image: see below
        head.eval()
        with torch.no_grad():
            assert head(torch.randn(2, 2048, 3, 3)).shape == (2, c)
            assert head(torch.randn(2, 5, 2048)).shape == (2, c)


def test_full_decoding_9605_shape_small_width():
    head = MLDecoderHead(64, 9605, num_groups=9605, embed_dim=16, num_heads=2, ff_dim=16).eval()
    assert head.num_groups == 9605 and head.group_size == 1
    with torch.no_grad():
        assert head(torch.randn(2, 64, 2, 2)).shape == (2, 9605)


def test_known_param_count_coco_default():
    # COCO, TResNet/ResNet-50 features, 100 groups -> 80 groups of 1 (hand-evaluated formula)
    n = 2048 * 768 + 768 + 80 * 768 + 4 * 768 * 768 + 4 * 768 + 2 * 768 * 2048 + 2048 + 768 + 6 * 768 + 80 * 768 + 80
    assert n == 7_212_112
    assert count(MLDecoderHead(2048, 80)) == n


def reference_forward(head: MLDecoderHead, features: torch.Tensor) -> torch.Tensor:
    """Eval-mode forward written the original's way: (L, B, E) layout, F.multi_head_attention_forward
    with the packed input projection, and a Python loop over groups for the group FC."""
    x = features.flatten(2).transpose(1, 2) if features.ndim == 4 else features
    memory = F.relu(F.linear(x, head.embed.weight, head.embed.bias)).transpose(0, 1)  # (L, B, E)
    b = memory.shape[1]
    q = head._queries()
    tgt = q.unsqueeze(1).expand(-1, b, -1)
    tgt = head.norm1(tgt + tgt)
    in_w = torch.cat([head.q_proj.weight, head.kv_proj.weight])
    in_b = torch.cat([head.q_proj.bias, head.kv_proj.bias])
    attn, _ = F.multi_head_attention_forward(
        tgt, memory, memory, head.embed_dim, head.num_heads, in_w, in_b, None, None, False, 0.0,
        head.out_proj.weight, head.out_proj.bias, training=False, need_weights=False,
    )
    tgt = head.norm2(tgt + attn)
    tgt = head.norm3(tgt + head.ff2(F.relu(head.ff1(tgt))))
    hid = tgt.transpose(0, 1)  # (B, G, E)
    if head.zero_shot:
        return torch.stack([hid[:, i] @ head.group_weight[:, 0] for i in range(hid.shape[1])], 1) + head.group_bias
    out = torch.zeros(b, head.num_groups, head.group_size, dtype=hid.dtype)
    for i in range(head.num_groups):
        out[:, i, :] = hid[:, i, :] @ head.group_weight[i]
    return out.flatten(1)[:, : head.num_classes] + head.group_bias


@pytest.mark.parametrize("c, groups", [(10, 3), (10, -1), (7, 100), (12, 4)])
def test_ml_decoder_matches_reference_forward(c, groups):
    torch.manual_seed(0)
    head = MLDecoderHead(16, c, num_groups=groups, embed_dim=32, num_heads=4, ff_dim=24).double().eval()
    with torch.no_grad():
        head.group_bias.normal_()  # non-zero biases so their placement is checked
        for feats in (torch.randn(3, 16, 2, 3, dtype=torch.float64), torch.randn(3, 5, 16, dtype=torch.float64)):
            torch.testing.assert_close(head(feats), reference_forward(head, feats), rtol=1e-10, atol=1e-12)


def test_zero_shot_queries():
    torch.manual_seed(1)
    emb = np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32)
    head = MLDecoderHead(16, 6, embed_dim=32, num_heads=4, ff_dim=24, query_embeddings=emb).double().eval()
    # D*E+E + Q*E+E (projection) + decoder + E + 1, no per-class parameters
    e, d, q, ff = 32, 16, 10, 24
    assert count(head) == d * e + e + q * e + e + 4 * e * e + 4 * e + 2 * e * ff + ff + e + 6 * e + e + 1
    feats = torch.randn(2, 16, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(head(feats), reference_forward(head, feats), rtol=1e-10, atol=1e-12)
        out6 = head(feats)
        head.set_query_embeddings(np.concatenate([emb, emb[:2]]))  # two "new" classes
        out8 = head(feats)
    assert out8.shape == (2, 8)
    torch.testing.assert_close(out8[:, :6], out6)  # classes are independent queries
    torch.testing.assert_close(out8[:, 6:], out6[:, :2])
    with pytest.raises(ValueError, match=r"query_embeddings of shape \(5, Q\)"):
        MLDecoderHead(16, 5, embed_dim=32, num_heads=4, query_embeddings=emb)
    with pytest.raises(ValueError, match="zero-shot"):
        MLDecoderHead(16, 5, embed_dim=32, num_heads=4).set_query_embeddings(emb)


def test_ml_decoder_trains_and_dropout_only_in_train_mode():
    torch.manual_seed(0)
    head = MLDecoderHead(16, 9, num_groups=4, embed_dim=32, num_heads=4, ff_dim=24, dropout=0.5)
    x = torch.randn(4, 16, 2, 2)
    head.train()
    a, b = head(x), head(x)
    assert not torch.equal(a, b)
    a.sum().backward()
    assert head.query.grad is None  # fixed queries
    assert head.group_weight.grad is not None and head.embed.weight.grad is not None
    head.eval()
    with torch.no_grad():
        assert torch.equal(head(x), head(x))


@pytest.mark.parametrize("bad, match", [
    (dict(num_groups=0), "num_groups >= 1 or negative"),
    (dict(embed_dim=30, num_heads=4), "divisible"),
    (dict(dropout=1.0), "dropout"),
])
def test_ml_decoder_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        MLDecoderHead(16, 10, **bad)


def test_bad_feature_rank():
    with pytest.raises(ValueError, match=r"expected features \(B, D, H, W\) or \(B, L, D\), but got shape \(2, 16\)"):
        GAPHead(16, 3)(torch.randn(2, 16))


def test_gap_head():
    head = GAPHead(8, 3)
    x = torch.randn(2, 8, 4, 5)
    torch.testing.assert_close(head(x), head.fc(x.mean(dim=(2, 3))))
    torch.testing.assert_close(head(x.flatten(2).transpose(1, 2)), head(x))
    assert count(head) == 8 * 3 + 3


def test_registry():
    assert {"gap", "ml-decoder"} <= set(list_heads()) == set(HEADS)
    head = create_head("ml-decoder", in_features=64, num_classes=5, num_groups=2, embed_dim=32, num_heads=4)
    assert isinstance(head, MLDecoderHead) and head.num_groups == 2
    from plbench.errors import InputError

    with pytest.raises(InputError, match="unknown head 'mlp'; available: boostlu, gap, ml-decoder"):
        create_head("mlp", 4, 2)  # plbench.heads.resolve_head: heads are open (tests/test_heads_open.py)
    with pytest.raises(ValueError, match="bad arguments for head 'gap'"):
        create_head("gap", 4, 2, num_groups=3)


def test_ml_decoder_bf16_autocast_cpu():
    torch.manual_seed(0)
    head = MLDecoderHead(64, 20, num_groups=6, embed_dim=32, num_heads=4, ff_dim=48).eval()
    x = torch.randn(3, 64, 4, 4)
    with torch.no_grad():
        ref = head(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = head(x)
    assert out.shape == (3, 20)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.1)
    head.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(x).float().square().mean()
    loss.backward()
    assert torch.isfinite(head.group_weight.grad).all()


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="torch.compile's CPU backend (inductor) needs a C compiler")
def test_ml_decoder_torch_compile_cpu():
    torch.manual_seed(0)
    head = MLDecoderHead(32, 10, num_groups=3, embed_dim=16, num_heads=2, ff_dim=16).eval()
    x = torch.randn(2, 32, 3, 3)
    compiled = torch.compile(head)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), head(x), rtol=1e-4, atol=1e-5)


# Authors' code: Alibaba-MIIL/ML_Decoder, src_files/ml_decoder/ml_decoder.py, MLDecoder(num_classes=10,
# num_of_groups=4, decoder_embedding=32, initial_num_features=16) (zsl=0) in float64, eval mode, with the
# weights below copied in (query_embed.weight <- query, the other names as in tests/test_zsl_heads.py) and
# the one-layer nn.TransformerDecoder called as its layer (current torch's TransformerDecoder.forward reads
# layers[0].self_attn, absent from their layer). Their logits on the features below:
REF_GROUPED_LOGITS = [
    [0.3508048318711443, -0.024196143665672604, 0.24365339772109965, -0.02948713892082719, -0.7883387313245581,
     -0.4908738026006234, -0.10040422886469247, -0.2312943996989941, -0.28055870897461965, 0.03800165846461839],
    [0.19734106957400865, -0.09704653134486245, 0.31314572414051073, -0.1302957587917001, -0.7831414785721555,
     -0.3694625321339109, -0.18769858525537353, -0.16236946356118698, -0.29252934270630176, 0.1742880917173978],
]


def test_grouped_ml_decoder_matches_authors_code():
    head = MLDecoderHead(16, 10, num_groups=4, embed_dim=32, num_heads=8, ff_dim=2048).double()
    assert head.group_size == 3  # 4 groups of 3 outputs, the last 2 dropped
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.2)
        feats = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(21), dtype=torch.float64)
        out = head.eval()(feats)
    torch.testing.assert_close(out, torch.tensor(REF_GROUPED_LOGITS, dtype=torch.float64), rtol=1e-9, atol=1e-12)

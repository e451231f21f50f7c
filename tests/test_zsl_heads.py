"""Zero-shot ML-Decoder (MLDecoderHead with class embeddings as queries): parity with the authors' code,
class count changed between training and evaluation, per-call embeddings, state dicts, determinism."""

from __future__ import annotations

import pytest
import torch

from plbench.heads import MLDecoderHead, MLDecoderOutput, create_head

D, E, Q, C, CU = 16, 32, 300, 5, 3


def _parity_setup() -> tuple[MLDecoderHead, dict[str, torch.Tensor]]:
    """The head and inputs behind the reference numbers below: every parameter drawn from one generator
    (so the numbers do not depend on the init code), float64, eval mode."""
    g = torch.Generator().manual_seed(20)
    data = {
        "seen": torch.randn(C, Q, generator=g, dtype=torch.float64),
        "unseen": torch.randn(CU, Q, generator=g, dtype=torch.float64),
        "feats": torch.randn(2, D, 2, 3, generator=g, dtype=torch.float64),
        "weights": torch.randn(2, C, generator=g, dtype=torch.float64),
    }
    head = MLDecoderHead(D, C, embed_dim=E, num_heads=8, ff_dim=2048, query_embeddings=data["seen"]).double()
    head.set_query_embeddings(data["seen"])  # the constructor stores float32; keep all 64 bits
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.2)
    return head.eval(), data


# Reference numbers from the authors' code: Alibaba-MIIL/ML_Decoder, src_files/ml_decoder/ml_decoder.py,
# MLDecoder(num_classes=5, num_of_groups=5, decoder_embedding=32, initial_num_features=16, zsl=1) in float64,
# eval mode, the weights of _parity_setup copied in (embed_standart <- embed, wordvec_proj <- query_proj,
# multihead_attn.in_proj <- [q_proj; kv_proj], out_proj, linear1/2 <- ff1/2, norm1-3, duplicate_pooling(_bias)
# <- group_weight/bias), decoder.query_embed set to the class embeddings as their update_wordvecs does. Shim
# to run it on torch 2.x: the one-layer nn.TransformerDecoder is called as its layer (current
# TransformerDecoder.forward reads layers[0].self_attn, which their layer lacks). Gradients of
# sum(logits * weights) as (sum, L2 norm) per parameter, in plbench's names.
REF_SEEN = [[-0.6527812044185488, -0.6420355322304089, -0.6085573064316766, -0.6910079357859367, -0.6184781128228197],
            [-0.6282665742616484, -0.6275231238053691, -0.5887871220191471, -0.641181296352239, -0.6332990209953084]]
REF_UNSEEN = [[-0.6735637972553651, -0.7002023262692982, -0.6052704098524996],
              [-0.670602178636591, -0.6951079562481353, -0.5707360627628867]]
REF_INPUT_GRAD = (0.018545525952383304, 0.13978304703234493)
REF_GRADS = {
    "embed.weight": (-0.2739874070967635, 0.8124286362925257),
    "query_proj.weight": (0.18028593299344464, 0.8989651781657272),
    "q_proj.weight": (0.09689092394785118, 0.07914948959280313),
    "kv_proj.weight": (-2.6057205605906244, 1.2905414175196674),
    "ff1.weight": (0.18622846909930035, 3.0707091258973644),
    "norm1.weight": (0.07783109867267793, 0.5444520103067476),
    "group_weight": (-4.340415878092101, 4.576732370878833),
    "group_bias": (-2.905437628531826, 2.905437628531826),
}
# CLIP-Decoder's fork (aliman80/ML_Decoder, same file, MLDecoder.forward) returns
# (logits, embedding_spatial_786.mean(1)); same weights and inputs, seen classes: the image embedding's
# sum and its first row's first four entries.
REF_IMAGE_EMB_SUM = 23.769270416588654
REF_IMAGE_EMB_00_04 = [0.19470464328763804, 0.6461600648325071, 0.04837675972037306, 0.6869349337912031]


def close(a, b) -> None:
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                               rtol=1e-9, atol=1e-12)


def test_zero_shot_logits_and_gradients_match_authors_code():
    head, data = _parity_setup()
    x = data["feats"].clone().requires_grad_(True)
    logits = head(x)
    close(logits, REF_SEEN)
    (logits * data["weights"]).sum().backward()
    close((x.grad.sum(), x.grad.norm()), REF_INPUT_GRAD)
    params = dict(head.named_parameters())
    for name, (total, norm) in REF_GRADS.items():
        close((params[name].grad.sum(), params[name].grad.norm()), (total, norm))


def test_zero_shot_unseen_and_gzsl_match_authors_code():
    head, data = _parity_setup()
    with torch.no_grad():
        close(head(data["feats"], data["unseen"]), REF_UNSEEN)  # per call: stored embeddings untouched
        assert head.num_classes == C and torch.equal(head.query_embeddings, data["seen"])
        head.set_query_embeddings(torch.cat([data["seen"], data["unseen"]]))  # GZSL: seen then unseen
        gzsl = head(data["feats"])
    assert head.num_classes == C + CU and gzsl.shape == (2, C + CU)
    ref = torch.cat([torch.tensor(REF_SEEN, dtype=torch.float64), torch.tensor(REF_UNSEEN, dtype=torch.float64)], 1)
    close(gzsl, ref)


def test_decode_memory_mean_is_clip_decoders_image_embedding():
    head, data = _parity_setup()
    with torch.no_grad():
        out = head.decode(data["feats"])
    assert isinstance(out, MLDecoderOutput)
    assert out.logits.shape == (2, C) and out.memory.shape == (2, 6, E) and out.hidden.shape == (2, C, E)
    torch.testing.assert_close(out.logits, head(data["feats"]), rtol=0, atol=0)
    image_emb = out.memory.mean(1)
    close(image_emb.sum(), REF_IMAGE_EMB_SUM)
    close(image_emb[0, :4], REF_IMAGE_EMB_00_04)
    # tokens in, same numbers: (B, D, H, W) and (B, H*W, D) are one input
    torch.testing.assert_close(head.decode(data["feats"].flatten(2).transpose(1, 2)).memory, out.memory)


def test_class_count_changes_between_training_and_evaluation():
    torch.manual_seed(0)
    seen, unseen = torch.randn(6, 12), torch.randn(4, 12)
    head = MLDecoderHead(8, 6, embed_dim=16, num_heads=2, ff_dim=16, query_embeddings=seen)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    x, y = torch.randn(5, 8, 3, 3), torch.randint(0, 2, (5, 6)).float()
    head.train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x), y)
    loss.backward()
    opt.step()
    assert head.query_proj.weight.grad.abs().sum() > 0  # the projection of the embeddings is trained
    head.eval()
    with torch.no_grad():
        zsl = head(x, unseen)
        head.set_query_embeddings(unseen)
        assert torch.equal(head(x), zsl) and zsl.shape == (5, 4)
        # one class's score depends on its own embedding only: rows reordered, columns follow
        perm = torch.tensor([2, 0, 3, 1])
        torch.testing.assert_close(head(x, unseen[perm]), zsl[:, perm], rtol=1e-6, atol=1e-6)
        single = head(x, unseen[1:2])
    torch.testing.assert_close(single[:, 0], zsl[:, 1], rtol=1e-6, atol=1e-6)


def test_class_embeddings_per_call_carry_gradients():
    # a text encoder trained jointly hands over embeddings that require grad
    torch.manual_seed(0)
    head = MLDecoderHead(8, 3, embed_dim=16, num_heads=2, ff_dim=16, query_embeddings=torch.randn(3, 10)).eval()
    emb = torch.randn(5, 10, requires_grad=True)
    head(torch.randn(2, 8, 2, 2), emb).sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_state_dict_with_another_class_count_loads():
    torch.manual_seed(0)
    seen, unseen = torch.randn(6, 12), torch.randn(4, 12)
    a = MLDecoderHead(8, 6, embed_dim=16, num_heads=2, ff_dim=16, query_embeddings=seen).eval()
    a.set_query_embeddings(unseen)
    b = MLDecoderHead(8, 6, embed_dim=16, num_heads=2, ff_dim=16, query_embeddings=seen).eval()
    b.load_state_dict(a.state_dict())
    assert b.num_classes == 4 and torch.equal(b.query_embeddings, unseen)
    x = torch.randn(2, 8, 2, 2)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    with pytest.raises(RuntimeError, match="query_embeddings"):  # another width is a different model
        MLDecoderHead(8, 6, embed_dim=16, num_heads=2, ff_dim=16,
                      query_embeddings=torch.randn(6, 11)).load_state_dict(a.state_dict())


def test_zero_shot_head_is_deterministic():
    emb = torch.randn(5, 12, generator=torch.Generator().manual_seed(3))
    x = torch.randn(3, 8, 2, 2, generator=torch.Generator().manual_seed(4))

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(11)
        head = MLDecoderHead(8, 5, embed_dim=16, num_heads=2, ff_dim=16, dropout=0.3, query_embeddings=emb)
        train_out = head(x)  # dropout draws from the seeded generator
        with torch.no_grad():
            return train_out.detach(), head.eval()(x)

    (t1, e1), (t2, e2) = run(), run()
    assert torch.equal(t1, t2) and torch.equal(e1, e2)
    assert not torch.equal(t1, e1)  # dropout was on in training mode


def test_zero_shot_errors_and_registry():
    head = create_head("ml-decoder", 8, 4, embed_dim=16, num_heads=2, query_embeddings=torch.randn(4, 10))
    assert isinstance(head, MLDecoderHead) and head.zero_shot and head.num_groups == 4
    x = torch.randn(1, 8, 2, 2)
    with pytest.raises(ValueError, match="width 10, but got 9"):
        head(x, torch.randn(3, 9))
    with pytest.raises(ValueError, match=r"shape \(C, Q\), but got \(10,\)"):
        head(x, torch.randn(10))
    with pytest.raises(ValueError, match="at least one class embedding"):
        head.set_query_embeddings(torch.randn(0, 10))
    with pytest.raises(ValueError, match="zero-shot mode"):
        MLDecoderHead(8, 4, embed_dim=16, num_heads=2)(x, torch.randn(4, 10))

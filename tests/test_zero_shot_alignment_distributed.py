"""CLIP-Decoder's alignment term under torchrun: the in-batch loss is the global batch's, as in one process.

Two gloo processes each hold a share of a 5-image batch (3 + 2, and 5 + 0: an empty share), gather the
pooled memory tokens with gradients and the images' dataset indices, and backpropagate the term at the
trainer's loss scale; the gradients DDP would average then equal one process's on the whole batch. The
end-to-end test trains a zero-shot ML-Decoder on a token store with ``--alignment-weight 30`` under
``torchrun --nproc-per-node 2`` and compares it with one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict

import numpy as np
import pytest
import torch

from distributed_support import PLBENCH, TORCHRUN, run
from test_zero_shot_alignment import _config, setup  # noqa: F401  (setup: the module's token-store fixture)

pytestmark = pytest.mark.slow

CAPTIONS = ["a photo of sky", "a photo of dog and sky", "a photo of ", "a photo of cat", "a photo of sky and cat"]

WORKER = textwrap.dedent('''
    import json, sys, torch, torch.distributed as dist
    from plbench.engine.zero_shot_alignment import AlignmentTerm, CaptionTable
    from plbench.heads.ml_decoder import MLDecoderHead
    rank, world, init, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sizes, captions = json.loads(sys.argv[5]), json.loads(sys.argv[6])
    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)
    head = MLDecoderHead(8, 3, embed_dim=16, num_heads=2, ff_dim=32, dropout=0.0, query_embeddings=torch.randn(3, 5))
    table = CaptionTable(captions, "random", torch.device("cpu"))
    scale = float(world)  # the trainer's loss_scale for a summed classification loss
    term = AlignmentTerm(head, table, 0.7, 1.0, seed=3, loss_scale=scale)
    torch.manual_seed(1)
    x, positions = torch.randn(5, 4, 8), torch.tensor([4, 0, 3, 1, 2])
    lo = sum(sizes[:rank])
    mine = slice(lo, lo + sizes[rank])
    logits = head(x[mine])
    loss = term.combine(logits.sum() * 0.0, positions[mine])
    (loss * scale).backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in head.named_parameters()}
    torch.save({"loss": loss.detach(), "grads": grads}, out)
    if world > 1:
        dist.barrier()  # both processes past the backward's collectives before the group goes (gloo aborted once)
        dist.destroy_process_group()
''')


def _run_workers(tmp_path, sizes):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    init = f"file://{tmp_path / 'rendezvous'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    world = len(sizes)
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(world), init, str(tmp_path / f"r{r}.pt"),
                               json.dumps(sizes), json.dumps(CAPTIONS)], env=env, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
    return [torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in range(world)]


@pytest.mark.parametrize("sizes", [[3, 2], [5, 0], [0, 5]])
def test_two_processes_train_with_the_global_batch_loss(tmp_path, sizes):
    (tmp_path / "one").mkdir()
    (one,) = _run_workers(tmp_path / "one", [5])
    ranks = _run_workers(tmp_path, sizes)
    # every process computes the loss of all 5 images, at weight 0.7 / loss_scale
    for r in ranks:
        torch.testing.assert_close(r["loss"] * 2, one["loss"], rtol=1e-6, atol=1e-7)
    assert one["loss"] > 0
    # DDP's average of the processes' gradients is one process's gradient of the whole batch
    for name, want in one["grads"].items():
        got = (ranks[0]["grads"][name] + ranks[1]["grads"][name]) / 2
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
    assert one["grads"]["embed.weight"].abs().sum() > 0  # the term reaches the decoder's memory


@pytest.mark.parametrize("trainable", [False, True])
def test_torchrun_alignment_run_equals_one_process(setup, tmp_path, trainable):
    """A zero-shot ML-Decoder on a token store (summed P-ASL: loss_scale 2 under two processes), alignment
    weight 30 (large enough to move the decoder next to the summed P-ASL), dropout 0: two processes give one
    process's scores; with --alignment-trainable the learnt projections and temperature (averaged over the
    processes) also equal one process's."""
    results = {}
    for name, launcher in (("one", PLBENCH), ("two", TORCHRUN)):
        cfg = _config(setup, tmp_path / name, alignment_weight=30.0, lr=1e-2, alignment_trainable=trainable,
                      epochs=2, batch_size=12, run_name="r",
                      head_options={"embed_dim": 32, "num_heads": 2, "ff_dim": 64, "dropout": 0.0})
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(asdict(cfg)))
        results[name] = run([*launcher, "train", "--config", str(path)], tmp_path)
    from plbench.artifacts.runs import RunFolder

    a, b = RunFolder(tmp_path / "one" / "r"), RunFolder(tmp_path / "two" / "r")
    assert b.summary()["provenance"]["world_size"] == 2
    assert b.summary()["zero_shot"]["alignment_weight"] == 30.0
    np.testing.assert_allclose(a.predictions()["scores"], b.predictions()["scores"], atol=1e-4)
    assert a.summary()["zero_shot"]["zsl"]["map"] == pytest.approx(b.summary()["zero_shot"]["zsl"]["map"], abs=0.01)
    extra_a = a.load_checkpoint("last", "cpu").get("extra", {})
    extra_b = b.load_checkpoint("last", "cpu").get("extra", {})
    assert ("alignment" in extra_a) is trainable and ("alignment" in extra_b) is trainable
    if trainable:
        learnt_a, learnt_b = extra_a["alignment"], extra_b["alignment"]
        assert set(learnt_a) == set(learnt_b) and learnt_a
        for key in learnt_a:
            torch.testing.assert_close(learnt_b[key], learnt_a[key], rtol=1e-4, atol=1e-5, msg=key)

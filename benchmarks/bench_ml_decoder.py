"""ML-Decoder forward+backward: plbench's head vs the research code's structure, in one run.

The baseline re-implements the authors' computation with the same weights: ``nn.MultiheadAttention``
in the (L, B, E) layout over expanded queries, then the group fully-connected layer as a Python loop
of one matmul per group into a preallocated output. Both run in training mode (dropout on), the loss
is the sum of the logits. Prints per-step times (median of ``--repeats`` after warm-up) and ratios,
plus the largest output difference in eval mode.

    python benchmarks/bench_ml_decoder.py                       # CUDA if available: batch 64, fp32 and bf16
    python benchmarks/bench_ml_decoder.py --device cpu --batch 8
    python benchmarks/bench_ml_decoder.py --dry-run --json out.json   # tiny, CPU, machine-readable rows
"""

from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from _timing import median_time
from plbench.heads import MLDecoderHead


class LoopMLDecoder(nn.Module):
    """The research code's forward, sharing the parameters of an :class:`MLDecoderHead`."""

    def __init__(self, head: MLDecoderHead) -> None:
        super().__init__()
        self.head = head
        e = head.embed_dim
        self.attn = nn.MultiheadAttention(e, head.num_heads, dropout=head.dropout)
        with torch.no_grad():
            self.attn.in_proj_weight.copy_(torch.cat([head.q_proj.weight, head.kv_proj.weight]))
            self.attn.in_proj_bias.copy_(torch.cat([head.q_proj.bias, head.kv_proj.bias]))
            self.attn.out_proj.weight.copy_(head.out_proj.weight)
            self.attn.out_proj.bias.copy_(head.out_proj.bias)
        self.drop = nn.Dropout(head.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hd = self.head
        tokens = x.flatten(2).transpose(1, 2)
        memory = F.relu(hd.embed(tokens), inplace=True)
        b = memory.shape[0]
        tgt = hd.query.unsqueeze(1).expand(-1, b, -1)  # (G, B, E)
        mem = memory.transpose(0, 1)  # (L, B, E)
        tgt = hd.norm1(tgt + self.drop(tgt))
        tgt = hd.norm2(tgt + self.drop(self.attn(tgt, mem, mem)[0]))
        tgt = hd.norm3(tgt + self.drop(hd.ff2(self.drop(F.relu(hd.ff1(tgt))))))
        h = tgt.transpose(0, 1)  # (B, G, E)
        out = torch.zeros(b, hd.num_groups, hd.group_size, device=h.device, dtype=h.dtype)
        for i in range(hd.num_groups):
            out[:, i, :] = torch.matmul(h[:, i, :], hd.group_weight[i])
        logits = out.flatten(1)[:, : hd.num_classes]
        logits += hd.group_bias
        return logits


def time_step(model: nn.Module, x: torch.Tensor, repeats: int, amp: torch.dtype | None) -> float:
    device = x.device

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = model(x)
        out.float().sum().backward()

    return median_time(step, repeats, device, warmup=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="default 64 on CUDA, 8 on CPU")
    ap.add_argument("--classes", type=int, nargs="+", default=[80, 1203, 9605])
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--size", type=int, default=14, help="feature map side (2048 x size x size)")
    ap.add_argument("--repeats", type=int, default=None, help="default 20 on CUDA, 3 on CPU")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice); 1 is steadier on a loaded machine")
    ap.add_argument("--json", default=None, help="also write one row per class count and precision to this file")
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny sizes on the CPU: batch 2, C=80, 4x4 features, 1 repeat")
    args = ap.parse_args()
    if args.dry_run:
        args.device, args.batch, args.classes, args.size, args.repeats = "cpu", 2, [80], 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = args.batch or (64 if device.type == "cuda" else 8)
    repeats = args.repeats or (20 if device.type == "cuda" else 3)
    precisions: list[torch.dtype | None] = [None, torch.bfloat16] if device.type == "cuda" else [None]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# ML-Decoder fwd+bwd: batch {batch}, features 2048x{args.size}x{args.size}, groups {args.groups}, "
          f"{name}, load={os.getloadavg()[0]:.2f}")
    torch.manual_seed(0)
    x = torch.randn(batch, 2048, args.size, args.size, device=device)
    rows = []
    for c in args.classes:
        head = MLDecoderHead(2048, c, num_groups=args.groups).to(device)
        loop = LoopMLDecoder(head).to(device)
        head.eval(), loop.eval()
        with torch.no_grad():
            diff = (head(x[:2]) - loop(x[:2])).abs().max().item()
        head.train(), loop.train()
        for amp in precisions:
            t_loop = time_step(loop, x, repeats, amp)
            t_ours = time_step(head, x, repeats, amp)
            label = "fp32" if amp is None else "bf16 autocast"
            print(f"C={c:5d} G={head.num_groups:3d} K={head.group_size:3d} {label:13s}: loop {t_loop * 1e3:8.1f} ms   "
                  f"plbench {t_ours * 1e3:8.1f} ms   speed-up {t_loop / t_ours:5.2f} x   (eval max |diff| {diff:.1e})")
            rows.append({"classes": c, "groups": head.num_groups, "precision": label, "loop_ms": t_loop * 1e3,
                         "plbench_ms": t_ours * 1e3, "speedup": t_loop / t_ours, "max_abs_diff": diff})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "batch": batch, "size": args.size, "dry_run": args.dry_run, "rows": rows},
                      f, indent=1)


if __name__ == "__main__":
    main()

"""Loss cost: the selective P-ASL vs a training step, and vs the research code's unfused chain.

For each class count: (1) a ResNet-18 (timm, random weights, GAP head) training step, forward+backward
with ``logits.sum()`` as the loss; (2) plbench's selective P-ASL forward+backward on logits of the same
shape (with a prior, clip 0.05); (3) the research code's algorithm for the same loss (float masks,
three log terms, an argsort of all unannotated entries for the top-k). Reports medians and
(2)/(1), the fraction the loss adds to a step (target < 5 %), and (3)/(2).

    python benchmarks/bench_loss.py                           # CPU: batch 32 at 128 px
    python benchmarks/bench_loss.py --device cuda --batch 64 --size 224
"""

from __future__ import annotations

import argparse
import os

import torch

from _timing import median_time
from plbench.losses import PartialAsymmetricLoss


def research_style_pasl(logits, targets, prior, gamma_pos=0.0, gamma_neg=3.0, gamma_unann=4.0, clip=0.05,
                        likelihood_topk=5, prior_threshold=0.5):
    """The CSL authors' computation order, re-implemented: every op materialised separately."""
    t_pos = (targets == 1).float()
    t_neg = (targets == 0).float()
    t_unann = (targets == -1).float()
    xs_pos = torch.sigmoid(logits)
    xs_neg = (1.0 - xs_pos + clip).clamp(max=1)
    weights = torch.ones_like(logits)
    weights[:, prior > prior_threshold] = 0
    weights = (weights + (targets != -1).float()).bool().float()
    with torch.no_grad():
        flat_t = targets.flatten()
        cand = torch.where(flat_t == -1)[0]
        order = torch.argsort(xs_neg.flatten()[cand])
        weights.view(-1)[cand[order[: likelihood_topk * logits.shape[0]]]] = 0
    bce = (t_pos * torch.log(xs_pos.clamp(min=1e-8)) + t_neg * torch.log(xs_neg.clamp(min=1e-8))
           + t_unann * torch.log(xs_neg.clamp(min=1e-8)))
    with torch.no_grad():
        w = torch.pow(1 - xs_pos * t_pos - xs_neg * (t_neg + t_unann),
                      gamma_pos * t_pos + gamma_neg * t_neg + gamma_unann * t_unann)
    return -(bce * w * weights).sum()


def main() -> None:
    import timm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--classes", type=int, nargs="+", default=[80, 1203, 9605])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice); 1 is steadier on a loaded machine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"# loss cost: resnet18, batch {args.batch}, {args.size} px, {device}, "
          f"threads {torch.get_num_threads()}, load={os.getloadavg()[0]:.2f}")
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    for c in args.classes:
        model = timm.create_model("resnet18", num_classes=c).to(device).train()

        def step() -> None:
            model.zero_grad(set_to_none=True)
            model(images).sum().backward()

        t_step = median_time(step, args.repeats, device)
        logits = torch.randn(args.batch, c, generator=g).to(device).requires_grad_(True)
        targets = torch.randint(-1, 2, (args.batch, c), generator=g).to(device)
        prior = torch.rand(c, generator=g).to(device)
        loss_fn = PartialAsymmetricLoss(mode="selective", clip=0.05, prior=prior, validate=False).to(device)

        def ours() -> None:
            logits.grad = None
            loss_fn(logits, targets).backward()

        def research() -> None:
            logits.grad = None
            research_style_pasl(logits, targets, prior).backward()

        t_ours = median_time(ours, args.repeats * 4, device)
        t_research = median_time(research, args.repeats * 4, device)
        print(f"C={c:5d}: step {t_step * 1e3:8.1f} ms   selective P-ASL {t_ours * 1e3:7.2f} ms "
              f"({100 * t_ours / t_step:5.2f} % of a step)   research chain {t_research * 1e3:7.2f} ms "
              f"({t_research / t_ours:4.2f} x ours)")


if __name__ == "__main__":
    main()

"""What each partial-label method adds to a training step, against AN on the same data, in one run.

The step is the linear protocol's: a linear head on fixed features (float32 (N, D), drawn once, seeded),
single positive labels (one positive per image, the rest unknown), Adam over the head and the method's
own parameters (ROLE's label matrix at ``lr_mult`` times the lr). One timed repeat is one epoch: the
method's ``on_epoch_start``, ``N / batch`` steps of forward + ``method.loss`` + backward + optimizer step,
then ``on_epoch_end`` with a :class:`~plbench.methods.api.TrainingSetPass` (the head's scores of every
training image, computed only when the method asks for them); the epoch's time is divided by its steps,
so hooks are amortised per step. The table gives the median over ``--repeats`` epochs (after one
untimed epoch) and its ratio to AN's median from the same run.

Options a method needs are filled in: ``expected_num_pos`` (EPR, ROLE) is the mean positives per image of
the drawn complete labels; EM + APL gets ``warmup_epoch = 1`` so that its pseudo-labelling pass after each
epoch is inside the timed epochs (its COCO warm-up of 5 epochs would leave it out).

    python benchmarks/bench_methods.py                                   # CPU, the demo's sizes
    python benchmarks/bench_methods.py --steps 5 --repeats 2 --images 256 --methods an role
    python benchmarks/bench_methods.py --device cuda --batch 256 --classes 80 --images 20000
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
from _timing import sync

from plbench.methods.api import BatchInfo, MethodContext, TrainingSetPass
from plbench.methods.registry import create_method

DEFAULT_METHODS = ("an", "an_ls", "wan", "epr", "ll_r", "role", "em_apl", "ll_ct", "gr_loss", "pasl:negative")
REFERENCE = "an"


@dataclass(frozen=True)
class Row:
    method: str
    ms_per_step: float  # median over repeats of (epoch seconds / steps), milliseconds
    ratio: float  # ms_per_step / AN's ms_per_step
    needs: str


def make_data(images: int, features: int, classes: int, seed: int, device: torch.device):
    """Features float32 (N, D), complete labels int8 (N, C) with at least one positive per image, and their
    single-positive version (one positive kept per image, the rest -1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(images, features, generator=g)
    full = (torch.rand(images, classes, generator=g) < 0.1).to(torch.int8)
    first = torch.randint(classes, (images,), generator=g)
    full[torch.arange(images), first] = 1
    keep = torch.multinomial(full.float(), 1, generator=g).squeeze(1)
    spl = torch.full_like(full, -1)
    spl[torch.arange(images), keep] = 1
    return x.to(device), full, spl


def _options(name: str, expected_num_pos: float) -> dict:
    if name in ("epr", "role"):
        return {"expected_num_pos": expected_num_pos}
    if name == "em_apl":
        return {"warmup_epoch": 1, "settings": "coco"}
    return {}


def bench_method(spec: str, x: torch.Tensor, full: torch.Tensor, spl: torch.Tensor, *, batch: int, steps: int,
                 repeats: int, lr: float, seed: int) -> tuple[float, str]:
    """Median milliseconds per step of ``spec`` (``name`` or ``name:mode``), and its needs."""
    name, _, mode = spec.partition(":")
    device = x.device
    method = create_method(name, _options(name, float((full == 1).sum(1).float().mean())))
    n, c = spl.shape
    steps_per_epoch = min(steps, n // batch) if steps else n // batch
    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], c).to(device)
    method.setup(MethodContext(targets=spl, class_names=tuple(f"c{i}" for i in range(c)), mode=mode or None,
                               seed=seed, epochs=repeats + 2, steps_per_epoch=steps_per_epoch, dataset="synthetic",
                               device=device))
    method.to(device)
    groups = [{"params": list(head.parameters()), "lr": lr}]
    own = [p for p in method.parameters() if p.requires_grad]
    if own:
        groups.append({"params": own, "lr": lr * float(method.lr_mult or 1.0)})
    opt = torch.optim.Adam(groups)
    targets = spl.to(device)
    g = torch.Generator().manual_seed(seed)

    def scores(augment: bool) -> torch.Tensor:
        with torch.no_grad():
            return torch.sigmoid(head(x)).float().cpu()

    def epoch(e: int) -> float:
        order = torch.randperm(n, generator=g)[: steps_per_epoch * batch].view(steps_per_epoch, batch)
        sync(device)
        t0 = time.perf_counter()
        method.on_epoch_start(e)
        for s, rows in enumerate(order):
            idx = rows.to(device)
            loss = method.loss(head(x[idx]), targets[idx], BatchInfo(indices=idx, epoch=e, step=e * steps_per_epoch + s))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        method.on_epoch_end(e, TrainingSetPass(scores, n) if method.needs.train_pass else None)
        sync(device)
        return (time.perf_counter() - t0) / steps_per_epoch

    epoch(0)  # warm-up, untimed
    times = [epoch(e) for e in range(1, repeats + 1)]
    return 1000 * statistics.median(times), ", ".join(method.needs.names()) or "-"


def run(methods: list[str], *, images: int, features: int, classes: int, batch: int, steps: int, repeats: int,
        lr: float, seed: int, device: torch.device) -> list[Row]:
    x, full, spl = make_data(images, features, classes, seed, device)
    order = [REFERENCE] + [m for m in methods if m != REFERENCE]
    measured = {m: bench_method(m, x, full, spl, batch=batch, steps=steps, repeats=repeats, lr=lr, seed=seed)
                for m in order}
    ref = measured[REFERENCE][0]
    return [Row(m, ms, ms / ref, needs) for m, (ms, needs) in measured.items()]


def table(rows: list[Row]) -> str:
    lines = [f"{'method':<16} {'ms/step':>9} {'x AN':>7}  needs", "-" * 56]
    lines += [f"{r.method:<16} {r.ms_per_step:>9.3f} {r.ratio:>7.2f}  {r.needs}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                   help="method names, or loss:mode for a loss with modes (AN is always measured, as the reference)")
    p.add_argument("--images", type=int, default=2000, help="N, training images (the demo's 2,000)")
    p.add_argument("--features", type=int, default=1280, help="D (tf_efficientnet_lite0's 1,280)")
    p.add_argument("--classes", type=int, default=20, help="C")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=0, help="steps per timed epoch (0: N / batch)")
    p.add_argument("--repeats", type=int, default=5, help="timed epochs (the median is reported)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    a = p.parse_args(argv)
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    rows = run(a.methods, images=a.images, features=a.features, classes=a.classes, batch=a.batch, steps=a.steps,
               repeats=a.repeats, lr=a.lr, seed=a.seed, device=torch.device(a.device))
    print(f"per-step time, linear head {a.features} -> {a.classes}, batch {a.batch}, {a.images} images, "
          f"{a.device}; median of {a.repeats} epochs, hooks amortised per step")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()

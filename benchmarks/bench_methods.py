"""What each partial-label method adds to a training step, against AN on the same data, in one run.

The step is the linear protocol's: a linear head on fixed features (float32 (N, D), drawn once, seeded),
single positive labels (one positive per image, the rest unknown), Adam over the head and the method's
own parameters (ROLE's label matrix at ``lr_mult`` times the lr). One timed repeat is one epoch: the
method's ``on_epoch_start``, ``N / batch`` steps of forward + ``method.loss`` + backward + optimizer step,
then ``on_epoch_end`` with a :class:`~plbench.methods.api.TrainingSetPass` (the head's scores of every
training image, computed only when the method asks for them); the epoch's time is divided by its steps,
so hooks are amortised per step. The table gives the median over ``--repeats`` epochs (after one
untimed epoch) and its ratio to AN's median from the same run.

A method is named ``NAME``, ``NAME:MODE`` or ``NAME+HEAD``. By default every built-in method is measured
(``plbench methods list``; a method with modes in its default mode), and LL-R with the BoostLU head. A
``+HEAD`` row runs that head (``plbench.heads``) on token features (N, L, D) (``--tokens`` L, drawn once,
seeded) instead of the linear head on pooled ones, the head's parameters at its ``lr_mult``; its ratio is
to AN with the GAP head on the same tokens (row ``an+gap``, measured whenever a ``+HEAD`` row is), so it
shows what the head adds, not what tokens cost.

Options a method needs are filled in: ``expected_num_pos`` (EPR, ROLE) is the mean positives per image of
the drawn complete labels; EM and EM + APL take the authors' COCO settings (``settings = coco``: the data
here is no dataset of theirs), and EM + APL gets ``warmup_epoch = 1`` so that its pseudo-labelling pass
after each epoch is inside the timed epochs (its COCO warm-up of 5 epochs would leave it out).

    python benchmarks/bench_methods.py                                   # CPU, the demo's sizes
    python benchmarks/bench_methods.py --steps 5 --repeats 2 --images 256 --methods an role ll_r+boostlu
    python benchmarks/bench_methods.py --device cuda --batch 256 --classes 80 --images 20000
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
from _timing import sync

from plbench.heads import create_head
from plbench.methods.api import BatchInfo, MethodContext, TrainingSetPass, resolve_method_mode
from plbench.methods.registry import builtin_methods, create_method

REFERENCE = "an"
TOKEN_REFERENCE = "an+gap"
#: head rows measured by default besides the built-in methods (the BoostLU authors' pairing)
HEAD_ROWS = ("ll_r+boostlu",)


def default_methods() -> list[str]:
    """Every built-in method (AN first), then :data:`HEAD_ROWS`."""
    names = sorted(builtin_methods())
    return [REFERENCE] + [n for n in names if n != REFERENCE] + list(HEAD_ROWS)


def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``NAME[:MODE][+HEAD]`` -> (name, mode or None, head or None)."""
    rest, _, head = spec.partition("+")
    name, _, mode = rest.partition(":")
    return name, mode or None, head or None


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


def make_tokens(images: int, tokens: int, features: int, seed: int, device: torch.device) -> torch.Tensor:
    """Token features float32 (N, L, D), seeded (drawn apart from :func:`make_data`'s, which they leave as
    they were)."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randn(images, tokens, features, generator=g).to(device)


def _options(name: str, expected_num_pos: float) -> dict:
    if name in ("epr", "role"):
        return {"expected_num_pos": expected_num_pos}
    if name == "em":
        return {"settings": "coco"}
    if name == "em_apl":
        return {"warmup_epoch": 1, "settings": "coco"}
    return {}


def bench_method(spec: str, x: torch.Tensor, full: torch.Tensor, spl: torch.Tensor, *, batch: int, steps: int,
                 repeats: int, lr: float, seed: int) -> tuple[float, str]:
    """Median milliseconds per step of ``spec`` (``NAME[:MODE][+HEAD]``), and its needs.

    ``x`` is pooled features (N, D) for a row without a head (a linear head), tokens (N, L, D) for one with.
    """
    name, mode, head_name = parse_spec(spec)
    device = x.device
    method = create_method(name, _options(name, float((full == 1).sum(1).float().mean())))
    if method.needs.spatial_maps:
        raise ValueError(f"method {name!r} needs class maps, which this benchmark does not give")
    n, c = spl.shape
    steps_per_epoch = min(steps, n // batch) if steps else n // batch
    torch.manual_seed(seed)
    head = (torch.nn.Linear(x.shape[-1], c) if head_name is None else create_head(head_name, x.shape[-1], c)).to(device)
    method.setup(MethodContext(targets=spl, class_names=tuple(f"c{i}" for i in range(c)),
                               mode=resolve_method_mode(type(method), name, mode), seed=seed, epochs=repeats + 2,
                               steps_per_epoch=steps_per_epoch, dataset="synthetic", device=device))
    method.to(device)
    groups = [{"params": list(head.parameters()), "lr": lr * float(getattr(head, "lr_mult", 1.0))}]
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
        lr: float, seed: int, device: torch.device, tokens: int = 16) -> list[Row]:
    """One row per method (AN first; ``an+gap`` first of the head rows, when there are any), each timed on
    the same data; a row's ratio is to AN's time, or to ``an+gap``'s for a ``+HEAD`` row."""
    x, full, spl = make_data(images, features, classes, seed, device)
    order = [REFERENCE] + [m for m in methods if m != REFERENCE and parse_spec(m)[2] is None]
    with_head = [m for m in methods if m != TOKEN_REFERENCE and parse_spec(m)[2] is not None]
    if with_head or TOKEN_REFERENCE in methods:
        order += [TOKEN_REFERENCE] + with_head
        x_tokens = make_tokens(images, tokens, features, seed, device)
    kw = dict(batch=batch, steps=steps, repeats=repeats, lr=lr, seed=seed)
    measured = {m: bench_method(m, x if parse_spec(m)[2] is None else x_tokens, full, spl, **kw) for m in order}
    refs = {False: measured[REFERENCE][0], True: measured.get(TOKEN_REFERENCE, (0.0,))[0]}
    return [Row(m, ms, ms / refs[parse_spec(m)[2] is not None], needs) for m, (ms, needs) in measured.items()]


def table(rows: list[Row]) -> str:
    """The rows as text; ``x AN`` of a ``+HEAD`` row is against ``an+gap``."""
    lines = [f"{'method':<16} {'ms/step':>9} {'x AN':>7}  needs", "-" * 56]
    lines += [f"{r.method:<16} {r.ms_per_step:>9.3f} {r.ratio:>7.2f}  {r.needs}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--methods", nargs="+", default=None,
                   help="NAME, NAME:MODE or NAME+HEAD (default: every built-in method, and ll_r+boostlu); AN is "
                        "always measured, as the reference")
    p.add_argument("--images", type=int, default=2000, help="N, training images (the demo's 2,000)")
    p.add_argument("--features", type=int, default=1280, help="D (tf_efficientnet_lite0's 1,280)")
    p.add_argument("--classes", type=int, default=20, help="C")
    p.add_argument("--tokens", type=int, default=16, help="L, tokens per image of the +HEAD rows")
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
    methods = default_methods() if a.methods is None else a.methods
    rows = run(methods, images=a.images, features=a.features, classes=a.classes, batch=a.batch, steps=a.steps,
               repeats=a.repeats, lr=a.lr, seed=a.seed, device=torch.device(a.device), tokens=a.tokens)
    print(f"per-step time, linear head {a.features} -> {a.classes}, batch {a.batch}, {a.images} images, "
          f"{a.device}; median of {a.repeats} epochs, hooks amortised per step"
          + (f"; +HEAD rows on {a.tokens} tokens, x AN against an+gap" if any("+" in r.method for r in rows) else ""))
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()

"""Where training time goes: images/s of the data path alone, the training step alone, and the whole loop.

For each backbone x head x image size, in one run:

* ``data``: the engine's training loader (``make_dataset`` + ``EpochBatchSampler`` + ``make_loader``:
  uint8 batches from the pre-resized image cache, flip augmentation, ``--workers`` persistent workers,
  pinned memory on CUDA) plus the copy to the device and the normalisation (``to_model_input``); timed
  from the first batch on, so worker start-up is left out.
* ``step``: forward + backward + optimizer step on uint8 batches already on the device, with the
  engine's model (``build_model``), loss (``make_criterion``: P-ASL, negative mode, targets checked once at
  load, not per step) and options. Variants: the baseline ``fp32 NCHW`` (float32, NCHW, for-each Adam) and
  ``engine`` (what ``plbench train`` does on this device: autocast by ``runtime.amp_dtype`` with ``--amp``,
  bf16 (fp16 + GradScaler on GPUs without bf16; bf16 on the CPU too), channels-last and fused Adam on CUDA,
  ``torch.compile`` with ``--compile``); on CUDA also ``amp NCHW`` (autocast alone) and
  ``engine + cudnn.benchmark`` and ``engine without loss sync`` (no ``loss.item()`` per step); everywhere
  ``engine + per-step target check`` (the loss's own target validation, a second sync per step, as
  before issue 18); on the CPU also ``fp32 channels_last`` (the engine trains NCHW there).
* ``loop``: ``plbench.engine.train.train`` for ``--loop-epochs`` epochs on the same synthetic dataset
  with ``cache_dir`` set; ``train_images_per_s`` of each epoch from ``metrics.jsonl`` (the first epoch
  includes worker start-up and warm-up, the last is the steady state shown in the table).

Ratios are against figures of the same run: each step variant against the baseline step, the data path
and the loop against the ``engine`` step (data / step > 1: the data path is not the bottleneck).
The dataset is ``write_synthetic_coco`` (small JPEGs, cached at each size); ``--data-root`` reuses one.

    python benchmarks/bench_train.py --dry-run                          # seconds, CPU, tiny sizes
    python benchmarks/bench_train.py --device cpu --backbone resnet10t --image-size 64 224
    python benchmarks/bench_train.py --device cuda --workers 16         # resnet50, gap + ml-decoder, 224 + 448
    python benchmarks/bench_train.py --device cuda --compile --head gap --image-size 224

Defaults on CUDA: resnet50, heads gap and ml-decoder, 224 and 448 px, batch 256 at 224 px scaled by
(224 / size)^2 (64 at 448), ``--amp``, 16 workers (at most the CPU count), 20 timed steps, 4,096 training
images. On the CPU: resnet10t, gap, 64 and 224 px, batch 16, 2 workers, 5 timed steps, 128 images.
``--json FILE`` writes every row (what ``benchmarks/gpu_checks.sh`` reads).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from _timing import sync

from plbench.artifacts.runs import RunFolder
from plbench.choices import Head
from plbench.config import TrainConfig
from plbench.datasets import load_dataset
from plbench.datasets.images import ImageCache, build_image_cache, cache_folder
from plbench.datasets.synthetic import write_synthetic_coco
from plbench.engine import runtime
from plbench.engine import train as engine
from plbench.engine.data import EpochBatchSampler, normalize
from plbench.engine.model import build_model
from plbench.errors import InputError

DATASET = "synthetic"
CACHE = "plbench_cache"  # the cache root inside the data root, as `plbench data cache` writes it


@dataclass(frozen=True)
class Variant:
    """One way of running the training step."""

    name: str
    amp: bool = False  # autocast by runtime.amp_dtype (bf16; fp16 + GradScaler on GPUs without bf16)
    channels_last: bool = False
    fused: bool = False  # fused Adam (CUDA only)
    compile: bool = False
    cudnn_benchmark: bool = False
    sync_loss: bool = True  # the engine reads the loss every step (to refuse NaN before the update)
    check_targets: bool = False  # the loss validates the targets of every batch (the engine checks them at load)


@dataclass
class Row:
    """One line of the table (and of ``--json``)."""

    backbone: str
    head: str
    image_size: int
    batch_size: int
    part: str  # data | step | loop
    variant: str
    images_per_s: float | None = None
    ratio: float | None = None
    ratio_to: str | None = None
    images: int = 0  # images timed
    seconds: float = 0.0
    note: str = ""
    error: str | None = None


# -- data ---------------------------------------------------------------------------------------------
def prepare_data(root: Path, sizes: list[int], *, train_images: int, val_images: int, num_classes: int,
                 source_size: int, workers: int, say=print) -> Path:
    """A synthetic dataset at ``root`` (written when absent) and its image caches (train and val) at every size.

    Returns the cache root ``root/plbench_cache`` (``TrainConfig.cache_dir``).
    """
    if not (root / "annotations").is_dir():
        t0 = time.perf_counter()
        write_synthetic_coco(root, train=train_images, val=val_images, num_classes=num_classes,
                             image_size=source_size, seed=0)
        say(f"# synthetic dataset: {train_images} + {val_images} images of {source_size} px written in "
            f"{time.perf_counter() - t0:.1f} s to {root}")
    cache_root = root / CACHE
    for split in ("train", "val"):
        paths = load_dataset(DATASET, root, split).image_paths.tolist()
        for size in sizes:
            folder = cache_folder(cache_root, DATASET, split, size)
            try:
                ImageCache.open(folder, expected_paths=paths)
                continue
            except InputError:
                pass
            t0 = time.perf_counter()
            build_image_cache(paths, size, folder, workers=workers)
            say(f"# image cache {split} {size} px: {len(paths)} images in {time.perf_counter() - t0:.1f} s")
    return cache_root


def bench_data(config: TrainConfig, device: torch.device, epochs: int) -> tuple[int, float]:
    """Images and seconds of ``epochs`` epochs of the engine's training loader, batches moved to the device
    and normalised; the first batch (worker start-up) is not counted."""
    split = load_dataset(config.dataset, config.data_root, config.train_split)
    dataset = engine.make_dataset(config, config.train_split, split.image_paths, split.labels, train=True)
    sampler = EpochBatchSampler(len(dataset), config.batch_size, config.seed, with_epoch=True)
    loader = engine.make_loader(dataset, config, sampler, device)
    mean, std = engine.normalization(config)
    images, t0 = 0, None
    try:
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for inputs, labels, _ in loader:
                x = runtime.to_model_input(inputs, device, mean, std)
                labels.to(device, non_blocking=True)
                if t0 is None:
                    sync(device)
                    t0 = time.perf_counter()
                    continue
                images += int(x.shape[0])
        sync(device)
        return images, time.perf_counter() - (t0 or time.perf_counter())
    finally:
        del loader  # stops the persistent workers


# -- step ---------------------------------------------------------------------------------------------
def step_variants(device: torch.device, amp: bool, compile_model: bool) -> tuple[Variant, Variant, list[Variant]]:
    """(baseline, engine, extra variants) for ``device``."""
    cuda = device.type == "cuda"
    base = Variant("fp32 NCHW")
    eng = Variant("engine", amp=amp, channels_last=cuda, fused=cuda, compile=compile_model)
    extra = []
    if cuda:
        if amp:
            extra.append(Variant("amp NCHW", amp=True))
        extra.append(replace(eng, name="engine + cudnn.benchmark", cudnn_benchmark=True))
        extra.append(replace(eng, name="engine without loss sync", sync_loss=False))
    else:
        extra.append(Variant("fp32 channels_last", channels_last=True))
    extra.append(replace(eng, name="engine + per-step target check", check_targets=True))
    return base, eng, extra


def describe(v: Variant, device: torch.device) -> str:
    parts = []
    dtype = runtime.amp_dtype(v.amp, device)
    if dtype is not None:
        parts.append("bf16" if dtype == torch.bfloat16 else "fp16+GradScaler")
    else:
        parts.append("fp32")
    parts.append("channels_last" if v.channels_last else "NCHW")
    parts.append("fused Adam" if v.fused else "Adam")
    if v.compile:
        parts.append("compile")
    if v.cudnn_benchmark:
        parts.append("cudnn.benchmark")
    if not v.sync_loss:
        parts.append("no loss.item() per step")
    if v.check_targets:
        parts.append("loss checks targets")
    return ", ".join(parts)


def bench_step(config: TrainConfig, num_classes: int, device: torch.device, v: Variant, *, steps: int,
               warmup: int) -> tuple[int, float]:
    """Images and seconds of ``steps`` training steps (after ``warmup``) on one uint8 batch kept on the
    device: normalise, forward under autocast, P-ASL on float32 logits, the engine's loss sync, backward,
    Adam step."""
    torch.manual_seed(0)
    previous_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = v.cudnn_benchmark
    try:
        model = build_model(config.backbone, config.head, num_classes).to(device)
        if v.channels_last:
            model = model.to(memory_format=torch.channels_last)
        stepped = torch.compile(model) if v.compile else model
        optimizer = torch.optim.Adam(engine.parameter_groups(model, config.weight_decay), lr=config.lr,
                                     fused=v.fused)
        dtype = runtime.amp_dtype(v.amp, device)
        scaler = torch.amp.GradScaler("cuda") if runtime.needs_grad_scaler(dtype) else None
        criterion = engine.make_criterion(config, None).to(device)
        criterion.validate = v.check_targets
        mean, std = engine.normalization(config)
        b, s = config.batch_size, config.image_size
        images = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, device=device)
        labels = torch.randint(-1, 2, (b, num_classes), dtype=torch.int8, device=device)
        model.train()

        def step() -> None:
            x = normalize(images, mean, std)
            if v.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with runtime.autocast(device, dtype):
                logits = stepped(x)
            loss = criterion(logits.float(), labels)
            if v.sync_loss:
                float(loss.detach())  # the engine syncs here to refuse a non-finite loss
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()

        for _ in range(warmup):
            step()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        return b * steps, time.perf_counter() - t0
    finally:
        torch.backends.cudnn.benchmark = previous_benchmark
        if device.type == "cuda":
            torch.cuda.empty_cache()


# -- loop ---------------------------------------------------------------------------------------------
def bench_loop(config: TrainConfig) -> list[dict[str, Any]]:
    """Train ``config`` (a new run folder) and return its ``metrics.jsonl`` records."""
    try:
        result = engine.train(config, progress=False)
    finally:
        # train() makes CPU runs deterministic for the whole process; the next step timings must not be
        torch.use_deterministic_algorithms(False)
    return RunFolder(result.run_dir).metrics()


# -- table --------------------------------------------------------------------------------------------
def rate(images: int, seconds: float) -> float | None:
    return images / seconds if seconds > 0 and images > 0 else None


def run_config(args: argparse.Namespace, device: torch.device, backbone: str, head: str, size: int,
               cache_root: Path, runs: Path, num_classes: int) -> list[Row]:
    batch = args.batch_size or default_batch(device, size)
    config = TrainConfig(
        dataset=DATASET, data_root=str(args.data_root), backbone=backbone, head=head, image_size=size,
        batch_size=batch, epochs=args.loop_epochs, lr=1e-4, device=str(device), amp=args.amp,
        compile=args.compile, workers=args.workers, cache_dir=str(cache_root), mode="negative",
        out_dir=str(runs), run_name=f"{backbone}-{head}-{size}", seed=0,
    )
    rows: list[Row] = []

    def new(part: str, variant: str) -> Row:
        return Row(backbone, head, size, batch, part, variant)

    def guarded(row: Row, fn) -> Row:
        try:
            row.images, row.seconds = fn()
            row.images_per_s = rate(row.images, row.seconds)
        except Exception as e:  # noqa: BLE001 -- a failing part (e.g. out of memory) is reported, the rest runs
            row.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            if args.verbose:
                traceback.print_exc()
        if device.type == "cuda":  # after an out-of-memory error, the failed step's tensors are free only now
            gc.collect()
            torch.cuda.empty_cache()
        rows.append(row)
        return row

    parts = set(args.parts)
    engine_row: Row | None = None
    if "step" in parts:
        base, eng, extra = step_variants(device, args.amp, args.compile)
        same = asdict(replace(base, name="")) == asdict(replace(eng, name=""))
        b = guarded(new("step", f"{base.name} (baseline)"),
                    lambda: bench_step(config, num_classes, device, base, steps=args.steps, warmup=args.warmup))
        b.note = describe(base, device)
        if same:
            engine_row = b
            b.variant = f"{base.name} (baseline = engine here)"
        else:
            engine_row = guarded(new("step", eng.name), lambda: bench_step(
                config, num_classes, device, eng, steps=args.steps, warmup=args.warmup))
            engine_row.note = describe(eng, device)
        for v in extra:
            r = guarded(new("step", v.name), lambda v=v: bench_step(
                config, num_classes, device, v, steps=args.steps, warmup=args.warmup))
            r.note = describe(v, device)
        for r in rows:
            if r is not b and r.images_per_s and b.images_per_s:
                r.ratio, r.ratio_to = r.images_per_s / b.images_per_s, "baseline step"
    if "data" in parts:
        r = guarded(new("data", f"loader, {args.workers} workers"),
                    lambda: bench_data(config, device, args.data_epochs))
        r.note = "image cache, flip, to device + normalise"
    if "loop" in parts:
        r = new("loop", f"train(), epoch {args.loop_epochs}/{args.loop_epochs}")
        try:
            records = bench_loop(config)
            last = records[-1]
            r.images_per_s = float(last["train_images_per_s"])
            r.seconds = float(last["train_seconds"])
            r.images = round(r.images_per_s * r.seconds)
            r.note = "epochs: " + ", ".join(f"{m['train_images_per_s']:.1f}" for m in records) + " img/s"
        except Exception as e:  # noqa: BLE001 -- as above
            r.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            if args.verbose:
                traceback.print_exc()
        rows.append(r)
    if engine_row is not None and engine_row.images_per_s:
        for r in rows:
            if r.part in ("data", "loop") and r.images_per_s:
                r.ratio, r.ratio_to = r.images_per_s / engine_row.images_per_s, "engine step"
    return rows


def default_batch(device: torch.device, size: int) -> int:
    """256 at 224 px on CUDA (16 on the CPU), scaled by (224 / size)^2: the same pixels per batch."""
    base = 256 if device.type == "cuda" else 16
    if device.type != "cuda":
        return base
    return max(1, round(base * (224 / size) ** 2))


def format_table(rows: list[Row]) -> str:
    head = f"{'backbone':<22} {'head':<10} {'px':>4} {'batch':>5}  {'part':<5} {'variant':<34} {'img/s':>9}  " \
           f"{'ratio':<20} note"
    lines = [head, "-" * len(head)]
    for r in rows:
        ips = f"{r.images_per_s:9.1f}" if r.images_per_s else f"{'-':>9}"
        ratio = f"{r.ratio:.2f}x {r.ratio_to}" if r.ratio else ""
        note = f"FAILED {r.error}" if r.error else r.note
        lines.append(f"{r.backbone:<22} {r.head:<10} {r.image_size:>4} {r.batch_size:>5}  {r.part:<5} "
                     f"{r.variant:<34} {ips}  {ratio:<20} {note}")
    return "\n".join(lines)


def write_json(path: Path, args: argparse.Namespace, device: torch.device, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({
        "device": device_name(device), "device_type": device.type, "torch": torch.__version__,
        "workers": args.workers, "amp": args.amp, "compile": args.compile, "dry_run": args.dry_run,
        "rows": [asdict(r) for r in rows],
    }, indent=1))
    os.replace(tmp, path)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads, {os.cpu_count()} cores"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--backbone", nargs="+", default=None, help="timm names (CUDA: resnet50, CPU: resnet10t)")
    ap.add_argument("--head", nargs="+", default=None, choices=[h.value for h in Head],
                    help="CUDA: gap ml-decoder; CPU: gap")
    ap.add_argument("--image-size", nargs="+", type=int, default=None, help="pixels (CUDA: 224 448, CPU: 64 224)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: see below")
    ap.add_argument("--workers", type=int, default=None, help="loader processes (CUDA: 16, CPU: 2; at most the "
                                                              "CPU count)")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                    help="autocast as `plbench train --amp` (bf16 on the CPU too)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the engine step and the loop")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per variant (CUDA 20, CPU 5)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (CUDA 5, CPU 1)")
    ap.add_argument("--parts", nargs="+", default=["step", "data", "loop"], choices=["step", "data", "loop"])
    ap.add_argument("--data-epochs", type=int, default=2, help="epochs of the data-path measurement")
    ap.add_argument("--loop-epochs", type=int, default=2, help="epochs of the whole-loop run (last one shown)")
    ap.add_argument("--train-images", type=int, default=None, help="synthetic training images (CUDA 4096, CPU 128)")
    ap.add_argument("--val-images", type=int, default=None, help="synthetic validation images (CUDA 256, CPU 32)")
    ap.add_argument("--classes", type=int, default=20, help="synthetic classes")
    ap.add_argument("--data-root", type=Path, default=None,
                    help="synthetic dataset to use (written there when absent; default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice; 1 with --dry-run). On a loaded "
                         "machine 1 is steadier: idle OpenMP threads then wait for descheduled ones")
    ap.add_argument("--verbose", action="store_true", help="tracebacks of failing parts")
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny sizes on the CPU (seconds): resnet10t, gap, 32 px, batch 4, 2 steps, 1 thread")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.device = "cpu"
        args.backbone = args.backbone or ["resnet10t"]
        args.head = args.head or ["gap"]
        args.image_size = args.image_size or [32]
        args.batch_size = args.batch_size or 4
        args.workers = 1 if args.workers is None else args.workers
        args.steps, args.warmup = args.steps or 2, 1 if args.warmup is None else args.warmup
        args.train_images, args.val_images = args.train_images or 16, args.val_images or 8
        args.classes, args.data_epochs, args.loop_epochs = 4, 1, 1
        args.threads = args.threads or 1  # two OpenMP threads on a busy 2-core machine are 10x slower
    cuda = engine.resolve_device(args.device).type == "cuda"
    args.backbone = args.backbone or (["resnet50"] if cuda else ["resnet10t"])
    args.head = args.head or (["gap", "ml-decoder"] if cuda else ["gap"])
    args.image_size = args.image_size or ([224, 448] if cuda else [64, 224])
    if args.workers is None:
        args.workers = min(16 if cuda else 2, os.cpu_count() or 1)
    args.steps = args.steps or (20 if cuda else 5)
    args.warmup = (5 if cuda else 1) if args.warmup is None else args.warmup
    args.train_images = args.train_images or (4096 if cuda else 128)
    args.val_images = args.val_images or (256 if cuda else 32)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = engine.resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="plbench-bench-train-"))
    try:
        if args.data_root is None:
            args.data_root = tmp / "synthetic"
        # the source JPEGs are small; the cache (what the benchmark reads) holds every size
        cache_root = prepare_data(args.data_root, sorted(set(args.image_size)), train_images=args.train_images,
                                  val_images=args.val_images, num_classes=args.classes,
                                  source_size=32 if args.dry_run else 64,
                                  workers=min(args.workers, os.cpu_count() or 1))
        num_classes = len(load_dataset(DATASET, args.data_root, "train").class_names)
        print(f"# bench_train: {device_name(device)}, torch {torch.__version__}, workers {args.workers}, "
              f"amp {args.amp}, compile {args.compile}, {args.steps} steps (+{args.warmup} warm-up), "
              f"{args.train_images} training images, load {os.getloadavg()[0]:.2f}", flush=True)
        rows: list[Row] = []
        for backbone in args.backbone:
            for head in args.head:
                for size in args.image_size:
                    new = run_config(args, device, backbone, head, size, cache_root, tmp / "runs", num_classes)
                    lines = format_table(new).split("\n")
                    print("\n".join(lines if not rows else lines[2:]), flush=True)  # the header once
                    rows += new
                    if args.json is not None:  # after each configuration: a time limit keeps what was measured
                        write_json(args.json, args, device, rows)
        print(f"# load at end {os.getloadavg()[0]:.2f}")
        return 1 if any(r.error for r in rows) else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

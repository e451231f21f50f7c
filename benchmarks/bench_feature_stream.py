"""Head-only training streaming from an OpenImages-size feature store, without loading it whole.

    python benchmarks/bench_feature_stream.py --out /big/disk/folder [--fraction 1.0] [--steps 200]

Writes a store of ``fraction x 9,000,000`` random float16 rows of 1,280 features (23.0 GB at fraction 1)
with plbench's writer (disk space checked first), sparse random labels (3 annotated classes per
image), then trains a GAP head on it through :class:`plbench.engine.features.FeatureDataset` and a
``DataLoader`` over random batches from the whole file, and reports images/s and memory: ``RssAnon`` (the
process's own memory) and ``RssFile`` (file pages currently mapped; the kernel drops them under pressure).
Delete the folder afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

OPENIMAGES_TRAIN = 9_000_000
DIM = 1280


def memory_mb() -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of this process from /proc/self/status, MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def write_store(root: Path, n: int, chunk: int = 65_536):
    from plbench.artifacts.features import write_feature_store

    rng = np.random.default_rng(0)

    def batches():
        for start in range(0, n, chunk):
            b = min(chunk, n - start)
            x = rng.standard_normal((b, DIM), dtype=np.float32)
            yield np.arange(start, start + b), x, None

    meta = {"dataset": "openimages", "split": "train", "fingerprint": "benchmark", "backbone": "random",
            "image_size": 224, "weights": {"pretrained": False, "source": "random numbers"}}
    return write_feature_store(root, batches(), num_images=n, num_features=DIM, num_tokens=None,
                               image_ids=np.arange(n, dtype=np.int64), meta=meta)


def random_labels(n: int, num_classes: int, per_image: int = 3):
    """Sparse partial labels: ``per_image`` distinct random classes per image, 30 % of them positive."""
    from plbench.labels import PartialLabels

    rng = np.random.default_rng(1)
    # distinct classes per row without a global sort: a random start plus increasing offsets (mod C)
    start = rng.integers(0, num_classes, size=(n, 1))
    steps = np.cumsum(rng.integers(1, max(2, num_classes // per_image), size=(n, per_image)), axis=1) - 1
    cols = np.sort((start + steps) % num_classes, axis=1).astype(np.int32).ravel()
    rows = np.repeat(np.arange(n, dtype=np.int64), per_image)
    values = (rng.random(len(cols)) < 0.3).astype(np.int8)
    return PartialLabels(np.arange(n, dtype=np.int64), [f"c{i}" for i in range(num_classes)], rows=rows,
                         cols=cols, values=values, complete=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--classes", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the store (default: delete it at the end)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from plbench.artifacts.features import FeatureStore, format_bytes
    from plbench.datasets.images import collate_skip_none
    from plbench.engine.features import FeatureDataset, HeadOnlyClassifier
    from plbench.heads import create_head
    from plbench.losses import create_loss

    n = int(OPENIMAGES_TRAIN * args.fraction)
    root = args.out / "train"
    print(f"memory after imports (baseline): {memory_mb()}", flush=True)
    if (root / "features.json").is_file():
        store = FeatureStore.open(root)
        print(f"reusing {root}", flush=True)
    else:
        t0 = time.perf_counter()
        store = write_store(root, n)
        print(f"wrote {n:,} x {DIM} float16 = {format_bytes(store.nbytes)} in {time.perf_counter() - t0:.0f} s "
              f"(incl. sha256)", flush=True)
    t0 = time.perf_counter()
    labels = random_labels(n, args.classes)
    print(f"labels: {labels.num_explicit:,} annotations in {time.perf_counter() - t0:.0f} s; memory {memory_mb()}",
          flush=True)
    dataset = FeatureDataset(store, labels)
    model = HeadOnlyClassifier(create_head("gap", DIM, args.classes))
    criterion = create_loss("pasl", mode="ignore")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = np.random.default_rng(2).permutation(n)
    steps = min(args.steps, n // args.batch_size)
    batches = [order[i * args.batch_size:(i + 1) * args.batch_size].tolist() for i in range(steps)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate_skip_none)
    t0, seen, peak = time.perf_counter(), 0, 0.0
    for step, (x, y, _) in enumerate(loader):
        loss = criterion(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(x)
        if step % 50 == 0 or step == steps - 1:
            mem = memory_mb()
            peak = max(peak, mem["RssAnon"])
            print(f"step {step}: {seen / (time.perf_counter() - t0):.0f} images/s, memory {mem}", flush=True)
    rate = seen / (time.perf_counter() - t0)
    print(f"trained {steps} steps of {args.batch_size} random rows from the whole file: {rate:.0f} images/s "
          f"(one epoch of {n:,} would take {n / rate / 60:.0f} min); peak RssAnon {peak:.0f} MB of a "
          f"{format_bytes(store.nbytes)} store", flush=True)
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()

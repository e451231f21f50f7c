"""Images/s of the training image path with and without the pre-resized cache, on real JPEGs.

Uses the real fixtures (../shared/fixtures/real/images and coco2017_sample: COCO 640x480-class
photos and OpenImages 256-short-side photos), cycled to ``--items`` reads. Each mode yields the
RGB image at ``--size`` x ``--size`` as a uint8 CHW tensor (what a training transform starts from):

* baseline ``decode``: ``load_image`` (full JPEG decode, EXIF) then resize;
* ``decode+draft``: JPEG DCT-domain downscaling before the resize (what the cache builder does);
* ``cache``: ``ImageCache`` memmap read (no decoding).

Each mode runs in-process and through a ``DataLoader`` with ``--workers`` processes. Prints
images/s and the ratio against the baseline of the same run. Run when ``uptime`` load is low.

Usage: python benchmarks/bench_image_loader.py [--items 600] [--size 224] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from plbench.datasets.images import ImageCache, build_image_cache, load_image
from plbench.engine.data import ImageLabelDataset
from plbench.labels import PartialLabels

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "fixtures" / "real"


class FullDecode:
    """Baseline: decode every JPEG at full size, then resize (no draft mode, no cache)."""

    def __init__(self, paths: list[str], size: int, transform) -> None:
        self.paths, self.size, self.transform = paths, size, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(load_image(self.paths[i])), i


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sources = sorted((REAL / "images").glob("*.jpg")) + sorted((REAL / "coco2017_sample").glob("*2017/*.jpg"))
    if not sources:
        raise SystemExit(f"no real JPEG fixtures under {REAL}")
    # Distinct paths per item (symlinks), so the cache holds one row per item as for a real split.
    tmp = Path(tempfile.mkdtemp(prefix="plbench-img-bench-"))
    try:
        paths = []
        for i in range(args.items):
            link = tmp / f"{i:06d}.jpg"
            link.symlink_to(sources[i % len(sources)])
            paths.append(str(link))
        size = args.size

        def to_tensor(img):
            if img.size != (size, size):
                img = img.resize((size, size), resample=2)  # bilinear
            return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)

        print(f"load: {os.getloadavg()[0]:.2f} (1 min), cpus: {os.cpu_count()}, {len(sources)} real JPEGs "
              f"cycled to {args.items} items, size {size}")
        t0 = time.perf_counter()
        build_image_cache(paths, size, tmp / "cache", workers=args.workers)
        build_s = time.perf_counter() - t0
        print(f"cache build: {build_s:.2f} s ({args.items / build_s:.0f} images/s, {args.workers} workers)")
        cache = ImageCache.open(tmp / "cache")
        labels = PartialLabels.from_dense(np.zeros((len(paths), 1), np.int8), np.arange(len(paths)), ["x"])
        datasets = {  # the engine's dataset decodes with JPEG draft mode, or reads the cache
            "decode": FullDecode(paths, size, to_tensor),
            "decode+draft": ImageLabelDataset(paths, labels, size, train=False),
            "cache": ImageLabelDataset(paths, labels, size, train=False, cache=cache),
        }

        def run(ds, workers: int) -> float:
            best = 0.0
            for _ in range(args.repeats):
                t = time.perf_counter()
                if workers == 0:
                    for i in range(len(ds)):
                        ds[i]
                else:
                    loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=workers)
                    for _batch in loader:
                        pass
                best = max(best, len(ds) / (time.perf_counter() - t))
            return best

        for workers in (0, args.workers):
            rates = {name: run(ds, workers) for name, ds in datasets.items()}
            where = "in-process" if workers == 0 else f"DataLoader, {workers} workers, batch 32"
            base = rates["decode"]
            for name, r in rates.items():
                print(f"  {where:<34} {name:<13} {r:8.0f} images/s  ({r / base:5.2f}x baseline)")
        print(f"load at end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

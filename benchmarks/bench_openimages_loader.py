"""OpenImages loader at full scale: time and peak memory on a generated train-size labels file.

Generates, in a temporary folder (deleted at the end), a human-verified image-level labels CSV
with the published columns ``ImageID,Source,LabelName,Confidence``: by default 9,000,000 images
(16-hex ids, rows grouped by image in sorted order as published) and about 6.4 rows per image
(~58M rows, ~2.5 GB), MIDs drawn with a long-tailed distribution from the real class
description file when ../shared/fixtures is present, and a 9,605-MID trainable list. Then, each in
a fresh process so that peak RSS is its own:

* baseline: ``pyarrow.csv.read_csv`` of the same file with default types (the parsing floor);
* plbench: ``load_dataset("openimages", root, "train", check_images=False)``.

It also times the missing-image check's matching step (``present_mask`` of 9M ids against a
9M-name listing) in memory. Prints seconds, peak RSS (GB) and the ratio plbench / baseline.

Usage: python benchmarks/bench_openimages_loader.py [--images 9000000] [--rows-per-image 6.4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL_DESC = REPO.parent / "shared" / "fixtures" / "real" / "openimages" / "oidv6-class-descriptions.csv"
HEADER = b"ImageID,Source,LabelName,Confidence\n"


def hex_ids(values: np.ndarray) -> np.ndarray:
    """uint64 (N,) -> 16-character lowercase hex ids as bytes 'S16' (N,), vectorised."""
    table = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2").view(np.uint8).reshape(256, 2)
    be = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return table[be].reshape(-1, 16).copy().view("S16").ravel()


def generate(root: Path, n_images: int, rows_per_image: float, seed: int = 0) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    if REAL_DESC.is_file():
        shutil.copy(REAL_DESC, root / "oidv6-class-descriptions.csv")
        mids = np.array([ln.split(",", 1)[0] for ln in REAL_DESC.read_text().splitlines()[1:]], dtype=object)
    else:
        mids = np.array([f"/m/{i:07x}" for i in range(19994)], dtype=object)
        (root / "oidv6-class-descriptions.csv").write_text(
            "LabelName,DisplayName\n" + "".join(f"{m},class {i}\n" for i, m in enumerate(mids)))
    used = mids[rng.permutation(len(mids))[:19957]]  # the V6 train file holds ~19,957 MIDs
    trainable = used[:9605]  # the most frequent MIDs, as trainable classes are
    (root / "oidv6-classes-trainable.txt").write_text("\n".join(trainable) + "\n")
    weights = 1.0 / np.arange(1, len(used) + 1) ** 1.1  # long tail, like real label frequencies
    cdf = np.cumsum(weights / weights.sum())
    mid_dict = pa.array(list(used), pa.string())
    source_dict = pa.array(["verification", "crowdsource-verification"], pa.string())
    ids = hex_ids(np.sort(rng.integers(0, 2**64, size=n_images, dtype=np.uint64)))
    rows_total = 0
    chunk = 250_000
    with open(root / "oidv6-train-annotations-human-imagelabels.csv", "wb") as f:
        f.write(HEADER)
        for start in range(0, n_images, chunk):
            part = ids[start:start + chunk]
            counts = rng.poisson(rows_per_image - 1, size=len(part)) + 1
            m = int(counts.sum())
            table = pa.table({
                "ImageID": pa.array(np.repeat(part, counts)),
                "Source": pa.DictionaryArray.from_arrays(
                    pa.array((rng.random(m) < 0.3).astype(np.int32)), source_dict),
                "LabelName": pa.DictionaryArray.from_arrays(
                    pa.array(np.searchsorted(cdf, rng.random(m)).clip(max=len(used) - 1).astype(np.int32)), mid_dict),
                "Confidence": pa.array((rng.random(m) < 0.6).astype(np.int8)),
            })
            pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, quoting_style="none"))
            rows_total += m
    return n_images, rows_total


def child(mode: str, root: str) -> None:
    """Run one measurement in this (fresh) process and print a JSON line."""
    t0 = time.perf_counter()
    if mode == "baseline":
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(Path(root) / "oidv6-train-annotations-human-imagelabels.csv")
        info = {"rows": table.num_rows}
    else:
        from plbench.datasets import load_dataset

        ds = load_dataset("openimages", root, "train", check_images=False)
        r, _, _ = ds.labels.sparse
        info = {"images": len(ds), "classes": ds.num_classes, "annotations": int(r.size),
                "annotated_fraction": ds.labels.annotated_fraction()}
    seconds = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_gb": peak_gb, **info}))


def measure(mode: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(root)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_presence(n: int) -> float:
    from plbench.datasets.openimages import present_mask

    ids = hex_ids(np.arange(n, dtype=np.uint64) * 7919).astype(str).astype(object)
    available = list(ids[1000:])  # a download missing 1,000 images
    t0 = time.perf_counter()
    mask = present_mask(ids, available)
    dt = time.perf_counter() - t0
    assert int((~mask).sum()) == 1000
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=9_000_000)
    ap.add_argument("--rows-per-image", type=float, default=6.4)
    ap.add_argument("--child", nargs=2, metavar=("MODE", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), cpus: {os.cpu_count()}")
    tmp = Path(tempfile.mkdtemp(prefix="plbench-oi-bench-"))
    try:
        t0 = time.perf_counter()
        n, rows = generate(tmp, args.images, args.rows_per_image)
        size_gb = (tmp / "oidv6-train-annotations-human-imagelabels.csv").stat().st_size / 2**30
        print(f"generated {n:,} images, {rows:,} rows, {size_gb:.2f} GB in {time.perf_counter() - t0:.0f} s")
        base = measure("baseline", tmp)
        print(f"baseline pyarrow.read_csv (string columns): {base['seconds']:.1f} s, peak {base['peak_gb']:.2f} GB")
        ours = measure("plbench", tmp)
        print(f"plbench load_dataset('openimages'):        {ours['seconds']:.1f} s, peak {ours['peak_gb']:.2f} GB "
              f"({ours['images']:,} images x {ours['classes']:,} classes, {ours['annotations']:,} annotations, "
              f"annotated fraction {ours['annotated_fraction']:.5f})")
        print(f"ratio plbench / baseline: time {ours['seconds'] / base['seconds']:.2f}x, "
              f"peak memory {ours['peak_gb'] / base['peak_gb']:.2f}x")
        dt = bench_presence(n)
        print(f"missing-image matching of {n:,} ids against a listing: {dt:.1f} s")
        print(f"load at end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

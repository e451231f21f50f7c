"""Speed and memory of the label store and simulators at COCO and OpenImages scale.

Usage::

    python benchmarks/bench_labels.py                       # both parts, OpenImages at full size
    python benchmarks/bench_labels.py --part openimages --scale 0.01
    python benchmarks/bench_labels.py --part coco

Targets (issue 3): COCO size (82,081 x 80, complete, dense): FPC(1000) and RPS(0.5) each < 1 s.
OpenImages size (9,000,000 x 9,605, 60 M natural annotations, sparse): load from parquet, RPS(0.5),
FPC(1000), per-class counts, 1,000 dense batches of 128 rows: each < 60 s, peak memory < 8 GB.
``--scale`` multiplies the number of images and annotations (the 9,605 classes stay).

The OpenImages part runs in two child processes: one generates synthetic natural labels and writes
the parquet file (not measured), a fresh one measures, so its peak RSS (``ru_maxrss``) covers only
the measured steps. Baselines are straightforward versions: the dense matrix with a per-class loop
where it fits in memory (``--dense-limit``), else a per-class loop over the sparse arrays timed on a
sample of classes and extrapolated to all of them. Baselines run after the measured steps, so they do
not count towards the reported peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from plbench.labels import NEG, POS, UNK, PartialLabels
from plbench.simulate import simulate_fpc, simulate_rps, simulate_single_positive

OI_IMAGES, OI_CLASSES, OI_ANNOTATIONS = 9_000_000, 9_605, 60_000_000
COCO_IMAGES, COCO_CLASSES = 82_081, 80
GB = 1e9


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # ru_maxrss is in KiB on Linux


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn: Callable, repeat: int = 1):
    """(best seconds over ``repeat`` runs, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def row(step: str, seconds: float, baseline: float | None = None, note: str = "", peak: float | None = None) -> None:
    ratio = f"{baseline / seconds:8.1f}x" if baseline is not None and seconds > 0 else "       -"
    base = f"{baseline:9.3f}" if baseline is not None else "        -"
    mem = f"{peak:6.2f}" if peak is not None else "     -"
    print(f"  {step:<34} {seconds:9.3f} {base} {ratio} {mem}  {note}", flush=True)


def header(title: str) -> None:
    print(f"\n{title}  (load average {load_average()})")
    print(f"  {'step':<34} {'ours s':>9} {'base s':>9} {'speedup':>9} {'peakGB':>6}")


# -- straightforward baselines ---------------------------------------------------------------------
def baseline_fpc_dense(matrix: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Per class: shuffle the positive and the negative row lists, keep the first n of each."""
    rng = np.random.default_rng(seed)
    out = np.full(matrix.shape, UNK, dtype=np.int8)
    for c in range(matrix.shape[1]):
        for code in (POS, NEG):
            idx = np.where(matrix[:, c] == code)[0]
            out[rng.permutation(idx)[:n], c] = code
    return out


def baseline_rps_dense(matrix: np.ndarray, p: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hide = (rng.random(matrix.shape) < p) | (matrix == UNK)
    return np.where(hide, np.int8(UNK), matrix)


def baseline_counts_dense(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.array([(matrix[:, c] == POS).sum() for c in range(matrix.shape[1])]), \
        np.array([(matrix[:, c] == NEG).sum() for c in range(matrix.shape[1])])


def baseline_fpc_sparse_classes(labels: PartialLabels, classes: np.ndarray, n: int, seed: int) -> None:
    """Per-class loop over the sparse arrays (a full scan per class)."""
    rng = np.random.default_rng(seed)
    _, cols, values = labels.sparse
    for c in classes:
        for code in (POS, NEG):
            idx = np.flatnonzero((cols == c) & (values == code))
            rng.permutation(idx)[:n]


def baseline_counts_sparse_classes(labels: PartialLabels, classes: np.ndarray) -> None:
    _, cols, values = labels.sparse
    for c in classes:
        in_class = cols == c
        int((values[in_class] == POS).sum()), int((values[in_class] == NEG).sum())


# -- COCO ------------------------------------------------------------------------------------------
def coco_labels(seed: int = 0) -> PartialLabels:
    """Complete 82,081 x 80 labels, ~2.9 positives per image with a skewed class distribution."""
    rng = np.random.default_rng(seed)
    rate = 1.0 / (np.arange(COCO_CLASSES) + 3.0)
    rate *= 2.9 / rate.sum()
    matrix = (rng.random((COCO_IMAGES, COCO_CLASSES)) < rate).astype(np.int8)
    return PartialLabels.from_dense(matrix, np.arange(COCO_IMAGES), [f"c{i}" for i in range(COCO_CLASSES)],
                                    complete=True)


def bench_coco(repeat: int) -> None:
    labels = coco_labels()
    m = labels.matrix
    header(f"COCO size: {COCO_IMAGES:,} x {COCO_CLASSES} complete, dense (best of {repeat})")
    t, _ = timed(lambda: simulate_fpc(labels, 1000, 0), repeat)
    b, _ = timed(lambda: baseline_fpc_dense(m, 1000, 0), repeat)
    row("FPC(1000)", t, b, "target < 1 s")
    t, _ = timed(lambda: simulate_rps(labels, 0.5, 0), repeat)
    b, _ = timed(lambda: baseline_rps_dense(m, 0.5, 0), repeat)
    row("RPS(0.5)", t, b, "target < 1 s")
    t, _ = timed(lambda: simulate_single_positive(labels, 0), repeat)
    row("single positive", t)
    sparse = labels.to_sparse()
    t, _ = timed(lambda: simulate_fpc(sparse, 1000, 0), repeat)
    b, _ = timed(lambda: baseline_fpc_dense(m, 1000, 0), repeat)
    row("FPC(1000), sparse store", t, b, "same bits as dense")
    t, _ = timed(lambda: simulate_rps(sparse, 0.5, 0), repeat)
    b, _ = timed(lambda: baseline_rps_dense(m, 0.5, 0), repeat)
    row("RPS(0.5), sparse store", t, b, "same bits as dense")
    t, _ = timed(labels.counts, repeat)
    b, _ = timed(lambda: baseline_counts_dense(m), repeat)
    row("per-class counts", t, b)


# -- OpenImages ------------------------------------------------------------------------------------
def generate_openimages(path: Path, scale: float, seed: int = 0) -> dict:
    """Synthetic natural labels at OpenImages size, written with ``save_simulation``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from plbench.artifacts.simulations import save_simulation

    rng = np.random.default_rng(seed)
    n, c, m = int(OI_IMAGES * scale), OI_CLASSES, int(OI_ANNOTATIONS * scale)
    t0 = time.perf_counter()
    per_image = rng.poisson(m / n, n)
    rows = np.repeat(np.arange(n, dtype=np.int64), per_image)
    weights = 1.0 / (np.arange(c) + 20.0) ** 1.1  # long-tailed class frequencies
    cdf = np.cumsum(weights / weights.sum())
    key = rows * c + np.minimum(np.searchsorted(cdf, rng.random(rows.size)), c - 1)
    del rows
    key.sort()
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]  # drop repeated (image, class) pairs
    rows, cols = key // c, (key % c).astype(np.int32)
    del key
    values = (rng.random(rows.size) < 0.4).astype(np.int8)  # ~40% of verified labels are positive
    ids = pc.utf8_lpad(pa.array(np.arange(n)).cast(pa.string()), 16, "0").to_numpy(zero_copy_only=False)
    labels = PartialLabels.from_sparse(rows, cols, values, ids, [f"/m/{i:05d}" for i in range(c)], complete=False)
    gen_s = time.perf_counter() - t0
    save_s, _ = timed(lambda: save_simulation(path, labels, dataset="openimages-synthetic", fingerprint="0" * 64,
                                              scheme="natural", param=None, seed=seed))
    return {"generate_s": gen_s, "save_s": save_s, "annotations": int(rows.size), "file_mb": path.stat().st_size / 1e6}


def measure_openimages(path: Path, dense_limit: float, sample_classes: int) -> None:
    from plbench.artifacts.simulations import load_simulation

    ours: dict[str, float] = {}

    def step(name: str, fn: Callable, note: Callable[[object], str] = lambda r: ""):
        t, result = timed(fn)
        ours[name] = t
        row(name, t, None, note(result), peak_rss_gb())
        return result

    labels, _ = step("load parquet", lambda: load_simulation(path), lambda r: f"{r[0].num_explicit:,} annotations")
    n, c = labels.shape
    kept = (lambda r: f"kept {r.num_explicit:,}")
    step("RPS(0.5)", lambda: simulate_rps(labels, 0.5, 0), kept)
    step("FPC(1000)", lambda: simulate_fpc(labels, 1000, 0), kept)
    step("per-class counts", labels.counts)
    batches = np.random.default_rng(1).integers(0, n, size=(1000, 128))

    def draw() -> int:
        total = 0
        for idx in batches:
            total += int((labels.batch(idx) != UNK).sum())
        return total

    step("1000 batches of 128 rows", draw, lambda r: f"{r:,} annotated entries seen")
    step("single positive", lambda: simulate_single_positive(labels, 0), kept)
    rows, cols, values = labels.sparse
    pos = values == POS
    complete = PartialLabels.from_sparse(rows[pos], cols[pos], values[pos], labels.image_ids, labels.class_names,
                                         complete=True, validate=False)
    del pos
    step("FPC(1000), complete labels", lambda: simulate_fpc(complete, 1000, 0),
         lambda r: f"kept {r.num_explicit:,}; negatives from the implicit complement")
    del complete
    print(f"  peak RSS of the measured steps: {peak_rss_gb():.2f} GB (target < 8 GB)")

    print("  baselines, run after the measured steps (not part of the peak above); 'ours s' repeated:")
    if n * c <= dense_limit:
        matrix = labels.to_dense()
        b, _ = timed(lambda: baseline_fpc_dense(matrix, 1000, 0))
        row("FPC(1000) vs dense per-class loop", ours["FPC(1000)"], b)
        b, _ = timed(lambda: baseline_rps_dense(matrix, 0.5, 0))
        row("RPS(0.5) vs dense mask", ours["RPS(0.5)"], b)
        b, _ = timed(lambda: baseline_counts_dense(matrix))
        row("counts vs dense per-class loop", ours["per-class counts"], b)
        b, _ = timed(lambda: [matrix[idx] for idx in batches])
        row("batches vs dense row gather", ours["1000 batches of 128 rows"], b)
    else:
        print(f"  the dense matrix ({n * c / GB:.1f} GB) exceeds --dense-limit: per-class loops over the sparse "
              f"arrays, timed on {sample_classes} classes and extrapolated to {c}")
        sample = np.linspace(0, c - 1, sample_classes).astype(int)
        b, _ = timed(lambda: baseline_fpc_sparse_classes(labels, sample, 1000, 0))
        row("FPC(1000) vs per-class sparse scan", ours["FPC(1000)"], b * c / sample_classes, "extrapolated")
        b, _ = timed(lambda: baseline_counts_sparse_classes(labels, sample))
        row("counts vs per-class sparse scan", ours["per-class counts"], b * c / sample_classes, "extrapolated")


def bench_openimages(scale: float, workdir: Path | None, keep: bool, dense_limit: float, sample_classes: int) -> None:
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="plbench-bench-")
        workdir = Path(tmp.name)
    path = workdir / f"openimages-synthetic-x{scale:g}.parquet"
    me = [sys.executable, str(Path(__file__).resolve())]
    try:
        if not path.is_file():
            print(f"\ngenerating synthetic OpenImages-size labels (scale {scale:g}) into {path} ...", flush=True)
            out = subprocess.run(me + ["_generate", "--scale", str(scale), "--path", str(path)],
                                 check=True, capture_output=True, text=True).stdout
            info = json.loads(out.strip().splitlines()[-1])
            print(f"  {info['annotations']:,} annotations, generated in {info['generate_s']:.1f} s, "
                  f"saved in {info['save_s']:.1f} s, file {info['file_mb']:.0f} MB", flush=True)
        n = int(OI_IMAGES * scale)
        header(f"OpenImages size x{scale:g}: {n:,} x {OI_CLASSES:,}, natural partial, sparse "
               "(each step: target < 60 s; peak < 8 GB)")
        subprocess.run(me + ["_measure", "--path", str(path), "--dense-limit", str(dense_limit),
                             "--sample-classes", str(sample_classes)], check=True)
        print(f"  (load average after: {load_average()})")
    finally:
        if tmp is not None and not keep:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", default="all", choices=["all", "coco", "openimages", "_generate", "_measure"])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the OpenImages images and annotations")
    parser.add_argument("--repeat", type=int, default=3, help="COCO timings: best of this many runs")
    parser.add_argument("--workdir", type=Path, default=None, help="keep/reuse the generated parquet file here")
    parser.add_argument("--dense-limit", type=float, default=1.5e9, help="largest dense baseline matrix, bytes")
    parser.add_argument("--sample-classes", type=int, default=16, help="classes timed for extrapolated baselines")
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part == "_generate":
        print(json.dumps(generate_openimages(args.path, args.scale)))
        return
    if args.part == "_measure":
        measure_openimages(args.path, args.dense_limit, args.sample_classes)
        return
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs")
    if args.part in ("all", "coco"):
        bench_coco(args.repeat)
    if args.part in ("all", "openimages"):
        bench_openimages(args.scale, args.workdir, args.workdir is not None, args.dense_limit, args.sample_classes)


if __name__ == "__main__":
    main()

"""mAP speed: plbench's vectorised AP vs the research code's per-class numpy loop, in one run.

Data: N images x C classes of float32 sigmoid scores; class prevalence log-uniform in [0.1 %, 20 %]
(long-tailed, like LVIS / OpenImages), a fraction ``--unknown`` of the targets set to -1. Prints the
baseline time, plbench's time on the CPU (and on CUDA when available: inputs already on the GPU,
plus the host-to-device copy separately), the ratios, and the agreement with scikit-learn on a sample
of classes.

    python benchmarks/bench_map.py --n 40000 --c 2000
    python benchmarks/bench_map.py --n 40000 --c 9605 --repeats 1
    python benchmarks/bench_map.py --dry-run --json out.json    # tiny, CPU only, machine-readable figures
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from plbench.metrics import average_precision_per_class


def research_loop_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class loop of the ASL/CSL research code: argsort each column, cumulative sums (no tie
    grouping), -1 entries dropped first; NaN for classes without positives or negatives."""
    n, c = scores.shape
    ap = np.full(c, np.nan)
    for k in range(c):
        keep = targets[:, k] != -1
        s, t = scores[keep, k], targets[keep, k] == 1
        n_pos = t.sum()
        if n_pos == 0 or n_pos == t.size:
            continue
        order = np.argsort(-s)
        hits = t[order]
        tp = np.cumsum(hits)
        precision = tp / np.arange(1, hits.size + 1)
        ap[k] = precision[hits].sum() / n_pos
    return ap


def make_data(n: int, c: int, unknown: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prevalence = np.exp(rng.uniform(np.log(1e-3), np.log(0.2), c)).astype(np.float32)
    targets = (rng.random((n, c), dtype=np.float32) < prevalence).astype(np.int8)
    logits = rng.standard_normal((n, c), dtype=np.float32) + 2.0 * targets - 2.0
    scores = 1.0 / (1.0 + np.exp(-logits))
    targets[rng.random((n, c), dtype=np.float32) < unknown] = -1
    return scores.astype(np.float32), targets


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40000)
    ap.add_argument("--c", type=int, default=2000)
    ap.add_argument("--unknown", type=float, default=0.3, help="fraction of -1 targets")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice); 1 is steadier on a loaded machine")
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA measurement even where CUDA is available")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file (seconds, ratios)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes (N=2000, C=50, 1 repeat), CPU only")
    args = ap.parse_args()
    if args.dry_run:
        args.n, args.c, args.repeats, args.no_cuda = 2000, 50, 1, True
    if args.threads:
        torch.set_num_threads(args.threads)
    figures: dict = {"n": args.n, "c": args.c, "unknown": args.unknown, "dry_run": args.dry_run}

    scores, targets = make_data(args.n, args.c, args.unknown, args.seed)
    print(f"# mAP benchmark: N={args.n} C={args.c} unknown={args.unknown} torch threads={torch.get_num_threads()} "
          f"load={os.getloadavg()[0]:.2f}")

    t_ours, ours = best_of(lambda: average_precision_per_class(scores, targets), args.repeats)
    print(f"plbench CPU          : {t_ours:8.3f} s")
    figures["plbench_cpu_s"] = t_ours
    t_sort, _ = best_of(lambda: np.sort(scores, axis=0), 1)
    print(f"np.sort (reference)  : {t_sort:8.3f} s")
    if not args.skip_baseline:
        t_base, base = best_of(lambda: research_loop_ap(scores, targets), max(1, args.repeats - 1))
        print(f"research loop (numpy): {t_base:8.3f} s")
        print(f"speed-up CPU         : {t_base / t_ours:8.2f} x")
        both = ~np.isnan(base)
        print(f"max |AP - loop AP|   : {np.nanmax(np.abs(ours[both] - base[both])):.2e} (loop does not group ties)")
        figures.update(loop_s=t_base, speedup_cpu=t_base / t_ours)

    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    sample = rng.choice(np.flatnonzero(~np.isnan(ours)), size=min(20, int((~np.isnan(ours)).sum())), replace=False)
    err = max(
        abs(ours[k] - average_precision_score(targets[targets[:, k] != -1, k] == 1, scores[targets[:, k] != -1, k]))
        for k in sample
    )
    print(f"max |AP - sklearn|   : {err:.2e} over {len(sample)} classes")
    figures["max_abs_diff_sklearn"] = float(err)

    if torch.cuda.is_available() and not args.no_cuda:
        dev = torch.device("cuda")
        t0 = time.perf_counter()
        s_gpu, t_gpu = torch.from_numpy(scores).to(dev), torch.from_numpy(targets).to(dev)
        torch.cuda.synchronize()
        t_copy = time.perf_counter() - t0
        average_precision_per_class(s_gpu, t_gpu)  # warm-up

        def gpu_run():
            out = average_precision_per_class(s_gpu, t_gpu)
            torch.cuda.synchronize()
            return out

        t_cuda, gpu = best_of(gpu_run, args.repeats)
        print(f"plbench CUDA         : {t_cuda:8.4f} s (+{t_copy:.3f} s host-to-device copy) on "
              f"{torch.cuda.get_device_name()}")
        figures.update(plbench_cuda_s=t_cuda, copy_s=t_copy, cuda_device=torch.cuda.get_device_name())
        if not args.skip_baseline:
            print(f"speed-up CUDA        : {t_base / t_cuda:8.1f} x")
            figures["speedup_cuda"] = t_base / t_cuda
        print(f"max |CUDA - CPU|     : {np.nanmax(np.abs(gpu - ours)):.2e}")
    else:
        print("CUDA                 : " + ("skipped" if args.no_cuda else "not available"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()

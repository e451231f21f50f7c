"""Fake but realistic run folders for looking at a report: a CSL-style COCO grid (FPC 1000/500/100, RPS
0.3/0.5/0.7; Ignore CE, Negative CE, Negative ASL, Selective P-ASL; 3 seeds), a single-positive grid and an
LVIS run, with per-class APs, true class frequencies, an estimated prior and training curves.

Usage: ``python benchmarks/report_fixture.py OUT_FOLDER`` writes ``OUT_FOLDER/runs`` and ``OUT_FOLDER/prior.csv``.
The numbers are drawn from a seeded generator: they look like results, they are not results.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from plbench.artifacts.runs import RunFolder
from plbench.priors import write_prior_csv

COLUMNS = {("bce", "ignore"): -6.0, ("bce", "negative"): -2.0, ("asl", "negative"): -1.5, ("pasl", "selective"): 0.0}
LEVELS = {"fpc1000": ("fpc", 1000, 83.0), "fpc500": ("fpc", 500, 80.0), "fpc100": ("fpc", 100, 72.0),
          "rps0.3": ("rps", 0.3, 86.0), "rps0.5": ("rps", 0.5, 85.0), "rps0.7": ("rps", 0.7, 83.0)}


def _run(root: Path, name: str, summary: dict, val_map: float, epochs: int, rng: np.random.Generator) -> None:
    folder = RunFolder(root / name)
    folder.open({"run_name": name, "loss": summary["loss"], "mode": summary["mode"], "seed": summary["seed"]})
    for e in range(epochs):
        frac = (e + 1) / epochs
        folder.append_metrics({"epoch": e, "train_loss": 0.2 / frac, "val_map": val_map - 12 * (1 - frac) ** 2
                               + rng.normal(0, 0.3), "val_map_ema": val_map - 15 * (1 - frac) ** 1.5})
    folder.write_summary({**summary, "run": name, "val_map": val_map})


def write_fixture(out: Path) -> Path:
    rng = np.random.default_rng(0)
    classes = [f"class{i:02d}" for i in range(40)]
    freq = np.sort(rng.uniform(0.003, 0.5, len(classes)) ** 1.5)[::-1]
    prior = np.clip(freq * rng.lognormal(0.2, 0.4, len(classes)), 1e-4, 1)
    write_prior_csv(out / "prior.csv", classes, prior)
    base = {"dataset": "coco", "recipe": "csl", "protocol": "fine-tuned", "backbone": "tresnet_m.miil_in21k",
            "head": "gap", "image_size": 448, "epochs": 30, "train_images": 82081, "val_images": 40137,
            "num_classes": len(classes), "class_names": classes, "train_true_frequency_per_class": freq.tolist(),
            "evaluation_protocol": "final epoch, EMA model", "train_seconds": 5400.0, "wall_seconds": 6000.0}
    runs = out / "runs"
    for tag, (scheme, param, level) in LEVELS.items():
        for (loss, mode), offset in COLUMNS.items():
            for seed in range(3):
                m = level + offset * (1.3 if scheme == "fpc" and param == 100 else 1.0) + rng.normal(0, 0.4)
                ap = np.clip(m + 25 * (np.log(freq) - np.log(freq).mean()) / 4 + rng.normal(0, 3, len(classes))
                             + (offset * 2 * (freq < 0.05)), 1, 100)
                summary = {**base, "labels": tag, "loss": loss, "mode": mode, "seed": seed,
                           "simulation": {"scheme": scheme, "param": param, "seed": seed},
                           "val_map_plain": m - 0.6, "val_map_ema": m, "best_val_map": m + 0.3,
                           "authors_map": m + 0.5, "ap_per_class": ap.round(3).tolist(),
                           "train_annotated_fraction": 0.03 if scheme == "fpc" else 1 - param,
                           "prior_path": str(out / "prior.csv") if mode == "selective" else None,
                           "provenance": {"plbench_version": "0.1.0", "git_commit": "e129ef1" + "0" * 33,
                                          "command": "plbench train --config "
                                                     f"sweeps/csl/{tag}-{loss}-{mode}-s{seed}.json",
                                          "hardware": "1x NVIDIA H200, 16 CPU cores",
                                          "torch_version": "2.14.1",
                                          "started_at": "2026-11-28T09:00:00Z", "finished_at": "2026-11-28T10:40:00Z"}}
                _run(runs / "coco", f"coco-{tag}-{loss}-{mode}-s{seed}", summary, m, 30, rng)
    spl = {**base, "backbone": "resnet50", "recipe": "light", "evaluation_protocol": "final epoch, plain model",
           "labels": "spl", "val_map_ema": None, "train_true_frequency_per_class": None, "ap_per_class": None}
    for loss, level in {"an": 63.5, "an_ls": 66.0, "epr": 64.0, "ll_r": 70.2}.items():
        for seed in range(2):
            m = level + rng.normal(0, 0.5)
            _run(runs / "spl", f"coco-spl-{loss}-s{seed}", {**spl, "loss": loss, "mode": None, "seed": seed,
                 "val_map_plain": m, "best_val_map": m + 0.4, "authors_map": m + 0.4,
                 "simulation": {"scheme": "spl", "param": None, "seed": seed}}, m, 10, rng)
    lvis = {**base, "dataset": "lvis", "backbone": "resnet50", "labels": "natural", "simulation": None,
            "ap_per_class": None, "train_true_frequency_per_class": None}
    for (loss, mode), offset in COLUMNS.items():
        m = 30 + offset / 2
        _run(runs / "lvis", f"lvis-{loss}-{mode}", {**lvis, "loss": loss, "mode": mode, "seed": 0,
             "map_rare": m - 12 + offset, "map_common": m - 3, "map_frequent": m + 8}, m, 5, rng)
    return runs


if __name__ == "__main__":
    print(write_fixture(Path(sys.argv[1])))

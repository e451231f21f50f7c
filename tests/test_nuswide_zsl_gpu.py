"""benchmarks/nuswide_zsl_gpu.sh --dry-run: the one-call NUS-WIDE zero-shot command runs end to end on a tiny
dataset in ML-Decoder's layout (data.csv, benchmark_81_v0.json, a [300, C] wordvec_array.pth in sorted
class order) and prints ZSL / GZSL numbers; the real run refuses to start without NUSWIDE_ROOT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "nuswide_zsl_gpu.sh"


def _run(args, tmp_path, **env):
    full = {**os.environ, "PYTHON": sys.executable, "PLBENCH_PROGRESS": "off", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full, timeout=300,
                          cwd=tmp_path)


def test_dry_run_trains_and_reports_zero_shot(tmp_path):
    out = tmp_path / "out"
    r = _run(["--dry-run", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((out / "nuswide_zsl_config.json").read_text())
    assert cfg["zsl_split"].endswith("benchmark_81_v0.json") and cfg["class_embeddings"].endswith("wordvec_array.pth")
    assert (cfg["loss"], cfg["mode"], cfg["lr"], cfg["weight_decay"], cfg["ema_decay"]) == ("asl", "negative", 1e-4,
                                                                                          1e-2, 0.9997)
    summary = json.loads((out / "runs" / "nuswide-zsl-ml-decoder-resnet10t" / "summary.json").read_text())
    z = summary["zero_shot"]
    assert (z["num_seen"], z["num_unseen"]) == (4, 2) and summary["class_names"] == ["animal", "beach", "cloud", "sky"]
    text = (out / "zero_shot.txt").read_text()
    assert f"gzsl                 mAP {z['gzsl']['map']:.1f}" in text and "zsl_unseen_positive" in text


def test_real_run_needs_the_dataset(tmp_path):
    r = _run([], tmp_path, NUSWIDE_ROOT=str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "NUSWIDE_ROOT" in r.stderr

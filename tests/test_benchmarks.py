"""The GPU benchmarks cannot rot: ``benchmarks/gpu_checks.sh`` runs in its CPU dry mode (every part, tiny
sizes, including ``bench_train.py --dry-run``), reports failures and time-outs in its table, and the
training benchmark counts exactly the images the engine's loader yields."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from plbench.artifacts.runs import RunFolder
from plbench.config import TrainConfig
from plbench.datasets.synthetic import write_synthetic_coco
from plbench.engine import train as engine

BENCH = REPO / "benchmarks"
SCRIPT = BENCH / "gpu_checks.sh"
PARTS = ["data", "map", "mldecoder", "throughput", "train", "torchrun"]


@pytest.fixture(scope="module")
def bench_train():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_train

        yield bench_train
    finally:
        sys.path.remove(str(BENCH))


def _script(tmp_path, extra_env=None, args=("--dry-run",)):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(extra_env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args, "--out", str(tmp_path)], capture_output=True, text=True,
                          check=False, env=env, timeout=900, cwd=tmp_path)


def _summary(stdout: str) -> dict[str, list[str]]:
    """part -> its columns in the summary table."""
    table = stdout.split("# gpu_checks summary", 1)[1].split("\n# logs", 1)[0]
    rows = {}
    for line in table.splitlines()[3:]:
        cols = re.split(r"\s{2,}", line.strip())
        if cols and cols[0] in PARTS:
            rows[cols[0]] = cols
    return rows


@pytest.mark.slow
def test_gpu_checks_dry_run_runs_every_part(tmp_path):
    proc = _script(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _summary(proc.stdout)
    assert sorted(rows) == sorted(PARTS)
    assert all(rows[p][1] == "ok" for p in PARTS), rows
    # the mAP and ML-Decoder benchmarks still agree with their references
    m = json.loads((tmp_path / "map.json").read_text())
    assert m["dry_run"] and m["max_abs_diff_sklearn"] < 1e-6 and m["speedup_cpu"] > 0
    d = json.loads((tmp_path / "mldecoder.json").read_text())
    assert [r["classes"] for r in d["rows"]] == [80] and d["rows"][0]["max_abs_diff"] < 1e-4
    # bench_train --dry-run: the three parts, each with a rate
    t = json.loads((tmp_path / "throughput.json").read_text())
    assert t["dry_run"] and t["device_type"] == "cpu"
    got = {(r["part"], r["variant"].split(" (")[0]) for r in t["rows"] if r["images_per_s"] and not r["error"]}
    assert got == {("step", "fp32 NCHW"), ("step", "engine"), ("step", "fp32 channels_last"),
                   ("step", "engine + per-step target check"), ("data", "loader, 1 workers"),
                   ("loop", "train(), epoch 1/1")}
    # one-epoch trainings, plain and under torchrun: the table shows the run folder's own figures
    for part, name in (("train", "plain"), ("torchrun", "torchrun1")):
        run = RunFolder(tmp_path / "runs" / name)
        assert run.is_finished and len(run.metrics()) == 1
        assert f"{run.metrics()[0]['train_images_per_s']:.0f} img/s" in rows[part][3]
        assert f"val mAP {run.summary()['val_map']:.2f}" in rows[part][3]
    assert (tmp_path / "summary.txt").read_text().strip() in proc.stdout


@pytest.mark.slow
def test_gpu_checks_reports_a_failing_part_and_goes_on(tmp_path):
    # no data part: the training finds no dataset and exits 2; the next part still runs
    proc = _script(tmp_path, {"GPU_CHECKS_PARTS": "train mldecoder"})
    assert proc.returncode == 1
    rows = _summary(proc.stdout)
    assert rows["train"][1] == "FAILED (exit 2)" and "see train.log" in rows["train"][3]
    assert rows["mldecoder"][1] == "ok"
    assert all(rows[p][1] == "skipped" for p in ("data", "map", "throughput", "torchrun"))
    assert "# not passed: train" in proc.stdout


def test_gpu_checks_reports_a_time_out(tmp_path):
    proc = _script(tmp_path, {"GPU_CHECKS_PARTS": "map", "GPU_CHECKS_TIMEOUT_SCALE": "0.001"})
    assert proc.returncode == 1
    assert _summary(proc.stdout)["map"][1] == "TIMEOUT"


def test_gpu_checks_rejects_unknown_arguments(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2 and "unknown argument --bogus" in proc.stderr


def test_data_path_counts_the_loader_images_after_the_first_batch(bench_train, tmp_path):
    root = tmp_path / "syn"
    write_synthetic_coco(root, train=10, val=3, num_classes=3, image_size=32, seed=0)
    cache = bench_train.prepare_data(root, [32], train_images=10, val_images=3, num_classes=3, source_size=32,
                                     workers=0, say=lambda s: None)
    config = TrainConfig(data_root=str(root), image_size=32, batch_size=4, workers=1, cache_dir=str(cache))
    images, seconds = bench_train.bench_data(config, torch.device("cpu"), epochs=2)
    # 10 images in batches of 4, 4, 2 per epoch; two epochs less the first batch (worker start-up)
    assert images == 2 * 10 - 4 and seconds > 0


def test_step_and_loop_options_follow_the_engine(bench_train):
    cpu = torch.device("cpu")
    base, eng, extra = bench_train.step_variants(cpu, amp=True, compile_model=False)
    # --amp on the CPU is bf16 autocast (runtime.amp_dtype), NCHW and for-each Adam, as the engine trains there
    from plbench.engine.runtime import amp_dtype

    assert amp_dtype(TrainConfig(amp=True).amp, cpu) == torch.bfloat16 and bench_train.describe(eng, cpu).startswith("bf16")
    assert (eng.amp, eng.fused, eng.channels_last) == (True, False, False)
    assert (base.amp, base.fused, base.channels_last) == (False, False, False)
    assert [v.name for v in extra] == ["fp32 channels_last", "engine + per-step target check"]
    # same pixels per batch on CUDA: 256 at 224 px, 64 at 448 px
    cuda = torch.device("cuda")
    assert [bench_train.default_batch(cuda, s) for s in (224, 448)] == [256, 64]
    assert bench_train.default_batch(cpu, 448) == 16


def test_a_failing_part_is_a_row_with_its_error(bench_train, tmp_path):
    args = bench_train.parse_args(["--dry-run", "--parts", "step", "--data-root", str(tmp_path)])
    rows = bench_train.run_config(args, torch.device("cpu"), "no_such_backbone", "gap", 32, tmp_path,
                                  tmp_path / "runs", 3)
    assert rows and {r.part for r in rows} == {"step"} and all("no_such_backbone" in r.error for r in rows)
    assert "FAILED InputError" in bench_train.format_table(rows)


@pytest.fixture(scope="module")
def bench_methods():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_methods

        yield bench_methods
    finally:
        sys.path.remove(str(BENCH))


def test_bench_methods_runs_every_method_against_an(bench_methods, capsys):
    rows = bench_methods.main(["--images", "64", "--features", "8", "--classes", "4", "--batch", "16", "--steps", "2",
                               "--repeats", "2", "--methods", "role", "em_apl", "ll_ct", "gr_loss", "pasl:negative"])
    assert [r.method for r in rows] == ["an", "role", "em_apl", "ll_ct", "gr_loss", "pasl:negative"]
    assert rows[0].ratio == 1.0 and all(r.ms_per_step > 0 for r in rows)
    for r in rows:  # each ratio is the row's time over AN's from the same run
        assert r.ratio == pytest.approx(r.ms_per_step / rows[0].ms_per_step)
    assert {r.method: r.needs for r in rows}["em_apl"] == "per_image_state, train_pass"
    out = capsys.readouterr().out
    assert out.count("\n") == 3 + len(rows) and "x AN" in out  # title, header, rule, one line per row


def test_bench_methods_default_list_is_every_builtin_method_and_boostlu(bench_methods, capsys):
    from plbench.methods.registry import builtin_methods

    defaults = bench_methods.default_methods()
    assert defaults[0] == "an" and defaults[-1] == "ll_r+boostlu"
    assert sorted(defaults[:-1]) == sorted(builtin_methods()) and len(defaults) == len(builtin_methods()) + 1
    assert {"em", "em_apl", "ll_cp", "hill", "splc"} <= set(defaults)
    rows = bench_methods.main(["--images", "32", "--features", "8", "--classes", "4", "--batch", "16", "--steps", "1",
                               "--repeats", "1", "--tokens", "3"])  # no --methods: the default list
    names = [r.method for r in rows]
    # the pooled rows, then the token rows with their own reference
    assert names == defaults[:-1] + ["an+gap", "ll_r+boostlu"]
    by = {r.method: r for r in rows}
    assert all(r.ms_per_step > 0 for r in rows)
    assert by["an+gap"].ratio == 1.0
    assert by["ll_r+boostlu"].ratio == pytest.approx(by["ll_r+boostlu"].ms_per_step / by["an+gap"].ms_per_step)
    assert by["em"].ratio == pytest.approx(by["em"].ms_per_step / by["an"].ms_per_step)
    # methods with modes ran in their default mode (pasl needs a mode; its default is selective)
    assert by["pasl"].needs == "mode, prior"
    assert "+HEAD rows on 3 tokens" in capsys.readouterr().out


def test_bench_methods_spec_parsing(bench_methods):
    assert bench_methods.parse_spec("pasl:negative") == ("pasl", "negative", None)
    assert bench_methods.parse_spec("ll_r+boostlu") == ("ll_r", None, "boostlu")
    assert bench_methods.parse_spec("pasl:ignore+gap") == ("pasl", "ignore", "gap")
    assert bench_methods.parse_spec("an") == ("an", None, None)

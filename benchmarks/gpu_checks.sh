#!/usr/bin/env bash
# Every GPU benchmark of plbench in one call, one summary table at the end (under 8 minutes on one
# H100/H200: the per-part time limits below add up to 470 s).
#
#   benchmarks/gpu_checks.sh [--dry-run] [--out DIR]
#
# Parts, each under its own time limit; a failing or timed-out part is reported in the table and the
# script goes on:
#   data        a synthetic COCO-layout dataset (plbench data synthetic) and its image caches (plbench data cache)
#   map         benchmarks/bench_map.py: mAP on the GPU vs the research code's per-class loop (target >= 100x)
#   mldecoder   benchmarks/bench_ml_decoder.py: ML-Decoder fwd+bwd vs the group-loop version (target >= 5x)
#   throughput  benchmarks/bench_train.py: data path, training step, whole loop; resnet50, gap and
#               ml-decoder, 224 and 448 px (target: whole loop >= 2,900 img/s at 224 px, data path faster
#               than the step)
#   train       plbench train --device cuda --amp: one epoch of resnet50 at 224 px from the image cache
#   torchrun    the same under torchrun --standalone --nproc-per-node 1 (WORLD_SIZE 1: the engine joins no
#               process group, so this checks the launch path; DDP over NCCL needs two GPUs)
#   nuswide_zsl benchmarks/nuswide_zsl_gpu.sh: the NUS-WIDE zero-shot run at ML-Decoder's settings (hours, not
#               in the 470 s): a default part only when NUSWIDE_ROOT holds ML-Decoder's data.csv; limit
#               GPU_CHECKS_NUSWIDE_LIMIT seconds (default 172800); its settings variables (NUSWIDE_*) apply
#
# --dry-run (or GPU_CHECKS_DRY=1): every part at tiny size on the CPU (what tests/test_benchmarks.py runs).
# --out DIR (or GPU_CHECKS_OUT): where the logs, JSON figures and summary.txt go (default: a new temporary
# folder). The dataset and caches (3 GB on the GPU) live in a temporary folder removed at the end.
# Other settings: PYTHON (interpreter, default python), GPU_CHECKS_PARTS (a space-separated subset of the
# parts), GPU_CHECKS_WORKERS (loader processes, default min(16, CPUs)), GPU_CHECKS_BACKBONE (default
# resnet50), GPU_CHECKS_TIMEOUT_SCALE (multiplies every time limit, default 1).
# Exit status: 0 when every selected part passed, 1 otherwise.

set -u

PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
DRY=${GPU_CHECKS_DRY:-0}
OUT=${GPU_CHECKS_OUT:-}
. "$HERE/gpu_env.sh"
gpu_script_args gpu_checks.sh 2,26 "$@"
DATA=$(mktemp -d "${TMPDIR:-/tmp}/gpu_checks_data.XXXXXX")
trap 'rm -rf "$DATA"' EXIT
DEFAULT_PARTS="data map mldecoder throughput train torchrun"
if [ "$DRY" = 0 ] && [ -n "${NUSWIDE_ROOT:-}" ] && [ -f "${NUSWIDE_ROOT}/data.csv" ]; then
  DEFAULT_PARTS="$DEFAULT_PARTS nuswide_zsl"  # the real data is here: the paper-settings run too
fi
PARTS=${GPU_CHECKS_PARTS:-$DEFAULT_PARTS}
SCALE=${GPU_CHECKS_TIMEOUT_SCALE:-1}
export PLBENCH_PROGRESS=off

if [ "$DRY" = 1 ]; then
  # tiny sizes; one OpenMP thread per process (several threads on a busy small CPU are slower)
  export OMP_NUM_THREADS=1
  DEVICE=cpu; BACKBONE=${GPU_CHECKS_BACKBONE:-resnet10t}; SIZES="32"; SIZE=32; BATCH=4
  WORKERS=${GPU_CHECKS_WORKERS:-1}; TRAIN_IMAGES=16; VAL_IMAGES=8; CLASSES=4; SOURCE_SIZE=32
  MAP_ARGS=(--dry-run); MLD_ARGS=(--dry-run)
  TRAIN_BENCH_ARGS=(--dry-run --backbone "$BACKBONE")
  LIMIT_DATA=120; LIMIT_MAP=120; LIMIT_MLD=120; LIMIT_THROUGHPUT=240; LIMIT_TRAIN=120; LIMIT_TORCHRUN=120
  LIMIT_NUSWIDE=300; NUSWIDE_ARGS=(--dry-run)
else
  DEVICE=cuda; BACKBONE=${GPU_CHECKS_BACKBONE:-resnet50}; SIZES="224 448"; SIZE=224; BATCH=256
  WORKERS=${GPU_CHECKS_WORKERS:-$(( NCPU < 16 ? NCPU : 16 ))}; TRAIN_IMAGES=4096; VAL_IMAGES=256; CLASSES=20
  SOURCE_SIZE=64
  MAP_ARGS=(); MLD_ARGS=()
  TRAIN_BENCH_ARGS=(--device cuda --backbone "$BACKBONE" --head gap ml-decoder --image-size 224 448
                    --workers "$WORKERS" --train-images "$TRAIN_IMAGES" --val-images "$VAL_IMAGES")
  LIMIT_DATA=45; LIMIT_MAP=75; LIMIT_MLD=40; LIMIT_THROUGHPUT=210; LIMIT_TRAIN=50; LIMIT_TORCHRUN=50
  LIMIT_NUSWIDE=${GPU_CHECKS_NUSWIDE_LIMIT:-172800}; NUSWIDE_ARGS=()
fi
SYN=$DATA/synthetic
STATUS=$OUT/status.tsv
: > "$STATUS"
echo "# gpu_checks: dry run $DRY, device $DEVICE, backbone $BACKBONE, $WORKERS workers, out $OUT, $(date -u +%FT%TZ)"

limit() { awk -v s="$SCALE" -v l="$1" 'BEGIN { v = s * l; if (v < 0.1) v = 0.1; print v }'; }

# run_part NAME LIMIT_S COMMAND...: run COMMAND under LIMIT_S seconds, log in OUT/NAME.log, one status line
run_part() {
  local name=$1 lim; lim=$(limit "$2"); shift 2
  case " $PARTS " in *" $name "*) ;; *) printf '%s\tskipped\t0\t-\n' "$name" >> "$STATUS"; return 0 ;; esac
  echo "== $name (limit ${lim} s): $*"
  local t0 t1 rc state
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$lim" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  case $rc in
    0) state=ok ;;
    124|137) state=timeout ;;
    *) state=failed ;;
  esac
  cat "$OUT/$name.log"
  printf '%s\t%s\t%s\t%s\n' "$name" "$state" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" "$rc" \
    >> "$STATUS"
}

make_data() {
  "$PY" -m plbench data synthetic --out "$SYN" --train "$TRAIN_IMAGES" --val "$VAL_IMAGES" --classes "$CLASSES" \
    --image-size "$SOURCE_SIZE" || return
  local split size
  for split in train val; do
    for size in $SIZES; do
      "$PY" -m plbench data cache --dataset synthetic --data-root "$SYN" --split "$split" --size "$size" \
        --workers "$NCPU" || return
    done
  done
}

TRAIN_ARGS=(train --dataset synthetic --data-root "$SYN" --cache-dir "$SYN/plbench_cache" --device "$DEVICE"
            --amp --epochs 1 --backbone "$BACKBONE" --head gap --image-size "$SIZE" --batch-size "$BATCH"
            --workers "$WORKERS" --mode negative --out "$OUT/runs")

export PY SYN TRAIN_IMAGES VAL_IMAGES CLASSES SOURCE_SIZE SIZES NCPU
export -f make_data  # `timeout` runs programs, not shell functions
run_part data "$LIMIT_DATA" bash -c make_data
run_part map "$LIMIT_MAP" "$PY" "$HERE/bench_map.py" "${MAP_ARGS[@]}" --json "$OUT/map.json"
run_part mldecoder "$LIMIT_MLD" "$PY" "$HERE/bench_ml_decoder.py" "${MLD_ARGS[@]}" --json "$OUT/mldecoder.json"
run_part throughput "$LIMIT_THROUGHPUT" "$PY" "$HERE/bench_train.py" "${TRAIN_BENCH_ARGS[@]}" --data-root "$SYN" \
  --json "$OUT/throughput.json"
run_part train "$LIMIT_TRAIN" "$PY" -m plbench "${TRAIN_ARGS[@]}" --run-name plain
run_part torchrun "$LIMIT_TORCHRUN" "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 \
  -m plbench "${TRAIN_ARGS[@]}" --run-name torchrun1
run_part nuswide_zsl "$LIMIT_NUSWIDE" env PYTHON="$PY" bash "$HERE/nuswide_zsl_gpu.sh" "${NUSWIDE_ARGS[@]}" \
  --out "$OUT/nuswide_zsl"

# -- the summary table ----------------------------------------------------------------------------------
"$PY" - "$OUT" "$DRY" <<'EOF' | tee "$OUT/summary.txt"
import json
import sys
from pathlib import Path

out, dry = Path(sys.argv[1]), sys.argv[2] == "1"


def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None


def verdict(ok, measured=True):
    if dry or not measured:
        return "n/a (dry run)" if dry else "n/a"
    return "met" if ok else "NOT MET"


status = {}
for line in (out / "status.tsv").read_text().splitlines():
    name, state, seconds, rc = line.split("\t")
    status[name] = (state, float(seconds), rc)

rows = []  # (part, status, seconds, figure, target, verdict)


def add(part, figure="", target="", result=""):
    state, seconds, rc = status.get(part, ("skipped", 0.0, "-"))
    label = {"ok": "ok", "skipped": "skipped", "timeout": "TIMEOUT"}.get(state, f"FAILED (exit {rc})")
    if state == "skipped":
        figure, result = "", ""
    elif state != "ok":
        figure, result = figure or f"see {part}.log", "NOT MET"
    rows.append((part, label, f"{seconds:.0f}" if state != "skipped" else "", figure, target, result))


add("data", "synthetic dataset and image caches")

m = load("map.json")
if m:
    if "speedup_cuda" in m:
        fig = (f"CUDA {m['plbench_cuda_s'] * 1e3:.1f} ms vs loop {m['loop_s']:.2f} s: {m['speedup_cuda']:.0f}x "
               f"(CPU {m['speedup_cpu']:.1f}x); N={m['n']} C={m['c']}")
        add("map", fig, ">= 100x (CUDA)", verdict(m["speedup_cuda"] >= 100))
    else:
        fig = f"no CUDA; CPU {m.get('speedup_cpu', float('nan')):.1f}x; N={m['n']} C={m['c']}"
        add("map", fig, ">= 100x (CUDA)", verdict(False, measured=False))
else:
    add("map", "", ">= 100x (CUDA)")

d = load("mldecoder.json")
if d:
    parts = []
    for precision in dict.fromkeys(r["precision"] for r in d["rows"]):
        sp = [r["speedup"] for r in d["rows"] if r["precision"] == precision]
        parts.append(f"{precision} {min(sp):.1f}-{max(sp):.1f}x")
    classes = ",".join(str(c) for c in dict.fromkeys(r["classes"] for r in d["rows"]))
    fig = f"{'; '.join(parts)} (C={classes}, batch {d['batch']}, {d['device']})"
    ok = min(r["speedup"] for r in d["rows"]) >= 5
    add("mldecoder", fig, ">= 5x (CUDA)", verdict(ok, measured="CPU" not in d["device"]))
else:
    add("mldecoder", "", ">= 5x")

t = load("throughput.json")
if t:
    configs = {}
    for r in t["rows"]:
        configs.setdefault((r["backbone"], r["head"], r["image_size"], r["batch_size"]), []).append(r)
    cuda = t["device_type"] == "cuda"
    first = True
    for (backbone, head, size, batch), rs in configs.items():
        by = {}
        for r in rs:
            key = r["part"] if r["part"] != "step" else ("base" if "baseline" in r["variant"] else r["variant"])
            by[key] = r
        eng = by.get("engine") or by.get("base")

        def ips(r):
            return f"{r['images_per_s']:.0f}" if r and r.get("images_per_s") else "FAILED" if r else "-"

        base = by.get("base")
        speed = (f" ({eng['images_per_s'] / base['images_per_s']:.2f}x fp32 NCHW)"
                 if eng and base and eng is not base and eng.get("images_per_s") and base.get("images_per_s") else "")
        fig = (f"{backbone} {head} {size}px b{batch}: step {ips(eng)}{speed}, data {ips(by.get('data'))}, "
               f"loop {ips(by.get('loop'))} img/s")
        targets, results = [], []
        data, loop = by.get("data"), by.get("loop")
        if data and eng and data.get("images_per_s") and eng.get("images_per_s"):
            targets.append("data > step")
            results.append(verdict(data["images_per_s"] > eng["images_per_s"], cuda))
        if backbone == "resnet50" and head == "gap" and size == 224:
            targets.append("loop >= 2900")
            results.append(verdict(bool(loop and (loop.get("images_per_s") or 0) >= 2900), cuda))
        failed = [r for r in rs if r.get("error")]
        if failed:
            fig += f"; FAILED: {', '.join(r['part'] + ' ' + r['variant'] for r in failed)}"
        if first:
            add("throughput", fig, ", ".join(targets), ", ".join(results))
            first = False
        else:
            rows.append(("", "", "", fig, ", ".join(targets), ", ".join(results)))
else:
    add("throughput", "", "loop >= 2900 (224 px), data > step")

for part in ("train", "torchrun"):
    name = {"train": "plain", "torchrun": "torchrun1"}[part]
    summary = out / "runs" / name / "summary.json"
    fig = ""
    if summary.is_file():
        s = json.loads(summary.read_text())
        metrics = [json.loads(x) for x in (out / "runs" / name / "metrics.jsonl").read_text().splitlines() if x]
        fig = (f"1 epoch {s['backbone']} {s['image_size']}px: {metrics[-1]['train_images_per_s']:.0f} img/s, "
               f"val mAP {s['val_map']:.2f}, world size {s['provenance'].get('world_size')}, "
               f"{s['wall_seconds']:.0f} s")
    add(part, fig, "finishes", verdict(status.get(part, ("",))[0] == "ok"))

zs = sorted((out / "nuswide_zsl" / "runs").glob("nuswide-zsl-*/summary.json"))
fig = ""
if zs:
    z = json.loads(zs[-1].read_text())["zero_shot"]
    fig = "; ".join(f"{key.upper()} mAP {z[key]['map']:.1f}" + "".join(
        f", F1@{k} {z[key][f'f1@{k}']:.1f}" for k in (3, 5) if f"f1@{k}" in z[key]) for key in ("zsl", "gzsl"))
    fig += f" ({z['num_seen']} seen / {z['num_unseen']} unseen; published ML-Decoder ZSL mAP 31.1)"
add("nuswide_zsl", fig, "finishes", verdict(status.get("nuswide_zsl", ("",))[0] == "ok"))

header = ("part", "status", "s", "figure", "target", "verdict")
widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(6)]
print()
print("# gpu_checks summary" + (" (DRY RUN: tiny sizes on the CPU, figures are not measurements)" if dry else ""))
for r in [header, tuple("-" * w for w in widths)] + rows:
    print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
EOF
summary_rc=${PIPESTATUS[0]}

bad=$(awk -F'\t' '$2 != "ok" && $2 != "skipped"' "$STATUS" | cut -f1 | tr '\n' ' ')
echo
echo "# logs, JSON figures and run folders in $OUT"
if [ -n "$bad" ] || [ "$summary_rc" != 0 ]; then
  echo "# not passed: ${bad:-summary}"
  exit 1
fi
exit 0

#!/usr/bin/env bash
# The GPU check of issue 17 in one command: at most 8 minutes on one H100/H200.
#
#   bash bench/gpu_check.sh [--dry | --rehearse] [RESULTS_DIR]
#
# 1. every `-m gpu` test (pytest, JUnit XML kept beside the results);
# 2. bench/gpu_check.py: fp16 + GradScaler, bf16, cudnn.benchmark, TF32, fused optimizers,
#    torch.compile reduce-overhead (CUDA graphs), the OOM micro-batch retry, peak CUDA memory, the
#    per-GPU trial pool, serving a trained model as fp16 and through TensorRT (issue 18; TensorRT
#    needs the `tensorrt` extra, else the knob's reason is the line), and a CIFAR-shaped
#    synthetic-resnet18 study of ~20 trials with
#    confirmation, then a tinylm `--keep-recipe` study (systems knobs only, the curves compared)
#    (through the `autotune` CLI, --json). Checks whose knob `autotune plugins --json`
#    does not list are skipped with a line saying so.
# Writes gpu_check.json and gpu_check.md into RESULTS_DIR (default bench/results/gpu-check-<time>),
# and into $OUT too when it is set.
#
# Without CUDA (no nvidia-smi, or torch sees no GPU), or with --dry, it runs nothing heavy: it
# prints one line per check it skipped and why, writes the same two files marked dry, and exits 0.
# CI runs that mode (tests/test_gpu_check.py). --rehearse runs the checks on this CPU at toy size.
# Exit status: 0 when no check failed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LIMIT=480  # seconds, the whole check
started=$SECONDS

mode=full out="" reason=""
for arg in "$@"; do
  case $arg in
    --dry) mode=dry; reason="dry mode asked for (--dry)" ;;
    --rehearse) mode=rehearse ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_check: unknown option $arg (try --help)" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
out=${out:-bench/results/gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

if [ "$mode" = full ]; then
  # nvidia-smi first: on a machine without a driver, no torch import (seconds) just to learn that
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    mode=dry reason="no CUDA: nvidia-smi not found (no NVIDIA driver here)"
  elif ! why=$("$PY" -c 'import sys, torch
if not torch.cuda.is_available():
    print(f"no CUDA: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no GPU"); sys.exit(1)' 2>&1); then
    mode=dry reason=${why:-"no CUDA: torch sees no GPU"}
  fi
fi

if [ "$mode" = dry ]; then
  exec "$PY" bench/gpu_check.py --dry --reason "$reason" --out "$out"
fi

extra=()
if [ "$mode" = full ]; then
  echo "gpu_check: pytest -m gpu (log: $out/gpu_tests.log)" >&2
  AUTOTUNE_HOME=$(mktemp -d) timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests \
    --junitxml="$out/gpu_tests.xml" >"$out/gpu_tests.log" 2>&1
  extra=(--pytest-xml "$out/gpu_tests.xml" --pytest-rc $?)
else
  extra=(--rehearse)
fi
left=$((LIMIT - (SECONDS - started) - 15))
# the study ends by itself inside --seconds; the timeout only stops a hung check
timeout $((left > 60 ? left : 60)) "$PY" bench/gpu_check.py --out "$out" --seconds $((left > 150 ? left - 30 : 120)) "${extra[@]}"
rc=$?
[ $rc = 124 ] && echo "gpu_check: stopped at the ${LIMIT}s limit; $out/gpu_check.json holds what finished" >&2
exit $rc

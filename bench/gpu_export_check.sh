#!/usr/bin/env bash
# Export checks for a GPU machine: the TensorRT tests (engines vs onnxruntime, fp32 and fp16, batch 1
# and 4; they skip with the reason where tensorrt is not installed) and the exported per-frame latency
# on the card (onnxruntime: CUDA provider where installed; AOTInductor compiled for CUDA; eager and
# fast-path PyTorch). Everything lands under $OUT.
#   OUT=/path bash bench/gpu_export_check.sh
# Budget: TEST_TIMEOUT and BENCH_TIMEOUT seconds (FASTMOTION_BENCH_AOTI=0 skips the AOTInductor compile).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-export-results}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
stamp() { echo "[$(date +%T)] $*"; }

stamp "environment"
"$PY" - > "$OUT/export-env.txt" 2>&1 <<'PY'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
for name in ("onnx", "onnxscript", "onnxruntime", "tensorrt"):
    try:
        module = importlib.import_module(name)
        extra = module.get_available_providers() if name == "onnxruntime" else ""
        print(name, module.__version__, extra)
    except ImportError as exc:
        print(name, "not installed:", exc)
PY
cat "$OUT/export-env.txt"

stamp "TensorRT export tests"
timeout "${TEST_TIMEOUT:-300}" "$PY" -m pytest -q tests/export/test_tensorrt.py -rs -p no:cacheprovider > "$OUT/export-tests.log" 2>&1
echo "tests exit code: $?"
tail -n 5 "$OUT/export-tests.log"

stamp "exported per-frame latency (vox 256x256, batch 1)"
timeout "${BENCH_TIMEOUT:-420}" "$PY" -m pytest -q -s bench/test_export.py -p no:cacheprovider \
    --benchmark-json="$OUT/export-bench.json" > "$OUT/export-bench.log" 2>&1
echo "bench exit code: $?"
grep -E "median ms|speedup|fastest|max \||provider|export s|passed|failed" "$OUT/export-bench.log"

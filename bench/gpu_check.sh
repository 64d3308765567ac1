#!/usr/bin/env bash
# One-shot check for a GPU machine (H100/H200): build fastmotion with its CUDA kernels, run the
# test suite on the GPU, run the benchmarks, and write everything under $OUT.
#   OUT=/path bash bench/gpu_check.sh
# Budget (a GPU lease is short): TEST_TIMEOUT, PROFILE_TIMEOUT and BENCH_TIMEOUT seconds; torch.compile is
# benchmarked at each op's headline shapes only (FASTMOTION_BENCH_COMPILE=key).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export FASTMOTION_BENCH_COMPILE="${FASTMOTION_BENCH_COMPILE:-key}" FASTMOTION_BENCH_ROUNDS="${FASTMOTION_BENCH_ROUNDS:-30}"
export FASTMOTION_BENCH_OVERHEAD_ROUNDS="${FASTMOTION_BENCH_OVERHEAD_ROUNDS:-300}"
PY="${PYTHON:-python3}"
stamp() { echo "[$(date +%T)] $*"; }

stamp "environment"
{ nvidia-smi; "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name(0))"; } > "$OUT/env.txt" 2>&1
tail -n 1 "$OUT/env.txt"

stamp "build (CUDA kernels on)"
if ! FASTMOTION_FORCE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
    grep -n -E "error|Error" "$OUT/build.log" | head -40
    stamp "build FAILED (see build.log)"
    exit 1
fi
fastmotion info 2>&1 | tee "$OUT/info.txt" | head -12

stamp "tests on the GPU (the CUDA-device cases; CPU cases run in CI)"
xdist=""
"$PY" -c "import xdist" 2>/dev/null && xdist="-n ${TEST_WORKERS:-8}"
# shellcheck disable=SC2086
timeout "${TEST_TIMEOUT:-240}" "$PY" -m pytest -q tests $xdist -p no:cacheprovider -m "not slow" -k "${TEST_SELECT:-cuda or gpu}" \
    -o addopts="" > "$OUT/tests.log" 2>&1
echo "tests exit code: $?"
grep -E "passed|failed|error" "$OUT/tests.log" | tail -3
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -30

stamp "kernel profile (device time per kernel, forward + backward back to back)"
timeout "${PROFILE_TIMEOUT:-90}" "$PY" bench/profile_kernels.py --out "$OUT/kernels.json" > "$OUT/kernels.txt" 2>&1
echo "profile exit code: $?"
grep -v USDT "$OUT/kernels.txt" | head -120

stamp "benchmarks"
# The CPU-only benchmarks of the models' training kernels are left to CPU runs.
timeout "${BENCH_TIMEOUT:-300}" "$PY" -m pytest -q bench ${BENCH_SELECT:-} -p no:cacheprovider --benchmark-json="$OUT/bench.json" \
    --ignore=bench/test_batchnorm_relu.py --ignore=bench/test_resample2x.py \
    --benchmark-columns=median,iqr --benchmark-sort=name > "$OUT/bench.log" 2>&1
echo "bench exit code: $?"
grep -E "passed|failed|error" "$OUT/bench.log" | tail -3
grep -E "^(FAILED|ERROR)" "$OUT/bench.log" | head -20
[ -f "$OUT/bench.json" ] && "$PY" bench/summarize.py "$OUT/bench.json" > "$OUT/summary.txt" && cat "$OUT/summary.txt"
stamp "done"

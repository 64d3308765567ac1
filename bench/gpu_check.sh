#!/usr/bin/env bash
# One-shot check for a fresh GPU machine (H100/H200; only the project tree travels there): build
# fastmotion with its CUDA kernels, run the GPU cases of the test suite, then `fastmotion bench`
# (the same report as on CPU: results.json, report.md, charts) plus the call-overhead benchmark
# and the per-kernel profile, everything under $OUT, within BUDGET seconds (default 450, 8 minutes
# less a margin). Each step gets at most its own timeout and what is left of the budget; the bench
# report is rewritten after each suite, so a step cut short still leaves what it measured.
#   OUT=/path bash bench/gpu_check.sh
# Knobs: BUDGET, TEST_TIMEOUT, BENCH_TIMEOUT, OVERHEAD_TIMEOUT, PROFILE_TIMEOUT (seconds);
#   BENCH_SUITES (default all), BENCH_ARGS (extra `fastmotion bench` flags, default --compile key),
#   BENCH_DEVICE (default cuda), TEST_SELECT (pytest -k, default "cuda or gpu"), SKIP_BUILD=1,
#   SKIP_TESTS=1 (to try the later steps on a machine without a GPU: BENCH_DEVICE=cpu),
#   WITH_EXPORT=1 (then bench/gpu_export_check.sh: TensorRT tests and exported latency, in what is left).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export FASTMOTION_BENCH_OVERHEAD_ROUNDS="${FASTMOTION_BENCH_OVERHEAD_ROUNDS:-300}"
PY="${PYTHON:-python3}"
BUDGET="${BUDGET:-450}"
DEVICE="${BENCH_DEVICE:-cuda}"
stamp() { echo "[$(date +%T) +${SECONDS}s] $*"; }
# the timeout of a step: its own limit, or what is left of the budget (at least 10 s)
limit() { local left=$(( BUDGET - SECONDS )); (( left < 10 )) && left=10; (( $1 < left )) && echo "$1" || echo "$left"; }

stamp "environment"
{ nvidia-smi; "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"; } > "$OUT/env.txt" 2>&1
tail -n 1 "$OUT/env.txt"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    stamp "build (CUDA kernels on)"
    if ! FASTMOTION_FORCE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
        grep -n -E "error|Error" "$OUT/build.log" | head -40
        stamp "build FAILED (see build.log)"
        exit 1
    fi
fi
"$PY" -m fastmotion info 2>&1 | tee "$OUT/info.txt" | head -12

if [ "${SKIP_TESTS:-0}" != 1 ]; then
    stamp "tests on the GPU (the CUDA-device cases; CPU cases run in CI)"
    xdist=""
    "$PY" -c "import xdist" 2>/dev/null && xdist="-n ${TEST_WORKERS:-8}"
    # shellcheck disable=SC2086
    timeout "$(limit "${TEST_TIMEOUT:-120}")" "$PY" -m pytest -q tests $xdist -p no:cacheprovider -m "not slow" \
        -k "${TEST_SELECT:-cuda or gpu}" -o addopts="" > "$OUT/tests.log" 2>&1
    echo "tests exit code: $?"
    grep -E "passed|failed|error" "$OUT/tests.log" | tail -3
    grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -30
fi

stamp "fastmotion bench ${BENCH_SUITES:-all} (report under $OUT/report)"
# shellcheck disable=SC2086
timeout "$(limit "${BENCH_TIMEOUT:-240}")" "$PY" -m fastmotion bench ${BENCH_SUITES:-all} --device "$DEVICE" \
    ${BENCH_ARGS:---compile key} --out "$OUT/report" > "$OUT/bench.log" 2>&1
echo "bench exit code: $?"
tail -n 3 "$OUT/bench.log" | tr '\r' '\n' | tail -n 3
[ -f "$OUT/report/report.md" ] && grep -c "^| " "$OUT/report/report.md" | sed 's/^/report table lines: /'

stamp "call overhead (host time per call at a tiny size)"
timeout "$(limit "${OVERHEAD_TIMEOUT:-45}")" "$PY" -m pytest -q bench/test_call_overhead.py -p no:cacheprovider \
    --benchmark-json="$OUT/overhead.json" --benchmark-columns=median,iqr > "$OUT/overhead.log" 2>&1
echo "overhead exit code: $?"
[ -f "$OUT/overhead.json" ] && "$PY" bench/summarize.py "$OUT/overhead.json" > "$OUT/overhead.txt" && head -30 "$OUT/overhead.txt"

stamp "kernel profile (device time per kernel, forward + backward back to back)"
timeout "$(limit "${PROFILE_TIMEOUT:-45}")" "$PY" bench/profile_kernels.py ${PROFILE_ARGS:-} --out "$OUT/kernels.json" \
    > "$OUT/kernels.txt" 2>&1
echo "profile exit code: $?"
grep -v USDT "$OUT/kernels.txt" | head -60
if [ "${WITH_EXPORT:-0}" = 1 ]; then
    stamp "export checks (bench/gpu_export_check.sh)"
    OUT="$OUT" TEST_TIMEOUT="$(limit 150)" BENCH_TIMEOUT="$(limit 300)" bash bench/gpu_export_check.sh
fi
stamp "done"

"""Check that ``fastmotion bench`` and the pytest-benchmark suites measure the same thing: the
median of each case they both ran, side by side, and their ratio.

    fastmotion bench ops --quick --threads 1 --rounds 10 --out cli
    OMP_NUM_THREADS=1 FASTMOTION_BENCH_ROUNDS=10 FASTMOTION_BENCH_COMPILE=none python -m pytest -q bench/test_ops.py \
        -k "1x10x64x64 or 1x32x64x64 or 1x11x64x64 or 1x3x64x64 or (taichi_skips_N and not 16)" \
        --benchmark-json=pytest.json
    python bench/compare.py cli/results.json pytest.json
"""
from __future__ import annotations

import json
import statistics
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print(__doc__)
        return 2
    with open(argv[0]) as f:
        cli = json.load(f)["rows"]
    with open(argv[1]) as f:
        suite = json.load(f)["benchmarks"]
    medians = {(b["extra_info"].get("op"), b["extra_info"].get("case"), b["extra_info"].get("mode"),
                b["extra_info"].get("provider")): b["stats"]["median"] * 1e3 for b in suite}
    ratios = []
    print(f"{'op':28} {'case':20} {'mode':8} {'provider':10} {'bench ms':>9} {'pytest ms':>9} ratio")
    for r in cli:
        key = (r["op"], r["case"], r["mode"], r["provider"])
        if r.get("status") != "ok" or key not in medians:
            continue
        ratio = r["median_ms"] / medians[key]
        ratios.append(ratio)
        print(f"{r['op']:28} {r['case'][:20]:20} {r['mode']:8} {r['provider']:10} {r['median_ms']:9.3f} "
              f"{medians[key]:9.3f} {ratio:.2f}")
    if not ratios:
        print("no case in common")
        return 1
    within = sum(0.9 <= x <= 1.1 for x in ratios)
    print(f"{len(ratios)} cases; median ratio {statistics.median(ratios):.2f}; {within} within 10%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

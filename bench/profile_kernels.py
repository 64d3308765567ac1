"""Where the time of each fused op goes, kernel by kernel: forward + backward at the headline
shapes, run back to back under torch.profiler, per provider.

The pytest benchmarks time one synchronised call at a time (host time included); this script
answers the next question on a GPU: which kernels take the device time (the main kernel, a
zero fill, a partial-sum reduction, a dtype conversion...), and what the op costs back to back.

    python bench/profile_kernels.py [--iters 20] [--out kernels.json] [--small] [--only grid_sample]

On a machine without CUDA it profiles CPU ops instead (``--small`` keeps that quick); the GPU
numbers are the ones it is for (bench/gpu_check.sh runs it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastmotion.benchmark import ops as bench_ops  # noqa: E402
from fastmotion.benchmark.timing import sync as _sync  # noqa: E402
from fastmotion.ops import registry  # noqa: E402


def cases(device, small):
    """op -> (case label, spec, inputs, providers), at each op's headline shape (``small``: its
    call-overhead size, a quick check of the script)."""
    out = {}
    for spec in registry.OPS.values():
        case = registry.Case("tiny", spec.tiny) if small else next(c for c in spec.cases if c.key)
        inputs = bench_ops.make_inputs(spec, case.size, device)
        out[spec.name] = (case.label, spec, inputs, [p for p in bench_ops.providers(spec) if p != "compile"])
    return out


def profile_case(step, device, iters):
    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    wall = (time.perf_counter() - start) / iters
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(iters):
            step()
        _sync(device)
    rows = []
    for e in prof.key_averages():
        t = e.self_device_time_total if device == "cuda" else e.self_cpu_time_total
        if t > 0:
            rows.append({"name": e.key, "us_per_call": t / iters, "launches_per_call": e.count / iters})
    rows.sort(key=lambda r: -r["us_per_call"])
    total = sum(r["us_per_call"] for r in rows)
    return {"wall_us_per_call": wall * 1e6, "device_us_per_call": total, "kernels": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--small", action="store_true", help="small shapes (a quick check of the script)")
    ap.add_argument("--only", default=None, help="one op")
    ap.add_argument("--top", type=int, default=6, help="kernels listed per case")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    what = "device" if device == "cuda" else "CPU self"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"# forward + backward, {args.iters} calls back to back, {name}; {what} time per call")
    results = []
    for op, (shape, spec, inputs, providers) in cases(device, args.small).items():
        if args.only and op != args.only:
            continue
        for provider in providers:
            if bench_ops.skip_reason(spec, provider, device, mode="fwd+bwd"):
                continue
            env = spec.variants[provider][1] if provider in spec.variants else {}
            try:
                with bench_ops.environment(env):
                    r = profile_case(bench_ops.make_call(spec, inputs, provider, "fwd+bwd"), device, args.iters)
            except Exception as exc:  # one failing provider must not hide the others' numbers
                print(f"{op} {shape} {provider}: FAILED {type(exc).__name__}: {exc}")
                continue
            results.append({"op": op, "shape": shape, "provider": provider, "device": name, **r})
            print(f"{op} {shape} {provider}: wall {r['wall_us_per_call']:.1f} us/call, "
                  f"{what} {r['device_us_per_call']:.1f} us/call")
            for k in r["kernels"][:args.top]:
                print(f"    {k['us_per_call']:9.1f} us  x{k['launches_per_call']:<4g} {k['name'][:90]}")
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

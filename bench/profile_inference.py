"""Where the per-frame time of fastmotion.Animator goes: torch.profiler's operator table of one
animated frame (after warm-up), per precision.

    python bench/profile_inference.py                       # vox 256x256, fp32 and bf16 (where the CPU has it)
    python bench/profile_inference.py --config taichi --size 64 --dtype fp32 --rows 10
"""
from __future__ import annotations

import argparse
import copy
import sys
import time

import torch


def profile_frame(config_name: str, size: int, dtype: str, rows: int, warmup: int = 2):
    import fastmotion
    from fastmotion.benchmark.model import random_models as _models

    config, (kp_detector, generator, _) = _models(config_name, None, False)
    animator = fastmotion.Animator(copy.deepcopy(kp_detector), copy.deepcopy(generator), config, dtype=dtype,
                                   frame_size=(size, size))
    gen = torch.Generator().manual_seed(2)
    source, first, driving = (torch.rand((1, 3, size, size), generator=gen) for _ in range(3))
    animator.set_source(source)
    animator(first)
    for _ in range(warmup):
        animator(driving)
    start = time.perf_counter()
    animator(driving)
    wall = time.perf_counter() - start
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        animator(driving)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return wall, table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="vox")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--dtype", action="append", choices=["fp32", "bf16"], help="default: fp32 and bf16")
    p.add_argument("--rows", type=int, default=20)
    args = p.parse_args(argv)
    from fastmotion.inference.animator import cpu_has_bf16

    dtypes = args.dtype or (["fp32", "bf16"] if cpu_has_bf16() else ["fp32"])
    for dtype in dtypes:
        wall, table = profile_frame(args.config, args.size, dtype, args.rows)
        print(f"== {args.config} {args.size}x{args.size} {dtype}, {torch.get_num_threads()} threads: "
              f"{1000 * wall:.1f} ms per frame (unprofiled)")
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

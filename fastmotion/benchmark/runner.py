"""``fastmotion bench``: run the chosen suites and write the report."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import torch

from fastmotion.benchmark import environment, ops, report, timing

SUITES = ("ops", "model", "train", "export")


def _warn_if_loaded(device: str) -> None:
    """Several CPU threads on a machine whose cores are busy elsewhere wait on each other at every
    parallel region (measured: 16-20 ms stalls on calls of tens of microseconds): say so."""
    import os
    import sys

    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    cores = os.cpu_count() or 1
    if device == "cpu" and torch.get_num_threads() > 1 and load > cores:
        print(f"fastmotion bench: note: load average {load:.1f} on {cores} cores; with "
              f"{torch.get_num_threads()} threads the CPU numbers will include waits for busy cores "
              "(--threads 1 gives steadier ones)", file=sys.stderr)


def run(suites: Iterable[str], out: Path, device: str = "cpu", dtype: str = "fp32", quick: bool = False,
        tiny: bool = False, op_names: Optional[list] = None, compile: str = "key", rounds: Optional[int] = None,
        plot: bool = True, command: Optional[str] = None, progress_bar: bool = True) -> list:
    """Run ``suites``; write results.json, report.md (and charts) into ``out``; return the paths."""
    from tqdm import tqdm

    from fastmotion.benchmark import export as export_suite
    from fastmotion.benchmark import model as model_suite
    from fastmotion.benchmark import train as train_suite
    from fastmotion.ops import registry

    suites = list(suites)
    _warn_if_loaded(device)
    env = environment.describe(device, command)
    env["dtype"] = dtype
    copy_gbps = timing.copy_bandwidth(device)
    selection = ops.Selection(quick=quick, tiny=tiny)
    op_names = op_names or list(registry.OPS)
    total = len(ops.plan(op_names, selection, device, compile)) if "ops" in suites else 0
    rows = []
    paths = []

    def write_report(charts=True):
        # after every suite (every op), so that a run cut short (a GPU lease ending) still leaves a report
        env["load_average_end"] = environment.load_average()
        stamp = environment.stamp(env)
        for r in rows:
            r.update(stamp)
        extra = {"device": device, "dtype": dtype, "copy_bandwidth_gbps": round(copy_gbps, 2),
                 "suites": suites, "quick": quick, "tiny": tiny, "threads": torch.get_num_threads()}
        return report.write(Path(out), env, rows, extra, plot=plot and charts)

    with tqdm(total=total or None, desc="fastmotion bench", unit="case", disable=not progress_bar,
              dynamic_ncols=True) as bar:
        def progress(row):
            bar.set_postfix_str(f"{row['op'][:28]} {row['provider'][:24]} {row.get('mode', '')}", refresh=False)
            bar.update(1)

        for suite in suites:
            if suite == "ops":
                for name in op_names:  # one op at a time, the report (not the charts) rewritten after each
                    rows += ops.run([name], device, dtype, selection, compile, rounds, progress, copy_gbps)
                    paths = write_report(charts=False)
            elif suite == "model":
                rows += model_suite.run(device, quick, tiny, rounds, progress)
            elif suite == "train":
                rows += train_suite.run(device, quick, tiny, rounds, progress)
            elif suite == "export":
                rows += export_suite.run(device, quick, tiny, rounds, progress)
            else:
                raise ValueError(f"unknown suite {suite!r}; expected one of {SUITES}")
            paths = write_report()
    return paths

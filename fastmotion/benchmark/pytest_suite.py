"""Rows from a pytest-benchmark file of ``bench/`` (the Trainer's and the exporter's suites are
written next to the code they time): run it in a subprocess with ``--benchmark-json`` and turn each
benchmark into a report row, and each skipped test into a row that says why."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from fastmotion.benchmark.ops import add_speedups

REPO = Path(__file__).resolve().parents[2]


def _skipped_rows(output: str, base: dict) -> list:
    rows = []
    for line in output.splitlines():
        m = re.match(r"SKIPPED \[\d+\] ([^:]+:\d+): (.*)", line.strip())
        if m:
            rows.append({**base, "op": base["op"], "case": m.group(1), "provider": "-", "status": "skipped",
                         "reason": m.group(2)})
    return rows


def rows_from_json(doc: dict, suite: str, device: str) -> list:
    rows = []
    for b in doc.get("benchmarks", []):
        info, stats = b.get("extra_info", {}), b["stats"]
        provider = str(info.get("provider", b["name"]))
        row = {"suite": suite, "op": b.get("group") or b["name"], "case": b["name"].split("[", 1)[-1].rstrip("]"),
               "mode": suite, "provider": provider, "label": provider, "device": device, "dtype": "fp32",
               "status": "ok", "median_ms": round(stats["median"] * 1e3, 5), "q1_ms": round(stats["q1"] * 1e3, 5),
               "q3_ms": round(stats["q3"] * 1e3, 5), "min_ms": round(stats["min"] * 1e3, 5),
               "rounds": stats["rounds"], "timing": "pytest-benchmark (host clock, synchronised)",
               "peak_mb": info.get("peak_MB")}
        for key in ("videos_per_s", "frames/s", "fps"):
            if key in info:
                row["per_second"] = info[key]
                break
        rows.append(row)
    add_speedups(rows, group_keys=("suite", "op", "device"))
    return rows


def run(path: str, suite: str, device: str, quick: bool, rounds: Optional[int], timeout: int = 1800) -> list:
    """Rows of ``bench/<path>`` (relative to the source checkout)."""
    base = {"suite": suite, "op": path, "case": "-", "mode": suite, "provider": "-", "device": device,
            "dtype": "fp32"}
    file = REPO / path
    if not file.exists():
        return [{**base, "status": "skipped", "reason": f"{path} not found (it ships with the source checkout, "
                                                         "not the wheel)"}]
    env = dict(os.environ)
    if rounds or quick:
        env["FASTMOTION_BENCH_ROUNDS"] = str(rounds or 3)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", str(file), "-p", "no:cacheprovider", "-o", "addopts=",
               f"--benchmark-json={out}"]
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return [{**base, "status": "failed", "reason": f"{path} took longer than {timeout} s"}]
        rows = rows_from_json(json.loads(out.read_text()), suite, device) if out.exists() else []
        rows += _skipped_rows(proc.stdout, base)
        if proc.returncode not in (0, 5) and not rows:
            tail = " ".join(proc.stdout.strip().splitlines()[-1:]) or proc.stderr.strip()[-300:]
            rows.append({**base, "status": "failed", "reason": f"pytest {path} exited {proc.returncode}: {tail}"})
    return rows

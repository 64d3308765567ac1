"""A run's results: ``results.json`` (every row, stamped), ``report.md`` (tables a person reads) and,
when matplotlib is installed (the ``plot`` extra), PNG charts next to them. Files are written
under a temporary name and renamed, so a crash never leaves half a report."""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Optional

SCHEMA = "fastmotion-bench/1"
PROVIDER_ORDER = ("reference", "compile", "native", "cpu", "triton", "cuda")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, environment: dict, rows: list, extra: Optional[dict] = None) -> None:
    doc = {"schema": SCHEMA, "environment": environment, **(extra or {}), "rows": rows}
    _atomic_write(path, (json.dumps(doc, indent=1) + "\n").encode())


def read_json(path: Path) -> dict:
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a fastmotion bench results file (schema {doc.get('schema')!r})")
    return doc


def _fmt(value, digits=3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _speedup(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _provider_key(provider: str):
    base = provider.split("-")[0]
    return (PROVIDER_ORDER.index(base) if base in PROVIDER_ORDER else len(PROVIDER_ORDER), provider)


def _table(header: list, lines: Iterable[list]) -> list:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def _ops_section(rows: list) -> list:
    out = []
    by_op = OrderedDict()
    for r in rows:
        by_op.setdefault(r["op"], []).append(r)
    for op, op_rows in by_op.items():
        out += ["", f"### {op}", ""]
        ok = [r for r in op_rows if r["status"] == "ok"]
        case_order = {case: i for i, case in enumerate(dict.fromkeys(r["case"] for r in op_rows))}
        lines = []
        for r in sorted(ok, key=lambda r: (case_order[r["case"]], r["mode"] != "fwd", _provider_key(r["provider"]))):
            lines.append([r["case"] + (" (headline)" if r.get("key") else ""), r["mode"], r.get("label", r["provider"]),
                          _ms(r["median_ms"]), _ms(r["q3_ms"] - r["q1_ms"]), _speedup(r.get("speedup_vs_reference")),
                          _speedup(r.get("speedup_vs_compile")), _fmt(r.get("gbps")),
                          _fmt(r.get("pct_of_copy_bandwidth")), _fmt(r.get("peak_mb"))])
        if lines:
            out += _table(["case", "mode", "provider", "median ms", "IQR ms", "vs eager", "vs compile", "GB/s",
                           "% of copy", "peak MB"], lines)
        out += _not_run(op_rows)
    return out


def _not_run(rows: list) -> list:
    reasons = OrderedDict()
    for r in rows:
        if r["status"] != "ok":
            key = (r["provider"], r["status"], r.get("reason", ""))
            reasons.setdefault(key, 0)
            reasons[key] += 1
    if not reasons:
        return []
    out = ["", "Not run here:"]
    for (provider, status, reason), n in reasons.items():
        out.append(f"- `{provider}` ({status}, {n} case{'s' if n > 1 else ''}): {reason}")
    return out


def _model_section(rows: list) -> list:
    out = []
    groups = OrderedDict()
    for r in rows:
        groups.setdefault((r["op"], r["case"]), []).append(r)
    for (workload, comparison), group in groups.items():
        out += ["", f"### {workload}: {comparison}", ""]
        ok = [r for r in group if r["status"] == "ok"]
        if ok:
            # the minimum too: on a shared, loaded machine it is the steadier figure of a slow call
            out += _table(["provider", "median ms", "IQR ms", "min ms", "per second", "vs reference (same work)",
                           "peak MB"],
                          [[r.get("label", r["provider"]), _ms(r["median_ms"]), _ms(r["q3_ms"] - r["q1_ms"]),
                            _ms(r["min_ms"]), _fmt(r.get("per_second")), _speedup(r.get("speedup_vs_reference")),
                            _fmt(r.get("peak_mb"))] for r in ok])
        out += _not_run(group)
    return out


def markdown(environment: dict, rows: list, charts: list, extra: Optional[dict] = None) -> str:
    env = environment
    hw = env.get("gpu") or f"{env['cpu']}, {env['cores']} cores ({env.get('cpu_flags') or 'no AVX flags read'})"
    lines = [
        "# fastmotion benchmark report", "",
        f"- date: {env['date']}",
        f"- command: `{env['command']}`",
        f"- hardware: {hw}; torch threads: {env['threads']}; load average at start / end: "
        f"{env['load_average_start']} / {env.get('load_average_end', 'n/a')}",
        f"- versions: python {env['python']}, torch {env['torch']}, triton {env.get('triton') or 'not installed'}, "
        f"fastmotion {env['fastmotion']}" + (f" (commit {env['git_commit']})" if env.get("git_commit") else ""),
        f"- device: {env['device']}, dtype: {env.get('dtype', 'fp32')}",
    ]
    if extra and extra.get("copy_bandwidth_gbps"):
        lines.append(f"- plain copy bandwidth measured in this run: {extra['copy_bandwidth_gbps']:.1f} GB/s "
                     "(read + write; the `% of copy` column)")
    methods = sorted({r["timing"] for r in rows if r.get("timing")})
    if methods:
        lines.append(f"- timing: {'; '.join(methods)}; median and inter-quartile range (IQR) of the rounds")
    lines += ["", "Speedups are ratios of medians measured in this run; `vs eager` is against the eager "
              "plain-PyTorch reference, `vs compile` against torch.compile of it. GB/s = bytes the op must "
              "move / median time. See docs/performance.md for the method."]
    for chart in charts:
        lines += ["", f"![{chart.stem}]({chart.name})"]
    for suite, title in (("ops", "Ops"), ("model", "Model"), ("train", "Training"), ("export", "Export")):
        suite_rows = [r for r in rows if r["suite"] == suite]
        if not suite_rows:
            continue
        lines += ["", f"## {title}"]
        lines += _ops_section(suite_rows) if suite == "ops" else _model_section(suite_rows)
    return "\n".join(lines) + "\n"


def write(out_dir: Path, environment: dict, rows: list, extra: Optional[dict] = None, plot: bool = True) -> list:
    """Write results.json, report.md and the charts into ``out_dir``; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = []
    if plot:
        from fastmotion.benchmark import charts as charts_module

        charts = charts_module.write_all(out_dir, rows, extra or {})
    write_json(out_dir / "results.json", environment, rows, extra)
    _atomic_write(out_dir / "report.md", markdown(environment, rows, charts, extra).encode())
    return [out_dir / "results.json", out_dir / "report.md", *charts]

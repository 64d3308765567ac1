"""PNG charts of a run (matplotlib, the ``plot`` extra): per-op speedup bars and a bandwidth chart."""
from __future__ import annotations

import os
from pathlib import Path

COLORS = {"reference": "#9e9e9e", "compile": "#5c6bc0", "native": "#8d6e63", "cpu": "#2e7d32",
          "triton": "#ef6c00", "cuda": "#c62828"}


def _color(provider: str) -> str:
    return COLORS.get(provider.split("-")[0], "#00838f")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def _wrap(name: str, width: int = 16) -> str:
    """Long op names on two lines at an underscore, so that neighbouring labels do not collide."""
    if len(name) <= width or "_" not in name:
        return name
    cut = name.rfind("_", 0, len(name) // 2 + 4)
    cut = cut if cut > 0 else name.find("_")
    return name[:cut + 1] + "\n" + name[cut + 1:]


def _headline_case(rows: list, op: str) -> str:
    cases = [r for r in rows if r["op"] == op]
    keyed = [r["case"] for r in cases if r.get("key")]
    return keyed[0] if keyed else cases[0]["case"]


def speedup_chart(rows: list, path: Path, title: str):
    """One panel per mode: per op (at its headline case), each provider's speedup over eager."""
    plt = _pyplot()
    ok = [r for r in rows if r["suite"] == "ops" and r["status"] == "ok" and r.get("speedup_vs_reference")]
    if plt is None or not ok:
        return None
    ops = list(dict.fromkeys(r["op"] for r in ok))
    cases = {op: _headline_case(ok, op) for op in ops}
    modes = [m for m in ("fwd", "fwd+bwd") if any(r["mode"] == m for r in ok)]
    from fastmotion.benchmark.report import _provider_key

    providers = sorted({r["provider"] for r in ok if r["provider"] != "reference"}, key=_provider_key)
    fig, axes = plt.subplots(len(modes), 1, figsize=(max(7, 1.5 * len(ops)), 3.4 * len(modes)), squeeze=False)
    width = 0.8 / max(1, len(providers))
    for ax, mode in zip(axes[:, 0], modes):
        for j, provider in enumerate(providers):
            xs, ys = [], []
            for i, op in enumerate(ops):
                match = [r for r in ok if r["op"] == op and r["case"] == cases[op] and r["mode"] == mode
                         and r["provider"] == provider]
                if match:
                    xs.append(i + (j - (len(providers) - 1) / 2) * width)
                    ys.append(match[0]["speedup_vs_reference"])
            bars = ax.bar(xs, ys, width, label=provider, color=_color(provider))
            for bar, y in zip(bars, ys):
                ax.annotate(f"{y:.1f}x" if y < 10 else f"{y:.0f}x", (bar.get_x() + bar.get_width() / 2, y),
                            ha="center", va="bottom", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        top = max([r["speedup_vs_reference"] for r in ok if r["mode"] == mode] + [1.0])
        ax.set_ylim(top=top * 4)  # room for the bar labels and the legend above the tallest bar
        ax.set_ylabel(f"{mode}: x eager reference")
        ax.set_xticks(range(len(ops)))
        ax.set_xticklabels([f"{_wrap(op)}\n{cases[op]}" for op in ops], fontsize=7)
        ax.legend(fontsize=7, loc="upper right", ncol=len(providers))
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0, 0].set_title(title + " (higher is better; 1x = eager reference)", fontsize=9)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def bandwidth_chart(rows: list, path: Path, title: str, copy_gbps=None):
    """Roofline-style: each measured op call as bytes it must move (x) against the GB/s it reached
    (y), with the plain-copy bandwidth measured in the same run as the ceiling."""
    plt = _pyplot()
    ok = [r for r in rows if r["suite"] == "ops" and r["status"] == "ok" and r.get("gbps")]
    if plt is None or not ok:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.set_xscale("log")
    ax.set_yscale("log")
    for provider in dict.fromkeys(r["provider"] for r in ok):
        for mode, marker in (("fwd", "o"), ("fwd+bwd", "^")):
            pts = [r for r in ok if r["provider"] == provider and r["mode"] == mode]
            if pts:
                ax.scatter([r["bytes_moved"] / 2**20 for r in pts], [r["gbps"] for r in pts], marker=marker,
                           color=_color(provider), label=f"{provider} {mode}", alpha=0.8, s=28)
    best = {}  # one label per op: its fastest provider, forward + backward at the headline case
    for r in ok:
        if r["mode"] == "fwd+bwd" and r["case"] == _headline_case(ok, r["op"]):
            if r["op"] not in best or r["gbps"] > best[r["op"]]["gbps"]:
                best[r["op"]] = r
    for r in best.values():
        ax.annotate(r["op"], (r["bytes_moved"] / 2**20, r["gbps"]), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    if copy_gbps:
        ax.axhline(copy_gbps, color="black", linestyle="--", linewidth=1)
        ax.text(0.01, copy_gbps, f"plain copy {copy_gbps:.1f} GB/s (measured in this run)", fontsize=7,
                transform=ax.get_yaxis_transform(), va="bottom")
    ax.set_xlabel("bytes the call must move (MiB)")
    ax.set_ylabel("effective GB/s")
    ax.set_title(title + " (higher is better; dashed: copy ceiling; labelled: each op's fastest fwd+bwd at its "
                 "headline shape)", fontsize=8)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def write_all(out_dir: Path, rows: list, extra: dict) -> list:
    device, dtype = extra.get("device", ""), extra.get("dtype", "")
    title = f"fastmotion ops, {device} {dtype}".strip()
    written = [speedup_chart(rows, Path(out_dir) / "speedup_ops.png", title),
               bandwidth_chart(rows, Path(out_dir) / "bandwidth_ops.png", title, extra.get("copy_bandwidth_gbps"))]
    return [p for p in written if p is not None]

"""What every benchmark row is stamped with: hardware, versions, date, load and the command."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
    except OSError:
        pass
    return []


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def describe(device: str, command: str | None = None) -> dict:
    """The run's environment as a flat dict (JSON-ready)."""
    import fastmotion

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command or " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name] + sys.argv[1:]),
        "device": device,
        "cpu": _cpu_model(),
        "cpu_flags": " ".join(_cpu_flags()),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_start": load_average(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fastmotion": fastmotion.__version__,
        "git_commit": _git_commit(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if str(device).startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = props.name
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["cuda"] = torch.version.cuda
    return env


def stamp(env: dict) -> dict:
    """The short form carried by every row."""
    hardware = env["gpu"] if env.get("gpu") else f"{env['cpu']} ({env['cores']} cores, {env['threads']} threads)"
    versions = f"torch {env['torch']}, fastmotion {env['fastmotion']}" + (
        f" ({env['git_commit']})" if env.get("git_commit") else "") + (
        f", triton {env['triton']}" if env.get("triton") else "")
    return {"hardware": hardware, "versions": versions, "date": env["date"], "command": env["command"]}

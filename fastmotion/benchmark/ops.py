"""The op suite: every op of :mod:`fastmotion.ops.registry` x its shapes x each provider, forward
and forward + backward.

Providers: ``reference`` (the eager plain-PyTorch spec), ``compile`` (``torch.compile`` of it),
``native`` (PyTorch's own op, where one exists besides the reference), then each fused backend
(``cpu``, ``triton``, ``cuda``) and the op's extra variants. A provider that cannot run here gives a
row that says why.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional

import torch

from fastmotion import backends, nvtx
from fastmotion.benchmark import memory, timing
from fastmotion.ops import registry
from fastmotion.ops.registry import Case, Inputs, OpSpec

PROVIDERS = ("reference", "compile", "native", "cpu", "triton", "cuda")
COMPILE_POLICIES = ("all", "key", "none")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def providers(spec: OpSpec) -> tuple:
    return PROVIDERS + tuple(spec.variants)


def compile_policy() -> str:
    """``FASTMOTION_BENCH_COMPILE`` = all (default) | key (torch.compile only at the headline shapes:
    compiles take ~20 s each on a small CPU, and a GPU lease is short) | none."""
    if os.environ.get("FASTMOTION_BENCH_NO_COMPILE") == "1":
        return "none"
    return os.environ.get("FASTMOTION_BENCH_COMPILE", "all")


def backend_of(spec: OpSpec, provider: str) -> str:
    return spec.variants[provider][0] if provider in spec.variants else provider


def skip_reason(spec: OpSpec, provider: str, device: str, key: bool = True, mode: str = "fwd+bwd",
                compile: Optional[str] = None) -> Optional[str]:
    """None if ``provider`` can run ``spec`` on ``device`` here, else why not."""
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA not available"
    if provider == "reference":
        return None
    if provider == "compile":
        policy = compile or compile_policy()
        if policy == "none":
            return "torch.compile provider off (FASTMOTION_BENCH_COMPILE=none / --compile none)"
        if policy == "key" and not key:
            return "torch.compile only at the headline shapes (FASTMOTION_BENCH_COMPILE=key / --compile key)"
        return None
    if provider == "native":
        if spec.native is None:
            return (f"the reference is PyTorch's own op ({spec.reference_is})" if spec.reference_is
                    else "PyTorch has no op of its own for this")
        return None
    if provider in spec.variants and mode == "fwd":
        return f"{provider} differs from {backend_of(spec, provider)} only in the backward"
    backend = backend_of(spec, provider)
    if backend == "triton" and device == "cpu":
        return "Triton on CPU only runs interpreted (not a benchmark)"
    impls = spec.impls()
    if backend not in impls:
        return f"no {backend} implementation of {spec.name}"
    return backends.unavailable_reason(backend, device, impls[backend].cpp_op)


def provider_fn(spec: OpSpec, provider: str) -> Callable:
    """``fn(*tensors, **options)`` of a provider (one torch.compile per call of this function)."""
    if provider == "reference":
        return spec.reference
    if provider == "compile":
        return torch.compile(spec.reference, dynamic=False)
    if provider == "native":
        return spec.native
    backend = backend_of(spec, provider)
    return lambda *t, **o: spec.fused(*t, backend=backend, **o)


def make_inputs(spec: OpSpec, size: Mapping, device: str, dtype: torch.dtype = torch.float32) -> Inputs:
    return spec.make_inputs(device, dtype, **size)


@contextlib.contextmanager
def environment(env: Mapping[str, str]):
    """Set ``env`` while a variant provider runs (e.g. FASTMOTION_GRID_SAMPLE_SCATTER=gather)."""
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_call(spec: OpSpec, inputs: Inputs, provider: str, mode: str, fn: Optional[Callable] = None) -> Callable:
    """A no-argument callable doing one ``mode`` step of ``provider`` on ``inputs``.

    ``fwd``: the op under ``torch.no_grad``; ``fwd+bwd``: the op on inputs that require grad, then
    ``torch.autograd.grad`` with fixed output gradients (as the next layer's backward would hand
    over: no loss is timed). Marked as an NVTX range ``<op> <provider> <mode>`` when FASTMOTION_NVTX=1.
    """
    fn = fn or provider_fn(spec, provider)
    options = dict(inputs.options)
    label = f"{spec.name} {provider} {mode}"
    if mode == "fwd":
        tensors = inputs.tensors

        def call():
            with nvtx.range(label), torch.no_grad():
                return fn(*tensors, **options)
        return call
    if mode != "fwd+bwd":
        raise ValueError(f"mode must be one of {registry.MODES}, got {mode!r}")
    with torch.no_grad():
        outputs = registry.outputs_of(spec.reference(*inputs.tensors, **options))
    g = torch.Generator().manual_seed(1)
    grad_outputs = [torch.randn(o.shape, generator=g).to(o) for o in outputs]
    tensors = [t.detach().requires_grad_() for t in inputs.tensors]

    def call():
        with nvtx.range(label):
            out = registry.outputs_of(fn(*tensors, **options))
            return torch.autograd.grad(out, tensors, grad_outputs, allow_unused=True)
    return call


@dataclass
class Selection:
    """Which cases a run covers: ``quick`` (each op's quick shape), ``tiny`` (the call-overhead size:
    checks that the suite runs), or all shapes."""

    quick: bool = False
    tiny: bool = False

    def cases(self, spec: OpSpec) -> List[Case]:
        if self.tiny:
            return [Case("tiny " + "x".join(str(v) for v in _flat(spec.tiny)), spec.tiny)]
        if self.quick:
            return [c for c in spec.cases if c.quick]
        return list(spec.cases)


def _flat(size: Mapping) -> list:
    out = []
    for v in size.values():
        out.extend(v if isinstance(v, (tuple, list)) else [v])
    return out


def plan(ops: Iterable[str], selection: Selection, device: str, compile: str) -> list:
    """Every (spec, case, mode, provider, skip reason) of a run, in order."""
    items = []
    for name in ops:
        spec = registry.get(name)
        for case in selection.cases(spec):
            for mode in registry.MODES:
                for provider in providers(spec):
                    reason = skip_reason(spec, provider, device, case.key, mode, compile)
                    items.append((spec, case, mode, provider, reason))
    return items


def run(ops: Iterable[str], device: str, dtype: str = "fp32", selection: Selection = Selection(),
        compile: str = "key", rounds: Optional[int] = None, progress=None, copy_gbps: Optional[float] = None) -> list:
    """Rows (dicts) of the op suite; ``progress(row)`` is called with each finished row."""
    torch_dtype = DTYPES[dtype]
    rounds = rounds or (100 if device == "cuda" else 5 if (selection.quick or selection.tiny) else 10)
    rows = []
    inputs_cache: Dict[tuple, Inputs] = {}
    for spec, case, mode, provider, reason in plan(ops, selection, device, compile):
        row = {"suite": "ops", "op": spec.name, "case": case.label, "key": case.key, "mode": mode,
               "provider": provider, "device": device, "dtype": dtype}
        if provider == "reference" and spec.reference_is:
            row["label"] = f"reference ({spec.reference_is})"
        if reason:
            row.update(status="skipped", reason=reason)
        else:
            try:
                cache_key = (spec.name, case.label)
                if cache_key not in inputs_cache:
                    inputs_cache.clear()
                    inputs_cache[cache_key] = make_inputs(spec, case.size, device, torch_dtype)
                inputs = inputs_cache[cache_key]
                env = spec.variants[provider][1] if provider in spec.variants else {}
                with environment(env):
                    call = make_call(spec, inputs, provider, mode)
                    t = timing.measure(call, device, rounds, warmup=3 if provider == "compile" else 2)
                    peak = memory.peak_bytes(call, device)
                nbytes = spec.bytes_moved(inputs, mode)
                row.update(status="ok", **timing_fields(t), bytes_moved=int(nbytes),
                           gbps=float(f"{nbytes / t.median / 1e9:.4g}"), peak_mb=round(peak / 2**20, 3))
                if copy_gbps:
                    row["pct_of_copy_bandwidth"] = float(f"{100 * row['gbps'] / copy_gbps:.3g}")
            except Exception as exc:  # noqa: BLE001 - one failing provider must not hide the others
                row.update(status="failed", reason=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        rows.append(row)
        if progress:
            progress(row)
    add_speedups(rows)
    return rows


def timing_fields(t: timing.Timing) -> dict:
    ms = 1e3
    return {"median_ms": round(t.median * ms, 5), "q1_ms": round(t.q1 * ms, 5), "q3_ms": round(t.q3 * ms, 5),
            "min_ms": round(t.min * ms, 5), "rounds": len(t.samples), "timing": t.method}


def add_speedups(rows: list, group_keys=("suite", "op", "case", "mode", "device", "dtype")) -> None:
    """speedup_vs_reference / speedup_vs_compile: ratios of medians within one group of one run."""
    groups: Dict[tuple, dict] = {}
    for r in rows:
        if r.get("status") == "ok":
            groups.setdefault(tuple(r.get(k) for k in group_keys), {})[r["provider"]] = r["median_ms"]
    for r in rows:
        if r.get("status") != "ok":
            continue
        medians = groups[tuple(r.get(k) for k in group_keys)]
        for base in ("reference", "compile"):
            if base in medians and r["median_ms"] > 0:
                r[f"speedup_vs_{base}"] = round(medians[base] / r["median_ms"], 3)

"""The correctness rule of DESIGN.md: compare a backend to the float64 reference, allowing at
most ``factor`` x the error the reference itself makes in the backend's dtype (with a floor per
dtype so exact-ish results do not demand bit equality)."""
from __future__ import annotations

import pytest
import torch

# Floors, relative to the reference's magnitude (max(1, max |ref|)).
FLOOR = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if a.shape != b.shape:
        raise AssertionError(f"shape {tuple(a.shape)} != reference shape {tuple(b.shape)}")
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    if not torch.equal(nan_a, nan_b):
        raise AssertionError("NaN pattern differs from the reference")
    if a.numel() == 0:
        return 0.0
    return (a - b).abs().nan_to_num(0.0).max().item()


def assert_matches_reference(out, ref64, ref_same_dtype, dtype, factor: float = 2.0, what: str = "output"):
    """``out``: backend result; ``ref64``: reference in float64; ``ref_same_dtype``: reference run
    in ``dtype`` (the error budget)."""
    scale = max(1.0, ref64.detach().abs().nan_to_num(0.0).max().item() if ref64.numel() else 1.0)
    budget = factor * max(max_err(ref_same_dtype, ref64), FLOOR[dtype] * scale)
    err = max_err(out, ref64)
    assert err <= budget, f"{what}: max error {err:.3g} > budget {budget:.3g} ({dtype})"


def devices():
    devs = ["cpu"]
    if torch.cuda.is_available():
        devs.append("cuda")
    return devs


def backend_params(impls):
    """pytest params (backend, device) for every fused backend of an op: (cpu, cpu), (triton, cpu)
    [under TRITON_INTERPRET], (cuda, cuda), (triton, cuda). Pairs that cannot run here are
    marked skip with the reason."""
    from fastmotion import backends

    pairs = [("cpu", "cpu"), ("triton", "cpu"), ("cuda", "cuda"), ("triton", "cuda")]
    params = []
    for name, dev in pairs:
        if name not in impls:
            reason = f"{name} backend not implemented for this op"
        elif dev == "cuda" and not torch.cuda.is_available():
            reason = "CUDA not available"
        else:
            reason = backends.unavailable_reason(name, dev, impls[name].cpp_op)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(name, dev, marks=marks, id=f"{name}-{dev}"))
    return params


def gather_params(impls):
    """The (triton, device) pairs of ``backend_params`` once more, marked ``gather_input_grad``:
    tests/conftest.py runs them with FASTMOTION_GRID_SAMPLE_SCATTER=gather (the deterministic
    gather input gradient of grid_sample / warp_features)."""
    return [pytest.param(*p.values, marks=[*p.marks, pytest.mark.gather_input_grad],
                         id=p.id.replace("triton", "triton-gather"))
            for p in backend_params(impls) if p.values[0] == "triton"]

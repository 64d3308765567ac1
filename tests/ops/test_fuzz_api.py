"""A seeded fuzz test of the public op API (issue 11, item 5).

Random shapes (odd, 1-pixel, batch 0), layouts (non-contiguous, transposed, channels-last,
expanded), dtypes (mixed too), extreme values (far keypoints, huge grids, tiny temperatures)
and argument combinations, on every backend that runs here (cpu, reference; Triton under the
interpreter on a few tiny cases). Each call must either give the float64 reference's answer
within the error budget of tests/tolerance.py (the reference's own error in the call's dtype, x2,
with a floor), forward and first-order gradients, or raise a ValueError / TypeError whose message
names the bad argument. Deterministic: every case is drawn from its own seeded generator, and a
failure names the seed to replay (``_case(op, seed)``).
"""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from fastmotion import backends, reference
from fastmotion import ops
from fastmotion.ops import registry
from tests.tolerance import assert_matches_reference

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # interpreter, masked lanes

CASES_PER_OP = 40  # per op and CPU backend
TRITON_CASES_PER_OP = 3
LOW = (torch.float16, torch.bfloat16)


IMPLS = {name: spec.impls() for name, spec in registry.OPS.items()}  # every registered op is fuzzed


# ---- random tensors ----

def _layout(rng: random.Random, values: torch.Tensor, expand_ok: bool = True, inner: int = 0) -> torch.Tensor:
    """``values`` (float64, contiguous) in a random memory layout with the same values, or an
    expanded view (then values along the broadcast dimension are repeated; never along the last
    ``inner`` dims: a covariance with two equal rows is singular and no longer symmetric)."""
    kind = rng.choice(["contiguous", "contiguous", "strided", "transposed", "channels_last", "expanded"])
    if kind == "strided" and values.dim() >= 1:
        wide = torch.zeros(*values.shape[:-1], 2 * values.shape[-1], dtype=values.dtype)
        wide[..., ::2] = values
        return wide[..., ::2]
    if kind == "transposed" and values.dim() >= 2:
        return values.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "channels_last" and values.dim() == 4:
        return values.contiguous(memory_format=torch.channels_last)
    if kind == "expanded" and expand_ok:
        dims = [d for d in range(values.dim() - inner) if values.shape[d] > 1]
        if dims:
            d = rng.choice(dims)
            return values.narrow(d, 0, 1).expand(values.shape)
    return values


def _randn(gen: torch.Generator, shape, scale=1.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale


def _as(t, dtype):
    """The same layout in another dtype (an expanded view stays expanded)."""
    if t is None:
        return None
    if any(s == 0 for s in t.stride()) and t.numel() > 1:
        base = t
        for d in range(t.dim()):
            if t.stride(d) == 0:
                base = base.narrow(d, 0, 1)
        return base.to(dtype).expand(t.shape)
    return t.to(dtype) if t.is_contiguous() else torch.empty_like(t, dtype=dtype).copy_(t)


def _covariance(gen, lead, scale):
    a = _randn(gen, (*lead, 2, 2), 0.5)
    return (a @ a.transpose(-1, -2) + 0.05 * torch.eye(2, dtype=torch.float64)) * scale


# ---- one random case per op: (args, kwargs) in float64, the dtype(s) to run it in, a reference ----

def _case(op: str, seed: int):
    """(call(backend, dtype_cast) -> outputs, reference(float64 | same dtype) -> outputs, dtype)."""
    rng = random.Random(f"{op}-{seed}")
    gen = torch.Generator().manual_seed(seed * 7919 + len(op))
    dtype = rng.choice([torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16])
    big = 1e19 if dtype == torch.float32 else (1e200 if dtype == torch.float64 else 1e4)

    if op == "heatmap_moments":
        lead = rng.choice([(1,), (2, 3), (0, 2), (1, 1, 2)])
        h, w = rng.choice([1, 2, 5, 7]), rng.choice([1, 3, 6, 13])
        logits = _layout(rng, _randn(gen, (*lead, h, w), rng.choice([1.0, 5.0, 100.0])))
        temperature = rng.choice([0.1, 1.0, 1e-3, 1e-5, 37.0])
        kp_variance = rng.choice(["matrix", "single", 0.01])
        clip = rng.choice([None, 0.0, 1e-3, 0.05]) if kp_variance == "matrix" else None
        tensors = [logits]

        def call(t, backend):
            return ops.heatmap_moments(t[0], temperature, kp_variance, clip, backend=backend)

        def ref(t):
            return reference.heatmap_moments(t[0], temperature, kp_variance, clip)

    elif op in ("render_gaussians", "keypoint_heatmap_embedding"):
        lead = rng.choice([(1,), (2,), (2, 3), (0,)])
        k = rng.choice([1, 3, 10])
        size = (rng.choice([1, 4, 7]), rng.choice([1, 5, 9]))
        kp_variance = rng.choice(["matrix", "single", 0.05])
        norm_const = rng.choice([100.0, "sum", 1.0])
        # Sum normalisation of a heatmap that underflows in float32 but not in float64 is zeros in
        # one and a distribution in the other (the spec's rule for an empty sum): a jump no error
        # budget covers, so sum-normalised cases keep their keypoints near the grid.
        near = op == "keypoint_heatmap_embedding" and norm_const == "sum"

        def keypoints(lead):
            mean = _randn(gen, (*lead, k, 2), 0.5 if near else rng.choice([0.5, 2.0]))
            if not near and rng.random() < 0.25 and mean.numel():  # a keypoint far off the grid
                mean.view(-1)[rng.randrange(mean.numel())] = rng.choice([big, -big, min(big, 1e6)])
            if kp_variance == "matrix":
                var = _covariance(gen, (*lead, k), rng.choice([1e-3, 0.1, 10.0]))
            elif kp_variance == "single":
                var = _randn(gen, (*lead, k, 1, 1)).abs() * rng.choice([1e-3, 0.1, 10.0]) + 1e-4
            else:
                var = None
            return _layout(rng, mean, inner=1), (None if var is None else _layout(rng, var, inner=2))

        md, vd = keypoints(lead)
        if op == "render_gaussians":
            tensors = [md, vd]

            def call(t, backend):
                return ops.render_gaussians(t[0], t[1] if kp_variance in ("matrix", "single") else kp_variance,
                                            size, backend=backend)

            def ref(t):
                return reference.render_gaussians(t[0], t[1] if kp_variance in ("matrix", "single") else
                                                     kp_variance, size)
        else:
            lead_s = rng.choice([lead, lead[:-1] + (1,), lead[1:]]) if lead else lead
            ms, vs = keypoints(lead_s)
            heatmap_type = rng.choice(["difference", "difference", "gaussian"])
            background = rng.choice([True, False])
            tensors = [md, vd, ms, vs]

            def kps(t):
                return {"mean": t[0], "var": t[1]}, {"mean": t[2], "var": t[3]}

            def call(t, backend):
                d, s = kps(t)
                return ops.keypoint_heatmap_embedding(d, s, size, norm_const, heatmap_type, background, kp_variance,
                                                      backend=backend)

            def ref(t):
                d, s = kps(t)
                return reference.keypoint_heatmap_embedding(d, s, size, norm_const, heatmap_type, background,
                                                               kp_variance)

    elif op == "grid_sample":
        n, c = rng.choice([1, 2, 0]), rng.choice([1, 3, 4])
        h, w = rng.choice([1, 2, 5, 8]), rng.choice([1, 3, 7])
        ho, wo = rng.choice([1, 4]), rng.choice([1, 5, 6])
        x = _layout(rng, _randn(gen, (n, c, h, w)))
        grid = _randn(gen, (n, ho, wo, 2), rng.choice([0.6, 1.5, 4.0]))
        if rng.random() < 0.2 and grid.numel():
            grid.view(-1)[rng.randrange(grid.numel())] = rng.choice([min(big, 1e6), -min(big, 1e6), big])
        grid = _layout(rng, grid, expand_ok=False)
        mode = rng.choice(["bilinear", "bilinear", "nearest"])
        padding = rng.choice(["zeros", "border", "reflection"])
        align = rng.choice([True, False])
        tensors = [x, grid]

        def call(t, backend):
            return ops.grid_sample(t[0], t[1], mode, padding, align, backend=backend)

        def ref(t):
            return F.grid_sample(t[0], t[1], mode=mode, padding_mode=padding, align_corners=align)

    elif op == "compose_flow":
        n, k1 = rng.choice([1, 2]), rng.choice([1, 4, 11])
        h, w = rng.choice([1, 3, 6]), rng.choice([1, 4, 9])
        logits = _layout(rng, _randn(gen, (n, k1, h, w), rng.choice([1.0, 30.0])))
        shift = _layout(rng, _randn(gen, (n, k1, 2), rng.choice([0.1, 1.0])))
        corr = _layout(rng, _randn(gen, (n, 2, h, w), 0.05)) if rng.random() < 0.5 else None
        tensors = [logits, shift, corr]

        def call(t, backend):
            return ops.compose_flow(t[0], t[1], t[2], backend=backend)

        def ref(t):
            return reference.compose_flow(t[0], t[1], t[2])

    elif op == "shifted_warps":
        n, c, k1 = rng.choice([1, 2]), rng.choice([1, 3]), rng.choice([1, 3, 6])
        h, w = rng.choice([1, 2, 5, 8]), rng.choice([1, 3, 7])
        source = _layout(rng, _randn(gen, (n, c, h, w)))
        shift = _randn(gen, (n, k1, 2), rng.choice([0.05, 0.5, 3.0]))
        shift[:, 0] = rng.choice([0.0, 0.013])
        if rng.random() < 0.2:
            shift[0, -1, 0] = rng.choice([min(big, 1e6), -big])
        tensors = [source, _layout(rng, shift)]

        def call(t, backend):
            return ops.shifted_warps(t[0], t[1], backend=backend)

        def ref(t):
            return reference.shifted_warps(t[0], t[1])

    elif op == "warp_features":
        n = rng.choice([1, 2])
        h, w = rng.choice([1, 3, 4]), rng.choice([1, 2, 5])
        grid = _randn(gen, (n, h, w, 2), rng.choice([0.5, 1.2]))
        maps = [_layout(rng, _randn(gen, (n, rng.choice([1, 3]), rng.choice([1, 4, 7]), rng.choice([1, 5, 8]))))
                for _ in range(rng.choice([0, 1, 3]))]
        mode = rng.choice(["nearest", "bilinear", "trilinear"])
        tensors = [_layout(rng, grid, expand_ok=False)] + maps

        def call(t, backend):
            return ops.warp_features(t[1:], t[0], mode, backend=backend)

        def ref(t):
            return reference.warp_features(list(t[1:]), t[0], mode)
    else:
        raise ValueError(op)
    return tensors, call, ref, dtype


def _flat_outputs(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [o for o in out if o is not None]


# which tensor of a case may stay float32 when the rest is half / bfloat16 (mixed dtypes the ops accept)
_MIXED = {"shifted_warps": 1, "warp_features": 0}


def _cast_case(op, tensors, dtype, rng):
    """The case's tensors in ``dtype``; with half / bfloat16, shifted_warps' shift and
    warp_features' grid stay float32 half of the time."""
    keep = _MIXED.get(op) if dtype in LOW and rng.random() < 0.5 else None
    return [_as(t, torch.float32 if i == keep else dtype) for i, t in enumerate(tensors)]


def _budget(same: torch.Tensor, ref64: torch.Tensor, dtype) -> torch.Tensor:
    """The reference run in the call's dtype, which sets the error budget; where it is not finite
    but the float64 reference is (its own overflow, e.g. a float32 gradient of a sum-normalised
    heatmap whose sum underflows), the float64 reference rounded to the dtype stands in."""
    bad = ~torch.isfinite(same.detach().double()) & torch.isfinite(ref64.detach())
    if bool(bad.any()):
        return torch.where(bad, ref64.detach().to(same.dtype), same.detach())
    return same


def _check_case(op, seed, backend):
    tensors, call, ref, dtype = _case(op, seed)
    rng = random.Random(f"grad-{op}-{seed}")
    inputs = _cast_case(op, tensors, dtype, rng)
    want_grad = dtype in (torch.float32, torch.float64) and rng.random() < 0.7
    leaves = []
    if want_grad:
        inputs = [None if t is None else t.detach().requires_grad_() for t in inputs]
        leaves = [t for t in inputs if t is not None]
    try:
        out = _flat_outputs(call(inputs, backend))
    except (ValueError, TypeError) as exc:
        raise AssertionError(f"{op} seed {seed} on {backend}: valid input raised {exc!r}") from exc

    ref64_in = [None if t is None else t.detach().double().requires_grad_(want_grad) for t in inputs]
    ref64 = _flat_outputs(ref(ref64_in))
    same_in = [None if t is None else t.detach() for t in inputs]
    if dtype in LOW and backend != "reference":
        # the fused ops compute half / bfloat16 in float32 and round once: so does their budget
        same = [o.to(dtype) for o in _flat_outputs(ref([None if t is None else t.float() for t in same_in]))]
    else:
        same = _flat_outputs(ref(same_in))
    assert len(out) == len(ref64)
    for i, (o, r, s) in enumerate(zip(out, ref64, same)):
        assert o.dtype == s.dtype, f"{op} seed {seed} on {backend}: output {i} dtype {o.dtype}, reference {s.dtype}"
        assert_matches_reference(o, r, _budget(s, r, dtype), dtype, what=f"{op} seed {seed} on {backend}: output {i}")
    if not want_grad or not any(o.requires_grad for o in out):
        return
    weights = [torch.randn(o.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) for o in out]
    grads = torch.autograd.grad(sum((o.double() * wt).sum() for o, wt in zip(out, weights)), leaves,
                                allow_unused=True)
    ref_leaves = [t for t in ref64_in if t is not None]
    ref_grads = torch.autograd.grad(sum((o * wt).sum() for o, wt in zip(ref64, weights)), ref_leaves,
                                    allow_unused=True)
    same_leaves = [t.detach().requires_grad_() for t in inputs if t is not None]
    it = iter(same_leaves)
    same_in = [None if t is None else next(it) for t in inputs]
    same_out = _flat_outputs(ref(same_in))
    same_grads = torch.autograd.grad(sum((o.double() * wt).sum() for o, wt in zip(same_out, weights)),
                                     same_leaves, allow_unused=True)
    for i, (g, r, s, t) in enumerate(zip(grads, ref_grads, same_grads, leaves)):
        def dense(x):
            return torch.zeros_like(t, dtype=torch.float64) if x is None else x
        assert_matches_reference(dense(g), dense(r), _budget(dense(s), dense(r), dtype), dtype,
                                 what=f"{op} seed {seed} on {backend}: grad {i}")


def _backends():
    out = []
    for op, impls in IMPLS.items():
        out.append(pytest.param(op, "reference", CASES_PER_OP, id=f"{op}-reference"))
        reason = backends.unavailable_reason("cpu", "cpu", impls["cpu"].cpp_op)
        out.append(pytest.param(op, "cpu", CASES_PER_OP, id=f"{op}-cpu",
                                marks=[pytest.mark.skip(reason=reason)] if reason else []))
        reason = ("triton backend not implemented for this op" if "triton" not in impls
                  else backends.unavailable_reason("triton", "cpu"))
        out.append(pytest.param(op, "triton", TRITON_CASES_PER_OP, id=f"{op}-triton",
                                marks=[pytest.mark.skip(reason=reason)] if reason else []))
    return out


@pytest.mark.parametrize("op,backend,cases", _backends())
def test_fuzz_valid_input(op, backend, cases):
    for seed in range(cases):
        _check_case(op, seed, backend)


# ---- invalid arguments: a ValueError / TypeError naming the argument ----

def _bad_calls():
    x4 = torch.randn(1, 2, 3, 4)
    grid = torch.rand(1, 3, 4, 2) * 2 - 1
    mean, var = torch.rand(1, 2, 2), torch.eye(2).expand(1, 2, 2, 2) * 0.1
    kp = {"mean": mean, "var": var}
    shift = torch.zeros(1, 3, 2)
    yield "logits", lambda b: ops.heatmap_moments([[1.0]], backend=b)
    yield "logits", lambda b: ops.heatmap_moments(torch.ones(1, 2, 3, dtype=torch.int64), backend=b)
    yield "logits", lambda b: ops.heatmap_moments(torch.ones(3, 4), backend=b)
    yield "temperature", lambda b: ops.heatmap_moments(x4, -1.0, backend=b)
    yield "temperature", lambda b: ops.heatmap_moments(x4, float("nan"), backend=b)
    yield "temperature", lambda b: ops.heatmap_moments(x4, "0.1", backend=b)
    yield "kp_variance", lambda b: ops.heatmap_moments(x4, 0.1, "diagonal", backend=b)
    yield "clip_variance", lambda b: ops.heatmap_moments(x4, 0.1, "matrix", -1.0, backend=b)
    yield "mean", lambda b: ops.render_gaussians(torch.rand(1, 2, 3), var, (4, 4), backend=b)
    yield "var", lambda b: ops.render_gaussians(mean, torch.rand(1, 2, 3, 3), (4, 4), backend=b)
    yield "var", lambda b: ops.render_gaussians(mean, -0.5, (4, 4), backend=b)
    yield "spatial_size", lambda b: ops.render_gaussians(mean, var, (0, 4), backend=b)
    yield "spatial_size", lambda b: ops.render_gaussians(mean, var, "big", backend=b)
    yield "heatmap_type", lambda b: ops.keypoint_heatmap_embedding(kp, kp, (4, 4), heatmap_type="sum", backend=b)
    yield "norm_const", lambda b: ops.keypoint_heatmap_embedding(kp, kp, (4, 4), norm_const=0, backend=b)
    yield "kp_source", lambda b: ops.keypoint_heatmap_embedding(kp, {"mean": torch.rand(1, 3, 2), "var": var},
                                                                (4, 4), backend=b)
    yield "kp_driving", lambda b: ops.keypoint_heatmap_embedding(mean, kp, (4, 4), backend=b)
    yield "grid", lambda b: ops.grid_sample(x4, grid.double(), backend=b)
    yield "grid", lambda b: ops.grid_sample(x4, torch.rand(2, 3, 4, 2), backend=b)
    yield "input", lambda b: ops.grid_sample(x4[0], grid, backend=b)
    yield "mode", lambda b: ops.grid_sample(x4, grid, "cubic", backend=b)
    yield "padding_mode", lambda b: ops.grid_sample(x4, grid, "bilinear", "wrap", backend=b)
    yield "align_corners", lambda b: ops.grid_sample(x4, grid, "bilinear", "zeros", "yes", backend=b)
    yield "kp_shift", lambda b: ops.compose_flow(torch.rand(1, 3, 4, 4), torch.rand(1, 2, 2), backend=b)
    yield "correction", lambda b: ops.compose_flow(torch.rand(1, 3, 4, 4), shift, torch.rand(1, 2, 3, 4), backend=b)
    yield "mask_logits", lambda b: ops.compose_flow(torch.rand(1, 0, 4, 4), torch.rand(1, 0, 2), backend=b)
    yield "kp_shift", lambda b: ops.shifted_warps(x4, torch.rand(2, 3, 2), backend=b)
    yield "source", lambda b: ops.shifted_warps(torch.ones(1, 2, 3, 4, dtype=torch.int32), shift, backend=b)
    yield "features", lambda b: ops.warp_features(x4, grid, backend=b)
    yield "features[1]", lambda b: ops.warp_features([x4, torch.rand(2, 2, 3, 4)], grid, backend=b)
    yield "mode", lambda b: ops.warp_features([x4], grid, "bicubic", backend=b)
    yield "grid", lambda b: ops.warp_features([x4], torch.rand(1, 3, 4, 3), backend=b)
    yield "backend", lambda b: ops.grid_sample(x4, grid, backend="fastest")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_fuzz_bad_arguments_name_the_argument(backend):
    if backend == "cpu" and backends.unavailable_reason("cpu", "cpu", "grid_sample_forward"):
        pytest.skip("the cpu backend is not built")
    for name, bad in _bad_calls():
        with pytest.raises((ValueError, TypeError)) as info:
            bad(backend)
        assert name in str(info.value), f"error for a bad {name!r} does not name it: {info.value}"

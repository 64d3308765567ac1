"""Second derivatives through every public op on every backend (issue 11, item 1).

The fused backward kernels return gradients without a graph; while a graph of the backward is
being built (create_graph=True, torch.func) the ops compute their backward with the reference's
differentiable math instead (fastmotion/ops/_eager.py: builds_graph). Checked with
gradgradcheck in float64 (numerical second derivatives of the op itself: a silently zero or
detached first-order gradient fails), on inputs tiny enough for the Triton interpreter.
"""
import importlib

import pytest
import torch

from fastmotion import reference
from fastmotion.ops import (compose_flow, grid_sample, heatmap_moments, keypoint_heatmap_embedding,
                            render_gaussians, shifted_warps, warp_features)
from tests.tolerance import backend_params

# the op modules (their names are shadowed by the ops in fastmotion.ops)
compose_module, shift_module, gaussian, grid_sample_module, heatmap_module, warp_module = (
    importlib.import_module(f"fastmotion.ops.{m}")
    for m in ("compose_flow", "shifted_warps", "render_gaussians", "grid_sample", "heatmap_moments", "warp_features"))

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # interpreter, masked lanes


def _rand(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def _covariance(g, *lead):
    a = _rand(g, *lead, 2, 2, scale=0.3)
    return a @ a.transpose(-1, -2) + 0.1 * torch.eye(2, dtype=torch.float64)


def _cases():
    """name -> (IMPLS, inputs(generator), fn(inputs, backend) -> tensor or tuple)."""
    def shift(g, n, k1, scale=0.15):
        s = _rand(g, n, k1, 2, scale=scale)
        s[:, 0] = 0.03  # off the integer taps (where the sample is not differentiable)
        return s

    return {
        "heatmap_moments-matrix": (heatmap_module.IMPLS, lambda g: [_rand(g, 1, 2, 3, 4)],
                                   lambda i, b: heatmap_moments(i[0], 0.5, backend=b)),
        "heatmap_moments-clip": (heatmap_module.IMPLS, lambda g: [_rand(g, 1, 2, 3, 4, scale=3.0)],
                                 lambda i, b: heatmap_moments(i[0], 0.2, "matrix", 0.3, backend=b)),
        "heatmap_moments-single": (heatmap_module.IMPLS, lambda g: [_rand(g, 1, 2, 3, 4)],
                                   lambda i, b: heatmap_moments(i[0], 0.5, "single", backend=b)),
        "heatmap_moments-fixed": (heatmap_module.IMPLS, lambda g: [_rand(g, 1, 2, 3, 4)],
                                  lambda i, b: heatmap_moments(i[0], 0.5, 0.01, backend=b)[0]),
        "render_gaussians-matrix": (gaussian.IMPLS, lambda g: [_rand(g, 1, 2, 2, scale=0.4), _covariance(g, 1, 2)],
                                    lambda i, b: render_gaussians(i[0], i[1], (3, 4), backend=b)),
        "render_gaussians-single": (gaussian.IMPLS,
                                    lambda g: [_rand(g, 1, 2, 2, scale=0.4), 0.2 + _rand(g, 1, 2, 1, 1).abs()],
                                    lambda i, b: render_gaussians(i[0], i[1], (3, 4), backend=b)),
        "embedding-difference-sum": (gaussian.IMPLS,
                                     lambda g: [_rand(g, 1, 2, 2, scale=0.4), _covariance(g, 1, 2),
                                                _rand(g, 1, 2, 2, scale=0.4), _covariance(g, 1, 2)],
                                     lambda i, b: keypoint_heatmap_embedding(
                                         {"mean": i[0], "var": i[1]}, {"mean": i[2], "var": i[3]}, (3, 4),
                                         norm_const="sum", backend=b)),
        "embedding-fixed": (gaussian.IMPLS,
                            lambda g: [_rand(g, 1, 2, 2, scale=0.4), _rand(g, 1, 2, 2, scale=0.4)],
                            lambda i, b: keypoint_heatmap_embedding(
                                {"mean": i[0]}, {"mean": i[1]}, (3, 4), norm_const=10.0, kp_variance=0.05,
                                backend=b)),
        "grid_sample-zeros": (grid_sample_module.IMPLS,
                              lambda g: [_rand(g, 1, 2, 3, 4), _rand(g, 1, 2, 3, 2, scale=0.6)],
                              lambda i, b: grid_sample(i[0], i[1], "bilinear", "zeros", True, backend=b)),
        "grid_sample-border": (grid_sample_module.IMPLS,
                               lambda g: [_rand(g, 1, 2, 3, 4), _rand(g, 1, 2, 3, 2, scale=0.8)],
                               lambda i, b: grid_sample(i[0], i[1], "bilinear", "border", False, backend=b)),
        "compose_flow": (compose_module.IMPLS,
                         lambda g: [_rand(g, 1, 3, 3, 4), _rand(g, 1, 3, 2, scale=0.2), _rand(g, 1, 2, 3, 4)],
                         lambda i, b: compose_flow(*i, backend=b)),
        "shifted_warps": (shift_module.IMPLS, lambda g: [_rand(g, 1, 2, 3, 4), shift(g, 1, 3)],
                          lambda i, b: shifted_warps(*i, backend=b)),
        "warp_features-bilinear": (warp_module.IMPLS,
                                   lambda g: [_rand(g, 1, 2, 3, 2, scale=0.6), _rand(g, 1, 2, 3, 4),
                                              _rand(g, 1, 1, 4, 3)],
                                   lambda i, b: tuple(warp_features(i[1:], i[0], "bilinear", backend=b))),
        "warp_features-nearest": (warp_module.IMPLS,
                                  lambda g: [_rand(g, 1, 2, 3, 2, scale=0.6), _rand(g, 1, 2, 3, 4)],
                                  lambda i, b: tuple(warp_features(i[1:], i[0], "nearest", backend=b))),
    }


CASES = _cases()
PARAMS = [pytest.param(name, *p.values, marks=p.marks, id=f"{name}-{p.id}")
          for name, (impls, _, _) in CASES.items()
          for p in [pytest.param("reference", "cpu", id="reference-cpu")] + backend_params(impls)]


def _inputs(name, device):
    return [t.to(device).requires_grad_() for t in CASES[name][1](torch.Generator().manual_seed(11))]


@pytest.mark.parametrize("name,backend,device", PARAMS)
def test_gradgradcheck(name, backend, device):
    _, _, fn = CASES[name]
    inputs = _inputs(name, device)
    assert torch.autograd.gradgradcheck(lambda *t: fn(list(t), backend), inputs, eps=1e-6, atol=1e-5, rtol=1e-4,
                                        fast_mode=True)


@pytest.mark.parametrize("name,backend,device", [p for p in PARAMS if p.values[1] != "reference"])
def test_second_derivative_matches_reference(name, backend, device):
    """A gradient penalty (the squared norm of a first-order gradient, as in R1) differentiated
    again: the fused backend's result equals the reference backend's."""
    _, _, fn = CASES[name]

    def penalty_grads(b):
        inputs = _inputs(name, device)
        out = fn(inputs, b)
        outs = out if isinstance(out, tuple) else (out,)
        outs = [o for o in outs if o is not None]
        weights = [torch.linspace(-1, 1, o.numel(), dtype=o.dtype, device=device).view(o.shape) for o in outs]
        loss = sum((o * w).sum() for o, w in zip(outs, weights))
        first = torch.autograd.grad(loss, inputs, create_graph=True, allow_unused=True)
        penalty = sum((f**2).sum() for f in first if f is not None)
        with_graph = [f is not None and f.requires_grad for f in first]
        return with_graph, torch.autograd.grad(penalty, inputs, allow_unused=True)

    (got_graph, got), (expected_graph, expected) = penalty_grads(backend), penalty_grads("reference")
    # (a gradient that is constant, like that of compose_flow's additive correction, has none)
    assert got_graph == expected_graph, "which first-order gradients carry a graph"
    for i, (a, e) in enumerate(zip(got, expected)):
        if e is None:
            assert a is None or torch.count_nonzero(a) == 0, f"input {i}"
            continue
        assert a is not None, f"input {i}: no second derivative"
        torch.testing.assert_close(a, e, rtol=1e-7, atol=1e-9, msg=f"input {i}")


@pytest.mark.parametrize("name", ["heatmap_moments-matrix", "render_gaussians-matrix", "grid_sample-zeros",
                                  "compose_flow", "shifted_warps"])
def test_torch_func_hessian_cpu_backend(name):
    """torch.func composes over the cpu backend's ops to second order (jacfwd(jacrev) would need
    forward mode; jacrev(grad) runs the backward under a graph-building transform)."""
    from fastmotion import backends

    impls, _, fn = CASES[name]
    if backends.unavailable_reason("cpu", "cpu", impls["cpu"].cpp_op):
        pytest.skip("the cpu backend is not built")
    inputs = [t.detach() for t in _inputs(name, "cpu")]

    def loss(x, b):
        out = fn([x] + inputs[1:], b)
        outs = out if isinstance(out, tuple) else (out,)
        return sum((o * torch.cos(o)).sum() for o in outs if o is not None)

    got = torch.func.jacrev(torch.func.grad(lambda x: loss(x, "cpu")))(inputs[0])
    expected = torch.func.jacrev(torch.func.grad(lambda x: loss(x, "reference")))(inputs[0])
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)


def test_first_order_backward_stays_on_the_kernels(monkeypatch):
    """Without create_graph the fused backward runs (the reference is not called)."""
    calls = []
    real = reference.heatmap_moments
    monkeypatch.setattr(reference, "heatmap_moments", lambda *a, **k: calls.append(1) or real(*a, **k))
    from fastmotion import backends

    if backends.unavailable_reason("cpu", "cpu", heatmap_module.IMPLS["cpu"].cpp_op):
        pytest.skip("the cpu backend is not built")
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    mean, var = heatmap_moments(x, 0.5, backend="cpu")
    torch.autograd.grad(mean.sum() + var.sum(), x)
    assert calls == []
    mean, var = heatmap_moments(x, 0.5, backend="cpu")
    torch.autograd.grad(mean.sum() + var.sum(), x, create_graph=True)
    assert calls == [1]


@pytest.mark.parametrize("op", ["heatmap_moments", "grid_sample", "shifted_warps"])
def test_registered_ops_double_backward(op):
    """The torch.library ops (what torch.compile traces) share the same differentiable formula."""
    from fastmotion import backends

    impls = {"heatmap_moments": heatmap_module.IMPLS, "grid_sample": grid_sample_module.IMPLS,
             "shifted_warps": shift_module.IMPLS}[op]
    if backends.unavailable_reason("cpu", "cpu", impls["cpu"].cpp_op):
        pytest.skip("the cpu backend is not built")
    g = torch.Generator().manual_seed(12)
    if op == "heatmap_moments":
        inputs = [_rand(g, 2, 3, 4)]
        fn = lambda x: torch.ops.fastmotion.heatmap_moments_forward(x, 0.5, 0, 0.0)[:2]  # noqa: E731
    elif op == "grid_sample":
        inputs = [_rand(g, 1, 2, 3, 4), _rand(g, 1, 3, 3, 2, scale=0.6)]
        fn = lambda x, grid: torch.ops.fastmotion.grid_sample_forward(x, grid, 0, 0, True)  # noqa: E731
    else:
        shift = _rand(g, 1, 3, 2, scale=0.2)
        inputs = [_rand(g, 1, 2, 3, 4), shift]
        fn = lambda x, s: torch.ops.fastmotion.shifted_warps_forward(x, s)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, [t.requires_grad_() for t in inputs], eps=1e-6, atol=1e-5,
                                        rtol=1e-4, fast_mode=True)

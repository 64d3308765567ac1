"""The public ops' eager path (fastmotion/ops/_eager.py): no graph is recorded when no input needs
a gradient, one node of the op's own autograd.Function when some do, and the gradients of every
subset of differentiable inputs match the float64 reference's (the path remaps which inputs need
gradients: warp_features passes its list of maps flat)."""
import importlib
import itertools

import pytest
import torch

from fastmotion import reference
from fastmotion.ops import compose_flow, grid_sample, heatmap_moments, render_gaussians, shifted_warps, warp_features
from fastmotion.reference import gaussian as ref_gaussian
from fastmotion.reference import warp as ref_warp
from tests.tolerance import backend_params

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # interpreter, masked lanes


def _flat(tensors):
    return torch.cat([t.flatten() for t in tensors])


def _impls(module, name="IMPLS"):
    return getattr(importlib.import_module(f"fastmotion.ops.{module}"), name)


def _inputs(op, device):
    """float64 inputs, small enough for the Triton interpreter."""
    g = torch.Generator().manual_seed(3)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(device)

    if op == "heatmap_moments":
        return [rand(2, 3, 5, 6)]
    if op == "render_gaussians":
        a = rand(2, 3, 2, 2, scale=0.2)
        eye = torch.eye(2, dtype=torch.float64, device=device)
        return [rand(2, 3, 2, scale=0.4), a @ a.transpose(-1, -2) + 0.05 * eye]
    if op == "grid_sample":
        return [rand(2, 3, 5, 6), rand(2, 4, 5, 2, scale=0.6)]
    if op in ("compose_flow", "shifted_warps"):
        first = rand(2, 4, 5, 6) if op == "compose_flow" else rand(2, 3, 5, 6)
        shift = rand(2, 4, 2, scale=0.1)
        shift[:, 0] = 0
        return [first, shift] + ([rand(2, 2, 5, 6, scale=0.05)] if op == "compose_flow" else [])
    if op == "warp_features":
        return [rand(2, 3, 4, 2, scale=0.6), rand(2, 2, 5, 6), rand(2, 3, 3, 4)]
    raise ValueError(op)


# op -> (module, IMPLS name, fused call(inputs, backend) -> output tensor, reference call(inputs))
OPS = {
    "heatmap_moments": ("heatmap_moments", "IMPLS",
                        lambda i, b: _flat(heatmap_moments(i[0], 0.1, backend=b)),
                        lambda i: _flat(reference.heatmap_moments(i[0], 0.1))),
    "render_gaussians": ("gaussian", "IMPLS",
                         lambda i, b: render_gaussians(i[0], i[1], (5, 6), backend=b),
                         lambda i: ref_gaussian.render_gaussians(i[0], i[1], (5, 6))),
    "grid_sample": ("grid_sample", "IMPLS",
                    lambda i, b: grid_sample(i[0], i[1], "bilinear", "zeros", True, backend=b),
                    lambda i: ref_warp.grid_sample(i[0], i[1], "bilinear", "zeros", True)),
    "compose_flow": ("dense_motion", "COMPOSE_IMPLS",
                     lambda i, b: compose_flow(*i, backend=b),
                     lambda i: ref_warp.compose_flow(*i)),
    "shifted_warps": ("dense_motion", "SHIFT_IMPLS",
                      lambda i, b: shifted_warps(*i, backend=b),
                      lambda i: ref_warp.shifted_warps(*i)),
    "warp_features": ("warp_features", "IMPLS",
                      lambda i, b: _flat(warp_features(i[1:], i[0], "bilinear", backend=b)),
                      lambda i: _flat(ref_warp.warp_features(list(i[1:]), i[0], "bilinear"))),
}
CASES = [pytest.param(op, *p.values, marks=p.marks, id=f"{op}-{p.id}")
         for op, (module, impls, _, _) in OPS.items() for p in backend_params(_impls(module, impls))]


@pytest.mark.parametrize("op,backend,device", CASES)
def test_no_graph_without_gradients(op, backend, device):
    fused = OPS[op][2]
    inputs = _inputs(op, device)
    out = fused(inputs, backend)
    assert out.grad_fn is None and not out.requires_grad
    with torch.no_grad():
        out = fused([t.requires_grad_() for t in inputs], backend)
    assert out.grad_fn is None and not out.requires_grad
    with torch.inference_mode():
        out_inference = fused([t.detach() for t in inputs], backend)
    torch.testing.assert_close(out_inference, out, rtol=0, atol=0)


@pytest.mark.parametrize("op,backend,device", CASES)
def test_gradients_of_every_input_subset(op, backend, device):
    _, _, fused, ref = OPS[op]
    base = _inputs(op, device)
    g = torch.Generator().manual_seed(4)
    weight = None
    for k in range(1, len(base) + 1):
        for subset in itertools.combinations(range(len(base)), k):
            inputs = [t.detach().clone().requires_grad_(i in subset) for i, t in enumerate(base)]
            out = fused(inputs, backend)
            if weight is None:
                weight = torch.randn(out.shape, generator=g, dtype=torch.float64).to(device)
            # one node of the op's eager autograd.Function (not the registered op's autograd)
            assert out.requires_grad and out.grad_fn is not None
            wanted = [inputs[i] for i in subset]
            grads = torch.autograd.grad((out * weight).sum(), wanted)
            ref_inputs = [t.detach().clone().requires_grad_(i in subset) for i, t in enumerate(base)]
            ref_grads = torch.autograd.grad((ref(ref_inputs) * weight).sum(), [ref_inputs[i] for i in subset])
            for i, got, exp in zip(subset, grads, ref_grads):
                torch.testing.assert_close(got, exp, rtol=1e-9, atol=1e-9, msg=f"input {i} of subset {subset}")


@pytest.mark.parametrize("op,backend,device", [c for c in CASES if c.values[1] == "cpu"])
def test_eager_path_records_the_ops_own_function(op, backend, device):
    """With gradients, the graph node is the eager autograd.Function of the op (named after the
    op), not torch.library's generated one: the eager path is really the one that ran."""
    inputs = [t.requires_grad_() for t in _inputs(op, device)]
    module, impls, fused, _ = OPS[op]
    node = fused(inputs, backend).grad_fn
    names = set()
    stack = [node]
    while stack:  # the op's node may sit under a few view / cat nodes of the test's own flatten
        n = stack.pop()
        if n is None:
            continue
        names.add(type(n).__name__)
        stack.extend(f for f, _ in n.next_functions)
    expected = {"heatmap_moments": "HeatmapMomentsForward", "render_gaussians": "RenderGaussiansForward",
                "grid_sample": "GridSampleForward", "compose_flow": "ComposeFlowForward",
                "shifted_warps": "ShiftedWarpsForward", "warp_features": "WarpFeatures"}[op]
    assert any(name.startswith(expected) for name in names), names


KERNEL_MODULES = {"heatmap_moments": "heatmap_moments", "render_gaussians": "gaussian", "grid_sample": "grid_sample",
                  "compose_flow": "dense_motion", "shifted_warps": "dense_motion", "warp_features": "warp_features"}


@pytest.mark.parametrize("op,backend,device", [c for c in CASES if c.values[1] == "triton"])
def test_triton_launches_skip_the_tracing_hop(op, backend, device, monkeypatch):
    """Eager Triton launches run with torch's wrap_triton switched off (as inside a triton_op):
    otherwise every launch would go through the tracing higher-order op. Checked by watching the
    switch at each wrap_triton call of the op's kernel module, forward and backward."""
    from torch._library.triton import is_wrap_triton_enabled

    kernels = importlib.import_module(f"fastmotion.kernels.{KERNEL_MODULES[op]}")
    seen = []
    real = kernels.wrap_triton

    def spy(kernel):
        seen.append(is_wrap_triton_enabled())
        return real(kernel)

    monkeypatch.setattr(kernels, "wrap_triton", spy)
    inputs = [t.requires_grad_() for t in _inputs(op, device)]
    out = OPS[op][2](inputs, backend)
    torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    assert len(seen) >= 2, "the op's forward and backward kernels were not launched"
    assert not any(seen), f"{sum(seen)} of {len(seen)} launches went through the wrap_triton HOP"


@pytest.mark.parametrize("op,backend,device", CASES)
def test_torch_func_grad(op, backend, device):
    """torch.func.grad (a functorch transform) differentiates the public ops on the C++ backends:
    under transforms the eager path uses its setup_context-style Function, which functorch
    requires. Triton kernels cannot: a clear error says so."""
    _, _, fused, ref = OPS[op]
    base = _inputs(op, device)
    weight = torch.randn(ref(base).shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64).to(device)
    if backend == "triton":  # a clear error, not functorch's or Triton's
        with pytest.raises(RuntimeError, match="torch.func transforms .* cannot run the Triton kernels"):
            torch.func.grad(lambda t: (fused([t] + base[1:], backend) * weight).sum())(base[0])
        return
    for i in range(len(base)):
        def loss(t, i=i):
            return (fused(base[:i] + [t] + base[i + 1:], backend) * weight).sum()

        got = torch.func.grad(loss)(base[i])
        ref_inputs = [t.detach().clone().requires_grad_(j == i) for j, t in enumerate(base)]
        (exp,) = torch.autograd.grad((ref(ref_inputs) * weight).sum(), [ref_inputs[i]])
        torch.testing.assert_close(got, exp, rtol=1e-9, atol=1e-9, msg=f"input {i}")

"""The public ops' eager path (fastmotion/ops/_eager.py): no graph is recorded when no input needs
a gradient, one node of the op's own autograd.Function when some do, and the gradients of every
subset of differentiable inputs match the float64 reference's (the path remaps which inputs need
gradients: warp_features passes its list of maps flat)."""
import importlib
import itertools
import pkgutil

import pytest
import torch

import fastmotion.kernels
from fastmotion.ops import _eager, registry
from tests.tolerance import backend_params

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # interpreter, masked lanes


def _flat(result):
    return torch.cat([t.flatten() for t in registry.outputs_of(result)])


def _inputs(op, device):
    """float64 tensors of the op's registry entry at its call-overhead size (small enough for the
    Triton interpreter)."""
    spec = registry.get(op)
    inputs = spec.make_inputs("cpu", torch.float64, **spec.tiny)
    return [t.to(device) for t in inputs.tensors]


def _fused(op):
    """(inputs, backend) -> the registered op's outputs, flat."""
    spec = registry.get(op)
    options = spec.make_inputs("cpu", torch.float64, **spec.tiny).options
    return lambda inputs, backend: _flat(spec.fused(*inputs, backend=backend, **options))


def _reference(op):
    spec = registry.get(op)
    options = spec.make_inputs("cpu", torch.float64, **spec.tiny).options
    return lambda inputs: _flat(spec.reference(*inputs, **options))


CASES = [pytest.param(op, *p.values, marks=p.marks, id=f"{op}-{p.id}")
         for op, spec in registry.OPS.items() for p in backend_params(spec.impls())]


@pytest.mark.parametrize("op,backend,device", CASES)
def test_no_graph_without_gradients(op, backend, device):
    fused = _fused(op)
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
    fused, ref = _fused(op), _reference(op)
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
    node = _fused(op)(inputs, backend).grad_fn
    names = set()
    stack = [node]
    while stack:  # the op's node may sit under a few view / cat nodes of the test's own flatten
        n = stack.pop()
        if n is None:
            continue
        names.add(type(n).__name__)
        stack.extend(f for f, _ in n.next_functions)
    expected = _eager.function_name(registry.get(op).impls()[backend].cpp_op)
    assert any(name.startswith(expected) for name in names), names


def _kernel_modules():
    return [importlib.import_module(f"fastmotion.kernels.{m.name}")
            for m in pkgutil.iter_modules(fastmotion.kernels.__path__)]


@pytest.mark.parametrize("op,backend,device", [c for c in CASES if c.values[1] == "triton"])
def test_triton_launches_skip_the_tracing_hop(op, backend, device, monkeypatch):
    """Eager Triton launches run with torch's wrap_triton switched off (as inside a triton_op):
    otherwise every launch would go through the tracing higher-order op. Checked by watching the
    switch at each wrap_triton call of the kernel modules, forward and backward."""
    from torch._library.triton import is_wrap_triton_enabled

    seen = []
    for kernels in _kernel_modules():
        if hasattr(kernels, "wrap_triton"):
            def spy(kernel, real=kernels.wrap_triton):
                seen.append(is_wrap_triton_enabled())
                return real(kernel)

            monkeypatch.setattr(kernels, "wrap_triton", spy)
    inputs = [t.requires_grad_() for t in _inputs(op, device)]
    out = _fused(op)(inputs, backend)
    torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    assert len(seen) >= 2, "the op's forward and backward kernels were not launched"
    assert not any(seen), f"{sum(seen)} of {len(seen)} launches went through the wrap_triton HOP"


@pytest.mark.parametrize("op,backend,device", CASES)
def test_torch_func_grad(op, backend, device):
    """torch.func.grad (a functorch transform) differentiates the public ops on the C++ backends:
    under transforms the eager path uses its setup_context-style Function, which functorch
    requires. Triton kernels cannot: a clear error says so."""
    fused, ref = _fused(op), _reference(op)
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

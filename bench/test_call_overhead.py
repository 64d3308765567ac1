"""Host time per call of each public op at a tiny size (the registry's ``tiny`` case: the kernel
itself takes ~1 us), so what is measured is dispatch: argument checks, backend selection and the
autograd machinery.

On a GPU this time is paid for every call whatever the size, and the kernels of a real-time
frame take tens of microseconds, so it decides small calls. Providers:
  * reference: the eager PyTorch composition (several ATen ops); native: PyTorch's own op where
    there is one besides the reference;
  * <backend>: the public fastmotion op (its eager path, fastmotion/ops/_eager.py);
  * <backend>-registered: the same kernels called as the registered torch.library op
    (``torch.ops.fastmotion.<op>_forward``: its Python autograd kernel on every call), which is
    what the public ops called before the eager path;
  * <backend>+nvtx: the public op inside ``fastmotion.nvtx.range(...)``, the helper that marks op
    launches and model stages for Nsight Systems: with FASTMOTION_NVTX unset (the default) this
    shows what the switched-off range costs (compare with <backend>).
Modes: ``fwd`` (inputs do not require grad) and ``fwd+bwd`` (forward, then
``torch.autograd.grad`` of the first output).
"""
import os

import pytest
import torch

from bench import harness
from fastmotion import nvtx
from fastmotion.benchmark import ops as bench_ops
from fastmotion.ops import registry

BACKENDS = ("cpu", "cuda", "triton")
PROVIDERS = ("reference", "native") + tuple(f"{b}{kind}" for b in BACKENDS for kind in ("", "-registered", "+nvtx"))


def _callable(spec, provider, device):
    """(tensors, fn(*tensors) -> first output)"""
    inputs = bench_ops.make_inputs(spec, spec.tiny, device)
    options = dict(inputs.options)

    def first(fn):
        return lambda *t: registry.outputs_of(fn(*t))[0]

    if provider in ("reference", "native"):
        reason = bench_ops.skip_reason(spec, provider, device)
        if reason:
            pytest.skip(reason)
        fn = spec.reference if provider == "reference" else spec.native
        return inputs.tensors, first(lambda *t: fn(*t, **options))
    backend, kind = (provider.split("-")[0], "registered") if "-" in provider else \
        (provider.split("+")[0], "nvtx" if "+" in provider else "")
    reason = bench_ops.skip_reason(spec, backend, device)
    if reason:
        pytest.skip(reason)
    if kind == "registered":
        if spec.registered is None:
            pytest.skip(f"{spec.name}: no registered-op provider in this benchmark")
        return inputs.tensors, first(lambda *t: spec.registered(t, options, backend))
    if kind == "nvtx":
        name = spec.name

        def marked(*t):
            with nvtx.range(name):
                return spec.fused(*t, backend=backend, **options)
        return inputs.tensors, first(marked)
    return inputs.tensors, first(lambda *t: spec.fused(*t, backend=backend, **options))


@pytest.mark.parametrize("mode", registry.MODES)
@pytest.mark.parametrize("op", list(registry.OPS))
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("device", harness.devices())
def test_call_overhead(benchmark, device, provider, op, mode):
    tensors, fn = _callable(registry.get(op), provider, device)
    benchmark.group = f"call overhead {op} {mode} {device}"
    if mode == "fwd+bwd":
        tensors = [t.detach().requires_grad_() for t in tensors]

        def call():
            out = fn(*tensors)
            return torch.autograd.grad(out, tensors, torch.ones_like(out), allow_unused=True)
    else:
        def call():
            with torch.no_grad():
                return fn(*tensors)

    for _ in range(20):
        call()
    harness.sync(device)

    def timed():
        out = call()
        harness.sync(device)
        return out

    benchmark.pedantic(timed, rounds=int(os.environ.get("FASTMOTION_BENCH_OVERHEAD_ROUNDS", "2000")),
                       iterations=1, warmup_rounds=50)
    benchmark.extra_info.update(op=op, provider=provider, mode=mode, nvtx_enabled=nvtx.ENABLED)

"""Every registered op (fastmotion/ops/registry.py) x its benchmark shapes x each provider,
forward and forward + backward: the eager reference, torch.compile(reference), PyTorch's own op
where one exists, and each fused backend (plus the op's variants). The inputs, the provider
callables and the bytes each call must move come from the registry through
fastmotion.benchmark.ops, the same code ``fastmotion bench ops`` runs.

    python -m pytest bench/test_ops.py -q -k "grid_sample and fwd+bwd"
    FASTMOTION_BENCH_COMPILE=key  # torch.compile only at each op's headline shape (none: never)
"""
import pytest

from bench import harness
from fastmotion.benchmark import ops as bench_ops
from fastmotion.ops import registry

CASES = [(spec.name, case) for spec in registry.OPS.values() for case in spec.cases]
PROVIDERS = list(dict.fromkeys(p for spec in registry.OPS.values() for p in bench_ops.providers(spec)))


@pytest.mark.parametrize("mode", registry.MODES)
@pytest.mark.parametrize("op,case", CASES, ids=[f"{op}-{case.label.replace(' ', '_')}" for op, case in CASES])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("device", harness.devices())
def test_op(benchmark, device, provider, op, case, mode, monkeypatch):
    spec = registry.get(op)
    if provider not in bench_ops.providers(spec):
        pytest.skip(f"{op} has no provider {provider}")
    reason = bench_ops.skip_reason(spec, provider, device, case.key, mode)
    if reason:
        pytest.skip(reason)
    for name, value in (spec.variants[provider][1] if provider in spec.variants else {}).items():
        monkeypatch.setenv(name, value)
    inputs = bench_ops.make_inputs(spec, case.size, device)
    call = bench_ops.make_call(spec, inputs, provider, mode)
    benchmark.group = f"{op} {mode} {case.label} {device}"
    harness.run(benchmark, call, device, spec.bytes_moved(inputs, mode), op=op, provider=provider,
                case=case.label, mode=mode)

"""fastmotion/ops/registry.py, which every benchmark reads: every public op registers one spec
(from its own module), each op's fused call computes what its reference computes (so a benchmark
compares the same work), its shapes are well formed, and its bytes-moved formula counts what the
op must read and write."""
import dataclasses

import pytest
import torch

import fastmotion.ops
from fastmotion import backends
from fastmotion.ops import registry

OPS = list(registry.OPS.values())


@pytest.mark.parametrize("spec", OPS, ids=lambda s: s.name)
def test_each_op_has_one_headline_and_one_quick_shape(spec):
    assert sum(c.key for c in spec.cases) == 1 and sum(c.quick for c in spec.cases) == 1
    assert len({c.label for c in spec.cases}) == len(spec.cases)
    assert "reference" in spec.impls()


@pytest.mark.parametrize("spec", OPS, ids=lambda s: s.name)
def test_fused_call_matches_the_reference_at_the_tiny_size(spec):
    inputs = spec.make_inputs("cpu", torch.float64, **spec.tiny)
    expected = registry.outputs_of(spec.reference(*inputs.tensors, **inputs.options))
    ran = 0
    for backend, impl in spec.impls().items():
        if backends.unavailable_reason(backend, "cpu", impl.cpp_op) is not None:
            continue
        got = registry.outputs_of(spec.fused(*inputs.tensors, backend=backend, **inputs.options))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-9)
        ran += 1
    assert ran >= 1  # the reference backend always runs


def test_bytes_moved_counts_inputs_outputs_and_gradients():
    spec = registry.get("shifted_warps")
    inputs = spec.make_inputs("cpu", torch.float32, shape=(2, 3, 8, 8), k1=5)
    src, shift = 2 * 3 * 8 * 8 * 4, 2 * 5 * 2 * 4
    out = 5 * src
    assert spec.bytes_moved(inputs, "fwd") == src + shift + out
    assert spec.bytes_moved(inputs, "fwd+bwd") == (src + shift + out) + out + 2 * (src + shift)
    spec = registry.get("heatmap_moments")
    inputs = spec.make_inputs("cpu", torch.bfloat16, shape=(2, 10, 16, 16))
    logits, stats = 2 * 10 * 16 * 16 * 2, 2 * 10 * 6 * 2
    assert spec.bytes_moved(inputs, "fwd") == logits + stats


def test_smooth_flow_grid_is_a_small_displacement_of_the_identity():
    grid = registry.smooth_flow_grid(3, 9, 11, amplitude=0.05)
    assert grid.shape == (3, 9, 11, 2)
    xs = torch.linspace(-1, 1, 11)
    assert (grid[..., 0] - xs).abs().max() <= 0.05 + 1e-6
    assert not torch.equal(grid[0], grid[1])  # a different flow per image


def test_unknown_op_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown op 'nope'.*grid_sample"):
        registry.get("nope")


def test_every_public_op_registers_one_spec_in_the_public_order():
    # each op module registers its own spec; the registry lists them in fastmotion.ops.__all__'s order
    assert list(registry.OPS) == list(fastmotion.ops.__all__)
    assert all(registry.get(name).name == name for name in registry.OPS)


def test_registering_a_name_twice_is_refused():
    spec = dataclasses.replace(registry.get("grid_sample"))
    with pytest.raises(ValueError, match="'grid_sample' is registered twice"):
        registry.register(spec)
    assert registry.get("grid_sample") is not spec

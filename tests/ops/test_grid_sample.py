"""grid_sample: every backend against F.grid_sample computed in float64 (tests/tolerance.py rule),
bit-exactness with PyTorch's CPU kernel, NaN/inf grids, layouts and odd sizes, gradients,
determinism of the CPU backward, torch.library registration, Triton compile, bad input."""
import importlib
import itertools

import pytest
import torch
import torch.nn.functional as F

import fastmotion
from fastmotion.ops import grid_sample
from tests.compile_check import assert_compiles_like_eager
from tests.determinism import count_gathers, deterministic_algorithms
from tests.tolerance import assert_matches_reference, backend_params, gather_params

gs_mod = importlib.import_module("fastmotion.ops.grid_sample")  # the module, not the function
# + the Triton backend once more with its deterministic gather input gradient
BACKENDS = backend_params(gs_mod.IMPLS) + gather_params(gs_mod.IMPLS)
MODES = ("bilinear", "nearest")
PADS = ("zeros", "border", "reflection")
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
# PyTorch's AVX2/AVX512 CPU kernels round like fastmotion's (explicit fma); its DEFAULT build does not.
EXACT_CPU = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def _interp(backend, device):
    return backend == "triton" and device == "cpu"


def _data(n, c, h, w, ho, wo, seed=0, far=0.3):
    """float64 input and grid: most grid points in [-1.2, 1.2], a fraction ``far`` in [-5, 5]
    (several reflections), none exactly on a pixel."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    grid = (torch.rand(n, ho, wo, 2, generator=g, dtype=torch.float64) * 2 - 1) * 1.2
    wide = (torch.rand(n, ho, wo, 2, generator=g, dtype=torch.float64) * 2 - 1) * 5
    pick = torch.rand(n, ho, wo, 1, generator=g, dtype=torch.float64) < far
    return x, torch.where(pick, wide, grid)


def _smooth_grid(n, ho, wo, amp=0.08, seed=0):
    """A smooth, near-identity sampling grid like a dense-motion flow."""
    ys = torch.linspace(-1, 1, ho, dtype=torch.float64)
    xs = torch.linspace(-1, 1, wo, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy], -1).expand(n, ho, wo, 2)
    phase = torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1) + seed
    return (base + amp * torch.sin(3 * base.flip(-1) + phase)).contiguous()


def _run(x, grid, mode, pad, align, backend, gout=None):
    """(output, grad_input, grad_grid) of one backend; grads only when gout is given."""
    if gout is None:
        with torch.no_grad():
            return grid_sample(x, grid, mode, pad, align, backend=backend), None, None
    x = x.detach().requires_grad_()
    grid = grid.detach().requires_grad_(mode == "bilinear")
    out = grid_sample(x, grid, mode, pad, align, backend=backend)
    inputs = (x, grid) if mode == "bilinear" else (x,)
    grads = torch.autograd.grad(out, inputs, gout.to(device=out.device, dtype=out.dtype))
    return out, grads[0], grads[1] if mode == "bilinear" else None


def _check_against_reference(backend, device, x64, grid64, mode, pad, align, dtype, grads=True):
    x = x64.to(dtype)
    grid = grid64.to(dtype)
    xr, gr = x.double(), grid.double()  # the rounded inputs: only the kernel's own error counts
    gout64 = torch.randn(x.shape[0], x.shape[1], grid.shape[1], grid.shape[2], dtype=torch.float64,
                         generator=torch.Generator().manual_seed(1))
    gout = gout64.to(dtype).double()
    ref64 = _run(xr, gr, mode, pad, align, "reference", gout if grads else None)
    ref_lp = _run(x, grid, mode, pad, align, "reference", gout if grads else None)
    out = _run(x.to(device), grid.to(device), mode, pad, align, backend, gout if grads else None)
    assert out[0].dtype == dtype and out[0].shape == ref64[0].shape
    assert_matches_reference(out[0], ref64[0], ref_lp[0], dtype, what="output")
    if grads:
        assert_matches_reference(out[1], ref64[1], ref_lp[1], dtype, what="grad input")
        if mode == "bilinear":
            assert_matches_reference(out[2], ref64[2], ref_lp[2], dtype, what="grad grid")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,pad,align", list(itertools.product(MODES, PADS, (False, True))))
def test_matches_reference_all_modes(backend, device, dtype, mode, pad, align):
    """The full cross product; output size differs from input size; far-outside grid points."""
    x64, grid64 = _data(2, 3, 7, 13, 5, 11, seed=MODES.index(mode) * 10 + PADS.index(pad) * 2 + int(align))
    _check_against_reference(backend, device, x64, grid64, mode, pad, align, dtype)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize(
    "size,out_size,channels",
    [((1, 1), (1, 1), 3), ((1, 1), (4, 5), 2), ((7, 13), (1, 1), 3), ((1, 9), (3, 4), 2), ((8, 1), (3, 4), 2),
     ((61, 67), (29, 31), 2), ((16, 16), (16, 16), 40)],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
@pytest.mark.parametrize("mode", MODES)
def test_odd_sizes(backend, device, size, out_size, channels, mode):
    if _interp(backend, device) and size[0] * size[1] * channels > 2000:
        pytest.skip("large sizes are slow under TRITON_INTERPRET; covered on CPU and GPU")
    x64, grid64 = _data(2, channels, *size, *out_size, seed=3)
    for pad, align in (("zeros", False), ("border", True), ("reflection", False)):
        _check_against_reference(backend, device, x64, grid64, mode, pad, align, torch.float32)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_smooth_flow_large_channel_count(backend, device, mode):
    """Monkey-Net's case: a smooth near-identity flow, many channels, channels split over tasks."""
    if _interp(backend, device):
        pytest.skip("slow under TRITON_INTERPRET; the GPU run covers it")
    x64 = torch.randn(1, 48, 40, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    grid64 = _smooth_grid(1, 40, 36)
    for pad, align in (("zeros", True), ("reflection", False)):
        _check_against_reference(backend, device, x64, grid64, mode, pad, align, torch.float32)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
def test_forward_bit_exact_with_pytorch_cpu(backend, device, dtype):
    """float32/float64 forward equals PyTorch's CPU kernel bit for bit (same roundings, same
    nearest-pixel choices, exact ties included)."""
    if not EXACT_CPU:
        pytest.skip("PyTorch's CPU kernel here is the non-FMA DEFAULT build; exactness is defined against AVX2")
    x64, grid64 = _data(2, 3, 9, 14, 6, 10, seed=7)
    ties = _smooth_grid(2, 6, 10, amp=0.0)  # linspace grid: exact .5 ties for nearest
    for grid in (grid64, ties):
        x, g = x64.to(dtype), grid.to(dtype)
        for mode, pad, align in itertools.product(MODES, PADS, (False, True)):
            ref = F.grid_sample(x, g, mode=mode, padding_mode=pad, align_corners=align)
            out = grid_sample(x.to(device), g.to(device), mode, pad, align, backend=backend).cpu()
            assert torch.equal(out, ref), f"{mode} {pad} align={align}: max diff {(out - ref).abs().max().item():.3g}"


def _nonfinite_grid(dtype):
    _, grid = _data(2, 3, 6, 7, 5, 6, seed=11)
    grid = grid.to(dtype)
    grid[0, 0, 0, 0] = float("nan")
    grid[0, 1, 2, 1] = float("nan")
    grid[1, 2, 3, :] = float("nan")
    grid[0, 3, 1, 0] = float("inf")
    grid[1, 4, 4, 1] = -float("inf")
    grid[1, 0, 5, 0] = 1e30
    grid[0, 2, 2, 1] = -3e9
    return grid


NUMPY_NAN_WARNING = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # interpreter


@NUMPY_NAN_WARNING
@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("mode,pad,align", list(itertools.product(MODES, PADS, (False, True))))
def test_nonfinite_grid_forward(backend, device, mode, pad, align):
    """NaN / inf / huge grid values: same NaN pattern and values as PyTorch's CPU kernel."""
    x = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(2))
    grid = _nonfinite_grid(torch.float32)
    ref = F.grid_sample(x, grid, mode=mode, padding_mode=pad, align_corners=align)
    out = grid_sample(x.to(device), grid.to(device), mode, pad, align, backend=backend).cpu()
    assert torch.equal(out.isnan(), ref.isnan()), "NaN pattern differs from PyTorch's CPU kernel"
    if EXACT_CPU:
        assert torch.equal(out.nan_to_num(0.0), ref.nan_to_num(0.0))
    else:
        torch.testing.assert_close(out, ref, equal_nan=True)


@NUMPY_NAN_WARNING
@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("align", (False, True))
def test_nonfinite_grid_backward_zeros(backend, device, align):
    """zeros padding: gradients as PyTorch's CPU kernel (NaN grid gradient at NaN/inf points)."""
    x = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(2))
    grid = _nonfinite_grid(torch.float32)
    gout = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(3))
    _, gi_ref, gg_ref = _run(x, grid, "bilinear", "zeros", align, "reference", gout)
    _, gi, gg = _run(x.to(device), grid.to(device), "bilinear", "zeros", align, backend, gout)
    torch.testing.assert_close(gi.cpu(), gi_ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(gg.cpu().isnan(), gg_ref.isnan())
    torch.testing.assert_close(gg.cpu(), gg_ref, rtol=1e-4, atol=1e-4, equal_nan=True)


@NUMPY_NAN_WARNING
@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("pad", ("border", "reflection"))
def test_nan_grid_backward_clipped_padding(backend, device, pad):
    """border / reflection with NaN grid points: PyTorch's CPU backward writes outside grad_input
    there (undefined behaviour); fastmotion gives those points a NaN grid gradient and adds
    nothing to grad_input, i.e. grad_input equals PyTorch's without those points."""
    x = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(2))
    _, grid = _data(2, 3, 6, 7, 5, 6, seed=11)
    grid = grid.float()
    nan_at = torch.zeros(2, 5, 6, dtype=torch.bool)
    nan_at[0, 1, 2] = nan_at[1, 3, 0] = True
    grid_nan = grid.clone()
    grid_nan[0, 1, 2, 0] = float("nan")
    grid_nan[1, 3, 0, :] = float("nan")
    gout = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(3))
    # Reference: the NaN points replaced by finite ones whose output gradient is zero.
    _, gi_ref, gg_ref = _run(x, grid, "bilinear", pad, False, "reference", gout * (~nan_at).unsqueeze(1))
    _, gi, gg = _run(x.to(device), grid_nan.to(device), "bilinear", pad, False, backend, gout)
    torch.testing.assert_close(gi.cpu(), gi_ref, rtol=1e-5, atol=1e-5)
    assert gg.cpu()[nan_at].isnan().any(-1).all()  # the NaN coordinate's fraction reaches the other axis
    torch.testing.assert_close(gg.cpu()[~nan_at], gg_ref[~nan_at], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_layouts(backend, device):
    """Non-contiguous input and grid, channels-last input (channels-last output), batch 0, C = 0."""
    x64, grid64 = _data(2, 5, 9, 8, 6, 7, seed=4)
    gout = torch.randn(2, 5, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    cases = {
        "strided": (x64.float()[:, :, ::1, :].transpose(2, 3).contiguous().transpose(2, 3)[:, ::2],
                    grid64.float().transpose(1, 2).contiguous().transpose(1, 2)),
        "channels_last": (x64.float().contiguous(memory_format=torch.channels_last), grid64.float()),
    }
    for name, (x, grid) in cases.items():
        g_out = gout[:, : x.shape[1]]
        for mode, pad, align in (("bilinear", "zeros", False), ("bilinear", "reflection", True),
                                 ("nearest", "border", False)):
            ref = _run(x.double(), grid.double(), mode, pad, align, "reference", g_out)
            ref32 = _run(x, grid, mode, pad, align, "reference", g_out)  # the error budget (tests/tolerance.py)
            out = _run(x.to(device), grid.to(device), mode, pad, align, backend, g_out)
            if name == "channels_last":
                assert out[0].is_contiguous(memory_format=torch.channels_last)
            for what, o, r, r32 in zip(("output", "grad input", "grad grid"), out, ref, ref32):
                if r is not None:
                    assert_matches_reference(o, r, r32, torch.float32, what=f"{name} {mode} {pad}: {what}")
    for shape, gshape in (((0, 3, 5, 5), (0, 4, 4, 2)), ((2, 0, 5, 5), (2, 4, 4, 2)), ((2, 3, 5, 5), (2, 0, 4, 2))):
        x = torch.randn(shape, device=device)
        grid = torch.rand(gshape, device=device) * 2 - 1
        out, gi, gg = _run(x, grid, "bilinear", "zeros", False, backend, torch.zeros(shape[0], shape[1], *gshape[1:3]))
        assert out.shape == (shape[0], shape[1], gshape[1], gshape[2])
        assert gi.shape == x.shape and gg.shape == grid.shape and not gg.abs().sum().item()


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("mode,pad,align", [("bilinear", "zeros", False), ("bilinear", "border", True),
                                            ("bilinear", "reflection", False), ("bilinear", "reflection", True),
                                            ("nearest", "zeros", True), ("nearest", "reflection", False)])
def test_gradcheck(backend, device, mode, pad, align):
    """float64 gradcheck; nearest: input gradient only (its grid gradient is zero)."""
    x64, grid64 = _data(1, 2, 4, 5, 3, 4, seed=8, far=0.2)
    x = x64.to(device).requires_grad_()
    grid = grid64.to(device).requires_grad_(mode == "bilinear")
    fn = lambda a, b: grid_sample(a, b, mode, pad, align, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, grid), eps=1e-6, atol=1e-6, fast_mode=_interp(backend, device))


@pytest.mark.parametrize("channels_last", (False, True))
def test_cpu_backward_deterministic(channels_last):
    """Two runs, and runs with different thread counts, give bit-identical gradients."""
    if "cpu" not in gs_mod.IMPLS or fastmotion.backends.unavailable_reason("cpu", "cpu", gs_mod._FWD):
        pytest.skip("cpu backend not built")
    x64 = torch.randn(1, 24, 33, 35, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    x = x64.float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grid = _smooth_grid(1, 31, 37, amp=0.3).float()
    gout = torch.randn(1, 24, 31, 37)
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (threads, threads, 1, 3):
            torch.set_num_threads(n_threads)
            results.append(_run(x, grid, "bilinear", "zeros", True, "cpu", gout)[1:])
    finally:
        torch.set_num_threads(threads)
    for gi, gg in results[1:]:
        assert torch.equal(gi, results[0][0]) and torch.equal(gg, results[0][1])


@pytest.mark.parametrize("channels_last", (False, True))
@pytest.mark.parametrize("dtype", (torch.float64, torch.float32, torch.bfloat16), ids=str)
def test_cpu_backward_in_pixel_chunks(channels_last, dtype):
    """Outputs larger than one backward chunk (backward_chunk in csrc/ops/cpu/grid_sample.cpp:
    ~1 MiB of scratch, 1024 pixels per chunk at N=32 here): gradients still match the float64
    reference across chunk borders, for both modes and every padding."""
    if fastmotion.backends.unavailable_reason("cpu", "cpu", gs_mod._FWD):
        pytest.skip("cpu backend not built")
    x64, grid64 = _data(32, 3, 12, 13, 40, 41, seed=14)  # 1640 pixels: two chunks
    if channels_last:
        x64 = x64.contiguous(memory_format=torch.channels_last)
    for mode, pad, align in (("bilinear", "zeros", False), ("bilinear", "reflection", True),
                             ("nearest", "border", False)):
        _check_against_reference("cpu", "cpu", x64, grid64, mode, pad, align, dtype)


@pytest.mark.parametrize("backend,device", [p for p in backend_params(gs_mod.IMPLS) if p.values[0] == "triton"])
def test_triton_deterministic_mode_gathers(backend, device, monkeypatch):
    """Under torch.use_deterministic_algorithms(True) the Triton backward computes the input
    gradient by the gather (not the atomic scatter); two runs give the same bits; the result
    matches F.grid_sample's gradient."""
    monkeypatch.delenv("FASTMOTION_GRID_SAMPLE_SCATTER", raising=False)
    calls = count_gathers(monkeypatch)
    x64, grid64 = _data(2, 5, 9, 10, 7, 8, seed=12)
    x, grid = x64.float().to(device), grid64.float().to(device)
    gout = torch.randn(2, 5, 7, 8, generator=torch.Generator().manual_seed(2)).to(device)
    _run(x, grid, "bilinear", "reflection", False, backend, gout)
    assert calls == [], "the scatter is the default outside deterministic mode"
    with deterministic_algorithms():
        first = _run(x, grid, "bilinear", "reflection", False, backend, gout)
        second = _run(x, grid, "bilinear", "reflection", False, backend, gout)
    assert len(calls) == 2
    assert torch.equal(first[1], second[1]) and torch.equal(first[2], second[2])
    ref = _run(x.cpu(), grid.cpu(), "bilinear", "reflection", False, "reference", gout.cpu())
    torch.testing.assert_close(first[1].cpu(), ref[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend,device", [p for p in backend_params(gs_mod.IMPLS) if p.values[0] == "cpu"])
def test_cpu_backend_runs_in_deterministic_mode(backend, device):
    """The CPU backward is deterministic: no alert under torch.use_deterministic_algorithms."""
    x64, grid64 = _data(1, 2, 5, 6, 4, 5, seed=13)
    gout = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    with deterministic_algorithms():
        out = _run(x64, grid64, "bilinear", "zeros", True, backend, gout)
    ref = _run(x64, grid64, "bilinear", "zeros", True, "reference", gout)
    torch.testing.assert_close(out[1], ref[1])


@pytest.mark.parametrize("backend,device", [p for p in backend_params(gs_mod.IMPLS) if p.values[0] == "cuda"])
def test_cuda_backend_alerts_in_deterministic_mode(backend, device):
    """The CUDA backward scatters with float atomics: under deterministic mode it raises (or
    warns with warn_only), as PyTorch's own CUDA grid_sample backward does."""
    x = torch.randn(1, 2, 5, 6, device=device, requires_grad=True)
    grid = torch.rand(1, 4, 5, 2, device=device) * 2 - 1
    with deterministic_algorithms():
        out = grid_sample(x, grid, backend=backend)
        with pytest.raises(RuntimeError, match="grid_sample_backward"):
            out.sum().backward()
    with deterministic_algorithms(warn_only=True):
        out = grid_sample(x, grid, backend=backend)
        with pytest.warns(UserWarning, match="grid_sample_backward"):
            out.sum().backward()


@pytest.mark.parametrize("backend,device", [p for p in BACKENDS if p.values[0] == "cpu"])
def test_opcheck(backend, device):
    x64, grid64 = _data(2, 3, 5, 6, 4, 5, seed=6, far=0.1)
    x, grid = x64.float(), grid64.float()
    for mode, pad, align in (("bilinear", "zeros", False), ("nearest", "reflection", True)):
        m, p = gs_mod._MODE_CODES[mode], gs_mod._PADDING_CODES[pad]
        torch.library.opcheck(torch.ops.fastmotion.grid_sample_forward, (x, grid, m, p, align))
        torch.library.opcheck(torch.ops.fastmotion.grid_sample_forward,
                              (x.contiguous(memory_format=torch.channels_last), grid, m, p, align))
        gout = torch.randn(2, 3, 4, 5)
        for need in ((True, True), (True, False), (False, True)):
            torch.library.opcheck(torch.ops.fastmotion.grid_sample_backward, (gout, x, grid, m, p, align, *need))


@pytest.mark.parametrize("backend,device", [p for p in BACKENDS if p.values[0] == "cpu"])
def test_compile_fullgraph(backend, device):
    x64, grid64 = _data(2, 3, 5, 6, 4, 5, seed=6, far=0.1)
    x = x64.float().requires_grad_()
    grid = grid64.float().requires_grad_()

    def f(a, b):
        return (grid_sample(a, b, "bilinear", "border", True, backend=backend) ** 2).sum()

    assert_compiles_like_eager(f, x, grid)


def test_bicubic_runs_reference():
    x64, grid64 = _data(1, 2, 5, 6, 3, 4)
    out = grid_sample(x64, grid64, "bicubic", "border", True)
    torch.testing.assert_close(out, F.grid_sample(x64, grid64, "bicubic", "border", True))
    with pytest.raises(ValueError, match="bicubic"):
        grid_sample(x64, grid64, "bicubic", backend="cpu")


def test_align_corners_none_means_false():
    x64, grid64 = _data(1, 2, 5, 6, 3, 4)
    torch.testing.assert_close(grid_sample(x64, grid64, align_corners=None),
                               F.grid_sample(x64, grid64, align_corners=False))


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: grid_sample(torch.randn(3, 4, 4), torch.rand(3, 2, 2, 2)), ValueError, "input"),
        (lambda: grid_sample(torch.randn(1, 3, 4, 4), torch.rand(1, 2, 2)), ValueError, "grid"),
        (lambda: grid_sample(torch.randn(1, 3, 4, 4), torch.rand(2, 2, 2, 2)), ValueError, "grid"),
        (lambda: grid_sample(torch.randn(1, 3, 4, 4), torch.rand(1, 2, 2, 3)), ValueError, "grid"),
        (lambda: grid_sample(torch.ones(1, 3, 4, 4, dtype=torch.int64), torch.rand(1, 2, 2, 2)), TypeError, "input"),
        (lambda: grid_sample(torch.randn(1, 3, 4, 4), torch.rand(1, 2, 2, 2).double()), TypeError, "grid"),
        (lambda: grid_sample([[1.0]], torch.rand(1, 2, 2, 2)), TypeError, "input"),
        (lambda: grid_sample(torch.randn(1, 3, 0, 4), torch.rand(1, 2, 2, 2)), ValueError, "spatial"),
        (lambda: grid_sample(torch.randn(1, 3, 4, 4), torch.rand(1, 2, 2, 2), mode="area"), ValueError, "mode"),
        (lambda: grid_sample(torch.randn(1, 3, 4, 4), torch.rand(1, 2, 2, 2), padding_mode="wrap"), ValueError,
         "padding_mode"),
        (lambda: grid_sample(torch.randn(1, 3, 4, 4), torch.rand(1, 2, 2, 2), align_corners=1), TypeError,
         "align_corners"),
        (lambda: grid_sample(torch.randn(1, 3, 4, 4), torch.rand(1, 2, 2, 2), backend="cuda"), RuntimeError, "cuda"),
        (lambda: grid_sample(torch.randn(1, 3, 4, 4), torch.rand(1, 2, 2, 2), backend="tpu"), ValueError, "backend"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_cpp_op_rejects_bad_input():
    if fastmotion.backends.unavailable_reason("cpu", "cpu", gs_mod._FWD):
        pytest.skip("cpu backend not built")
    op = torch.ops.fastmotion
    x, grid = torch.randn(1, 2, 4, 4), torch.rand(1, 3, 3, 2)
    with pytest.raises(RuntimeError, match="mode"):
        op.grid_sample_forward(x, grid, 2, 0, False)
    with pytest.raises(RuntimeError, match="padding_mode"):
        op.grid_sample_forward(x, grid, 0, 3, False)
    with pytest.raises(RuntimeError, match="grad_output"):
        op.grid_sample_backward(torch.randn(1, 2, 4, 4), x, grid, 0, 0, False, True, True)


def test_triton_kernels_compile_for_sm90():
    """The real Triton compiler (not the interpreter) accepts both kernels, both modes, every dtype."""
    from tests.triton_compile import compile_for_sm90

    ints = ("C", "H", "W", "P", "c_per_prog", "s_in_n", "s_in_c", "s_in_h", "s_in_w", "s_out_n", "s_out_c",
            "s_out_p")
    specs = []
    for dt in ("fp32", "fp16", "bf16", "fp64"):
        acc, acc_t = ("fp64", "tl.float64") if dt == "fp64" else ("fp32", "tl.float32")
        fwd = {"in_ptr": f"*{dt}", "grid_ptr": f"*{dt}", "out_ptr": f"*{dt}", **{k: "i32" for k in ints},
               "align": "i32", "padding": "i32", "MODE": "constexpr", "CL": "constexpr", "BLOCK_P": "constexpr",
               "BLOCK_C": "constexpr", "ACC": "constexpr"}
        bwd = {"gout_ptr": f"*{dt}", "in_ptr": f"*{dt}", "grid_ptr": f"*{dt}", "gin_ptr": f"*{acc}",
               "ggrid_ptr": f"*{acc}", **{k: "i32" for k in ints}, "ggrid_split_stride": "i32", "align": "i32",
               "padding": "i32", "MODE": "constexpr", "CL": "constexpr", "INPUT_GRAD": "constexpr", "GRID_GRAD": "constexpr",
               "BLOCK_P": "constexpr", "BLOCK_C": "constexpr", "ACC": "constexpr"}
        # Triton turns int arguments equal to 1 into constexprs: compile H = W = 1 as well.
        for mode, cl, unit in ((0, False, False), (1, False, False), (0, True, False), (1, True, True),
                               (0, False, True)):
            size = {"H": 1, "W": 1} if unit else {}
            f_sig = {**fwd, **{k: "constexpr" for k in size}}
            b_sig = {**bwd, **{k: "constexpr" for k in size}}
            specs.append(dict(module="fastmotion.kernels.grid_sample", kernel="grid_sample_fwd_kernel", signature=f_sig,
                              constexprs={"MODE": mode, "CL": cl, "BLOCK_P": 128, "BLOCK_C": 8, "ACC": acc_t, **size},
                              num_warps=4, options={"enable_fp_fusion": False}))
            specs.append(dict(module="fastmotion.kernels.grid_sample", kernel="grid_sample_bwd_kernel", signature=b_sig,
                              constexprs={"MODE": mode, "CL": cl, "INPUT_GRAD": True, "GRID_GRAD": mode == 0,
                                          "BLOCK_P": 128, "BLOCK_C": 8, "ACC": acc_t, **size},
                              num_warps=4, options={"enable_fp_fusion": False}))
        # the deterministic gather input gradient: cell keys, then the gather itself
        cells = {"grid_ptr": f"*{dt}", "coord_ptr": f"*{acc}", "key_ptr": "*i32", "H": "i32", "W": "i32", "P": "i32",
                 "align": "i32", "padding": "i32", "MODE": "constexpr", "BLOCK": "constexpr", "ACC": "constexpr"}
        gather = {"gout_ptr": f"*{dt}", "coord_ptr": f"*{acc}", "order_ptr": "*i64", "start_ptr": "*i64",
                  "gin_ptr": f"*{dt}", **{k: "i32" for k in ("C", "H", "W", "P", "n_cells", "c_per_prog", "s_gin_n",
                                                              "s_gin_c", "s_gin_h", "s_gin_w", "s_out_n", "s_out_c",
                                                              "s_out_p")},
                  "MODE": "constexpr", "BLOCK_Q": "constexpr", "BLOCK_C": "constexpr", "ACC": "constexpr"}
        for mode in (0, 1):
            specs.append(dict(module="fastmotion.kernels.grid_sample", kernel="grid_sample_cells_kernel",
                              signature=cells, constexprs={"MODE": mode, "BLOCK": 256, "ACC": acc_t},
                              num_warps=4, options={"enable_fp_fusion": False}))
            specs.append(dict(module="fastmotion.kernels.grid_sample", kernel="grid_sample_gather_kernel",
                              signature=gather, constexprs={"MODE": mode, "BLOCK_Q": 128, "BLOCK_C": 8, "ACC": acc_t},
                              num_warps=4, options={"enable_fp_fusion": False}))
    compile_for_sm90(specs)

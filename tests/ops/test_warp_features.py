"""warp_features: every backend against the float64 reference (F.interpolate + F.grid_sample per
map), resize ratios, gradients, opcheck, compile, bad input."""
import importlib

import pytest
import torch
import torch.nn.functional as F

from fastmotion.ops import warp_features
from fastmotion import reference as ref
from fastmotion.ops._schema import MODE_BILINEAR, MODE_NEAREST
from fastmotion.reference.grid import make_coordinate_grid
from tests.compile_check import assert_compiles_like_eager
from tests.determinism import count_gathers, deterministic_algorithms
from tests.tolerance import assert_matches_reference, backend_params, gather_params

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # interpreter, masked lanes

wf = importlib.import_module("fastmotion.ops.warp_features")
BACKENDS = backend_params(wf.IMPLS) + gather_params(wf.IMPLS)  # + Triton with the deterministic gather
CPU_BACKENDS = [p for p in BACKENDS if p.values[0] == "cpu"]
MODES = ("nearest", "bilinear", "trilinear")
GRID = (6, 7)
# (C, H, W) of the maps warped by a 6x7 grid: same size, integer and non-integer upsampling,
# non-integer downsampling, 2x2 and 1x1, one channel and many
MAPS = [(3, 6, 7), (4, 12, 14), (2, 9, 10), (5, 4, 3), (33, 2, 2), (1, 1, 1), (2, 13, 5)]
BIG_MAPS = [(3, 61, 67), (8, 24, 28), (40, 48, 48)]  # the last splits into channel chunks on the CPU


def _interpreted(backend, device):
    return backend == "triton" and device == "cpu"


def _grid(n, size, device, dtype=torch.float64, seed=0, noise=0.15):
    g = torch.Generator().manual_seed(seed)
    ident = make_coordinate_grid(size, dtype=torch.float64)
    grid = ident.unsqueeze(0) * 1.1 + noise * torch.randn(n, *size, 2, generator=g, dtype=torch.float64)
    return grid.to(device=device, dtype=dtype)  # some coordinates fall outside [-1, 1]


def _features(n, maps, device, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, h, w, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
            for c, h, w in maps]


def _cpu64(ts):
    return [t.detach().cpu().double() for t in ts]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [2, 0])
def test_forward_matches_reference_fp32(backend, device, mode, n):
    maps = MAPS + ([] if _interpreted(backend, device) else BIG_MAPS)
    feats = _features(n, maps, device)
    grid = _grid(n, GRID, device)
    outs = warp_features([f.float() for f in feats], grid.float(), mode, backend=backend)
    ref64 = ref.warp_features(_cpu64(feats), grid.cpu().double(), mode)
    ref32 = ref.warp_features([f.float() for f in _cpu64(feats)], grid.cpu().float(), mode)
    assert len(outs) == len(maps)
    for i, (o, r64, r32) in enumerate(zip(outs, ref64, ref32)):
        assert o.shape == r64.shape and o.dtype == torch.float32
        assert_matches_reference(o, r64, r32, torch.float32, what=f"map {i} {tuple(o.shape)}")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_grid_larger_than_maps_and_identity_grid(backend, device, mode):
    """A 16x16 grid for 5x5 and 16x16 maps; and the identity grid, whose taps all sit on exact
    integer coordinates."""
    feats = _features(1, [(3, 5, 5), (2, 16, 16)], device)
    for grid in (_grid(1, (16, 16), device), make_coordinate_grid((16, 16), dtype=torch.float64).to(device)[None]):
        outs = warp_features([f.float() for f in feats], grid.float(), mode, backend=backend)
        ref64 = ref.warp_features(_cpu64(feats), grid.cpu().double(), mode)
        ref32 = ref.warp_features([f.float() for f in _cpu64(feats)], grid.cpu().float(), mode)
        for o, r64, r32 in zip(outs, ref64, ref32):
            assert_matches_reference(o, r64, r32, torch.float32)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_forward_low_precision(backend, device, dtype):
    feats = [f.to(dtype) for f in _features(2, MAPS[:4], device)]
    grid = _grid(2, GRID, device).to(dtype)
    outs = warp_features(feats, grid, "bilinear", backend=backend)
    f64, g64 = _cpu64(feats), grid.cpu().double()  # the rounded inputs
    ref64 = ref.warp_features(f64, g64, "bilinear")
    ref_lp = ref.warp_features([f.to(dtype) for f in f64], g64.to(dtype), "bilinear")
    for o, r64, rlp in zip(outs, ref64, ref_lp):
        assert o.dtype == dtype
        assert_matches_reference(o, r64, rlp, dtype)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_and_channels_last(backend, device):
    feats = _features(2, [(3, 6, 7), (4, 12, 14), (5, 4, 3)], device, dtype=torch.float32)
    grid = _grid(2, GRID, device, dtype=torch.float32)
    expect = ref.warp_features([f.cpu() for f in feats], grid.cpu(), "nearest")
    layouts = [feats[0].contiguous(memory_format=torch.channels_last),
               torch.stack([feats[1], -feats[1]], dim=-1).flatten(-2)[..., ::2],  # stride 2 along W
               feats[2].transpose(2, 3).contiguous().transpose(2, 3)]
    grid_t = grid.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    assert not any(t.is_contiguous() for t in layouts[1:]) and not grid_t.is_contiguous()
    layouts = [t.requires_grad_() for t in layouts]
    outs = warp_features(layouts, grid_t, "nearest", backend=backend)
    for o, e in zip(outs, expect):
        torch.testing.assert_close(o.cpu(), e, rtol=1e-5, atol=2e-6)
    grads = torch.autograd.grad([o.square().sum() for o in outs], layouts)
    plain = [f.detach().requires_grad_() for f in feats]
    expect_grads = torch.autograd.grad([o.square().sum() for o in ref.warp_features(plain, grid, "nearest")], plain)
    for a, e in zip(grads, expect_grads):
        torch.testing.assert_close(a.cpu(), e.cpu(), rtol=1e-4, atol=1e-5)


def _grads(feats, grid, grad_outs, mode, backend, dtype, want_features=True, want_grid=True):
    fs = [f.detach().to(dtype).requires_grad_(want_features) for f in feats]
    g = grid.detach().to(dtype).requires_grad_(want_grid)
    outs = warp_features(fs, g, mode, backend=backend)
    inputs = (fs if want_features else []) + ([g] if want_grid else [])
    return torch.autograd.grad(outs, inputs, [x.to(device=o.device, dtype=o.dtype) for x, o in zip(grad_outs, outs)])


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("mode", ["nearest", "trilinear"])
def test_gradients_match_reference_fp32(backend, device, mode):
    maps = MAPS[:4] if _interpreted(backend, device) else MAPS + BIG_MAPS
    feats = _features(2, maps, device)
    grid = _grid(2, GRID, device)
    gen = torch.Generator().manual_seed(3)
    grad_outs = [torch.randn(f.shape, generator=gen, dtype=torch.float64) for f in feats]
    g64 = _grads(_cpu64(feats), grid.cpu(), grad_outs, mode, "reference", torch.float64)
    g32 = _grads(_cpu64(feats), grid.cpu(), grad_outs, mode, "reference", torch.float32)
    got = _grads(feats, grid, grad_outs, mode, backend, torch.float32)
    names = [f"features[{i}]" for i in range(len(maps))] + ["grid"]
    for name, a, r64, r32 in zip(names, got, g64, g32):
        assert a.dtype == torch.float32
        assert_matches_reference(a, r64, r32, torch.float32, what=f"grad {name}")
    # one input's gradient at a time (the op skips the other)
    only_grid = _grads(feats, grid, grad_outs, mode, backend, torch.float32, want_features=False)
    only_feats = _grads(feats, grid, grad_outs, mode, backend, torch.float32, want_grid=False)
    torch.testing.assert_close(only_grid[0], got[-1])
    for a, b in zip(only_feats, got[:-1]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_gradients_low_precision(backend, device, dtype):
    maps = [(3, 6, 7), (9, 12, 14), (2, 3, 4)]  # 9 channels: the CPU's pixel-major scatter too
    feats = [f.to(dtype) for f in _features(2, maps, device)]
    grid = _grid(2, GRID, device).to(dtype)
    gen = torch.Generator().manual_seed(3)
    grad_outs = [torch.randn(f.shape, generator=gen).to(dtype) for f in feats]
    f64, g64_in = _cpu64(feats), grid.cpu().double()  # the rounded inputs
    g64 = _grads(f64, g64_in, grad_outs, "bilinear", "reference", torch.float64)
    g_lp = _grads(f64, g64_in, grad_outs, "bilinear", "reference", dtype)
    got = _grads(feats, grid, grad_outs, "bilinear", backend, dtype)
    names = [f"features[{i}]" for i in range(len(maps))] + ["grid"]
    for name, a, r64, rlp in zip(names, got, g64, g_lp):
        assert a.dtype == dtype
        assert_matches_reference(a, r64, rlp, dtype, what=f"grad {name}")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_gradcheck(backend, device, mode):
    maps = [(1, 3, 4), (1, 5, 6)] if _interpreted(backend, device) else [(2, 3, 4), (1, 5, 7), (2, 2, 2)]
    feats = [f.requires_grad_() for f in _features(1, maps, device)]
    grid = _grid(1, (3, 4), device).requires_grad_()
    fn = lambda g, *fs: tuple(warp_features(list(fs), g, mode, backend=backend))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (grid, *feats), eps=1e-6, atol=1e-6, fast_mode=_interpreted(backend, device))


@pytest.mark.parametrize("backend,device", [p for p in backend_params(wf.IMPLS) if p.values[0] == "triton"])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_triton_deterministic_mode_gathers(backend, device, mode, monkeypatch):
    """Under torch.use_deterministic_algorithms(True) the Triton backward computes every map's
    gradient by grid_sample's gather (no atomics): one gather per map, same bits twice, the
    reference's gradients."""
    monkeypatch.delenv("FASTMOTION_GRID_SAMPLE_SCATTER", raising=False)
    calls = count_gathers(monkeypatch)
    maps = [(2, 3, 4), (1, 6, 8)]
    feats, grid = _features(2, maps, device, torch.float32), _grid(2, (3, 4), device, torch.float32)
    gen = torch.Generator().manual_seed(5)
    grad_outs = [torch.randn(f.shape, generator=gen) for f in feats]
    _grads(feats, grid, grad_outs, mode, backend, torch.float32)
    assert calls == []
    with deterministic_algorithms():
        first = _grads(feats, grid, grad_outs, mode, backend, torch.float32)
        second = _grads(feats, grid, grad_outs, mode, backend, torch.float32)
    assert calls == [tuple(f.shape) for f in feats] * 2
    for a, b, r in zip(first, second, _grads(_cpu64(feats), grid.cpu().double(), grad_outs, mode, "reference",
                                             torch.float64)):
        assert torch.equal(a, b)
        torch.testing.assert_close(a.cpu().double(), r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend,device", [p for p in backend_params(wf.IMPLS) if p.values[0] == "cuda"])
def test_cuda_backend_alerts_in_deterministic_mode(backend, device):
    """The CUDA feature gradients are scattered with float atomics: deterministic mode raises."""
    feats = [f.requires_grad_() for f in _features(1, [(2, 3, 4)], device, torch.float32)]
    grid = _grid(1, (3, 4), device, torch.float32)
    with deterministic_algorithms():
        out = warp_features(feats, grid, "nearest", backend=backend)
        with pytest.raises(RuntimeError, match="warp_features_backward"):
            out[0].sum().backward()


def test_gradcheck_reference():
    feats = [f.requires_grad_() for f in _features(1, [(2, 3, 4), (1, 5, 7)], "cpu")]
    grid = _grid(1, (3, 4), "cpu").requires_grad_()
    for mode in ("nearest", "bilinear"):
        fn = lambda g, *fs: tuple(ref.warp_features(list(fs), g, mode))  # noqa: E731
        assert torch.autograd.gradcheck(fn, (grid, *feats), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_deterministic_grid_gradient(backend, device):
    maps = [(2, 8, 9), (4, 3, 4)] if _interpreted(backend, device) else [(8, 12, 14), (4, 3, 4)]
    feats = _features(2, maps, device, dtype=torch.float32)
    grid = _grid(2, GRID, device, dtype=torch.float32)
    grad_outs = [torch.randn(f.shape) for f in feats]
    a = _grads(feats, grid, grad_outs, "bilinear", backend, torch.float32, want_features=False)[0]
    b = _grads(feats, grid, grad_outs, "bilinear", backend, torch.float32, want_features=False)[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_nan_grid_propagates(backend, device):
    feats = _features(1, [(2, 6, 7), (1, 12, 14)], device, dtype=torch.float32)
    grid = _grid(1, GRID, device, dtype=torch.float32)
    grid[0, 2, 3, 0] = float("nan")
    grid[0, 4, 1, 1] = float("inf")
    for mode in ("nearest", "bilinear"):
        outs = warp_features(feats, grid, mode, backend=backend)
        expect = ref.warp_features([f.cpu() for f in feats], grid.cpu(), mode)
        for o, e in zip(outs, expect):
            assert torch.isnan(e).any()
            assert torch.equal(torch.isnan(o.cpu()), torch.isnan(e))


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_finite_features(backend, device):
    """inf / NaN feature values reach exactly the outputs whose taps read them (a tap outside the
    map reads 0: the corner value must not leak into pixels whose taps all fall outside)."""
    feats = _features(1, [(2, 6, 7), (1, 12, 14)], device, dtype=torch.float32)
    feats[0][0, 0, 0, 0] = float("inf")
    feats[0][0, 1, 3, 4] = float("nan")
    feats[1][0, 0, 0, 0] = float("-inf")
    grid = _grid(1, GRID, device, dtype=torch.float32)
    grid[0, 0, :3] = 3.0  # every tap outside
    grid[0, 5, 6] = -1.0  # exactly on the (0, 0) corner
    for mode in ("nearest", "bilinear"):
        outs = warp_features(feats, grid, mode, backend=backend)
        expect = ref.warp_features([f.cpu() for f in feats], grid.cpu(), mode)
        for o, e in zip(outs, expect):
            o = o.cpu()
            assert torch.equal(torch.isnan(o), torch.isnan(e)) and torch.equal(torch.isinf(o), torch.isinf(e))
            finite = torch.isfinite(e)
            torch.testing.assert_close(o[finite], e[finite], rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_empty_lists_and_channels(backend, device):
    grid = _grid(2, GRID, device, dtype=torch.float32)
    assert warp_features([], grid, backend=backend) == []
    feats = [torch.randn(2, 0, 5, 5, device=device, requires_grad=True), torch.randn(2, 1, 3, 3, device=device)]
    outs = warp_features(feats, grid, backend=backend)
    assert outs[0].shape == (2, 0, 5, 5)
    torch.testing.assert_close(outs[1].cpu(), ref.warp_features([feats[1].cpu()], grid.cpu())[0])


def test_reference_matches_original_formulation():
    """The reference against a transcription of the original generator's deform_input: the 5-D
    deformation (B, D, h, w, 3) resized with F.interpolate over (D, H, W) ('nearest' or
    'trilinear') and a 5-D grid_sample of the (B, C, 1, H, W) skip with align_corners=True."""
    torch.manual_seed(0)
    b, h, w = 2, 6, 7
    grid = _grid(b, (h, w), "cpu")
    skips = [torch.randn(b, 3, 6, 7, dtype=torch.float64), torch.randn(b, 4, 12, 14, dtype=torch.float64),
             torch.randn(b, 2, 4, 5, dtype=torch.float64)]
    deformation = torch.cat([grid, torch.zeros(b, h, w, 1, dtype=torch.float64)], dim=-1).unsqueeze(1)
    for mode in ("nearest", "trilinear"):
        original = []
        for skip in skips:
            inp = skip.unsqueeze(2)
            d = F.interpolate(deformation.permute(0, 4, 1, 2, 3), size=(1,) + tuple(skip.shape[2:]), mode=mode)
            original.append(F.grid_sample(inp, d.permute(0, 2, 3, 4, 1), align_corners=True).squeeze(2))
        for ours, orig in zip(ref.warp_features(skips, grid, mode), original):
            torch.testing.assert_close(ours, orig, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend,device", CPU_BACKENDS)
def test_opcheck(backend, device):
    feats = _features(2, [(3, 5, 4), (2, 3, 7)], device, dtype=torch.float32)
    grid = _grid(2, (4, 5), device, dtype=torch.float32)
    for mode in (MODE_NEAREST, MODE_BILINEAR):  # the schema's int codes
        torch.library.opcheck(torch.ops.fastmotion.warp_features_forward, (feats, grid, mode))
        grads = [torch.randn_like(f) for f in feats]
        for flags in ((True, True), (True, False), (False, True)):
            torch.library.opcheck(torch.ops.fastmotion.warp_features_backward, (grads, feats, grid, mode, *flags))


@pytest.mark.parametrize("backend,device", [p for p in BACKENDS if p.values[1] == "cuda" or p.values[0] == "cpu"])
def test_compile_fullgraph(backend, device):
    feats = [f.requires_grad_() for f in _features(2, [(3, 6, 7), (2, 12, 14)], device, dtype=torch.float32)]
    grid = _grid(2, GRID, device, dtype=torch.float32).requires_grad_()

    def f(g, a, b):
        outs = warp_features([a, b], g, "nearest", backend=backend)
        return outs[0].square().sum() + outs[1].sum()

    assert_compiles_like_eager(f, grid, *feats)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_mixed_dtypes_warp_per_dtype(backend, device):
    """As autocast leaves them: a float32 map next to half maps; each output keeps its map's dtype
    and equals warping that map alone."""
    low = torch.bfloat16 if device == "cpu" else torch.float16
    f32, f_lo, f_lo2 = _features(2, MAPS[:3], device, dtype=torch.float32)
    feats = [f32, f_lo.to(low), f_lo2.to(low)]
    grid = _grid(2, GRID, device, dtype=torch.float32)
    got = warp_features(feats, grid, "bilinear", backend=backend)
    assert [g.dtype for g in got] == [torch.float32, low, low]
    assert torch.equal(got[0], warp_features([feats[0]], grid, "bilinear", backend=backend)[0])
    alone = warp_features(feats[1:], grid, "bilinear", backend=backend)
    assert torch.equal(got[1], alone[0]) and torch.equal(got[2], alone[1])


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: warp_features([torch.randn(2, 3, 4, 4)], torch.randn(2, 4, 4)), ValueError, "grid"),
        (lambda: warp_features([torch.randn(2, 3, 4, 4)], torch.randn(2, 4, 4, 3)), ValueError, "grid"),
        (lambda: warp_features([torch.randn(2, 3, 4, 4)], torch.randn(2, 0, 4, 2)), ValueError, "grid"),
        (lambda: warp_features([torch.randn(3, 3, 4, 4)], torch.randn(2, 4, 4, 2)), ValueError, "batch"),
        (lambda: warp_features([torch.randn(2, 3, 4)], torch.randn(2, 4, 4, 2)), ValueError, "features\\[0\\]"),
        (lambda: warp_features([torch.randn(2, 3, 4, 0)], torch.randn(2, 4, 4, 2)), ValueError, "spatial"),
        (lambda: warp_features(torch.randn(2, 3, 4, 4), torch.randn(2, 4, 4, 2)), TypeError, "list"),
        (lambda: warp_features([torch.ones(2, 3, 4, 4, dtype=torch.int64)], torch.randn(2, 4, 4, 2)), TypeError,
         "features\\[0\\]"),
        (lambda: warp_features([torch.randn(2, 3, 4, 4)], torch.randn(2, 4, 4, 2), mode="bicubic"), ValueError,
         "mode"),
        (lambda: warp_features([torch.randn(2, 3, 4, 4)], torch.randn(2, 4, 4, 2), backend="cuda"), RuntimeError,
         "cuda"),
        (lambda: warp_features([torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4, device="meta")],
                               torch.randn(2, 4, 4, 2)), ValueError, "features\\[1\\] on meta"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_cpp_op_checks_its_arguments():
    feats = [torch.randn(2, 3, 4, 4)]
    with pytest.raises(RuntimeError, match="accumulation dtype"):
        torch.ops.fastmotion.warp_features_forward(feats, torch.randn(2, 4, 4, 2, dtype=torch.float64), MODE_NEAREST)
    with pytest.raises(RuntimeError, match="mode"):
        torch.ops.fastmotion.warp_features_forward(feats, torch.randn(2, 4, 4, 2), 7)
    with pytest.raises(RuntimeError, match="gradients"):
        torch.ops.fastmotion.warp_features_backward([], feats, torch.randn(2, 4, 4, 2), MODE_NEAREST, True, True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the other tests compile these kernels for it")
def test_triton_kernels_compile_for_sm90():
    """The real Triton compiler accepts the four kernels (all eight map slots live) for the
    storage dtypes and both resize modes, and with the size arguments Triton specializes to
    constants when they equal 1."""
    from tests.triton_compile import compile_for_sm90

    mod = "fastmotion.kernels.warp_features"
    specs = []
    # float64 (gradcheck only) compiles on the GPU in the test run; here: float32 with all eight
    # slots, half / bfloat16 with two (the slots are copies of one body)
    for inp, acc in (("fp32", "fp32"), ("fp16", "fp32"), ("bf16", "fp32")):
        acc_t = "tl.float32"
        num = 8 if inp == "fp32" else 2
        for nearest in (True, False):
            if inp in ("fp16", "bf16") and nearest:
                continue  # the resize mode only changes grid math (float32 either way): fp32 covers it
            fwd = {"grid_ptr": f"*{acc}", "h": "i32", "w": "i32"}
            bwd = {"grid_ptr": f"*{acc}", "gf_ptr": f"*{acc}", "gc_ptr": f"*{acc}", "h": "i32", "w": "i32"}
            gg = {"gc_ptr": f"*{acc}", "out_ptr": f"*{acc}", "h": "i32", "w": "i32", "nblk": "i32"}
            for i in range(8):
                fwd.update({f"f{i}": f"*{inp}", f"o{i}": f"*{inp}", f"C{i}": "i32", f"H{i}": "i32", f"W{i}": "i32",
                            f"sn{i}": "i64", f"sc{i}": "i64", f"sh{i}": "i64", f"sw{i}": "i64", f"T{i}": "i64",
                            f"b{i}": "i32"})
                bwd.update({f"f{i}": f"*{inp}", f"g{i}": f"*{inp}", f"C{i}": "i32", f"H{i}": "i32", f"W{i}": "i32",
                            f"sn{i}": "i64", f"sc{i}": "i64", f"sh{i}": "i64", f"sw{i}": "i64", f"nch{i}": "i32",
                            f"pb{i}": "i32", f"gfo{i}": "i64", f"gco{i}": "i64", f"b{i}": "i32"})
                gg.update({f"H{i}": "i32", f"W{i}": "i32", f"nch{i}": "i32", f"gco{i}": "i64", f"ly{i}": "i32",
                           f"lx{i}": "i32"})
            for sig, kernel, extra in ((fwd, "warp_features_fwd_kernel", {"BLOCK": 256, "IDX64": inp == "fp16"}),
                                       (bwd, "warp_features_bwd_kernel",
                                        {"FEAT_GRAD": True, "GRID_GRAD": True, "CHUNK": 16, "BLOCK": 128}),
                                       (gg, "warp_features_grid_grad_kernel", {"ACCUMULATE": True, "BLOCK": 128})):
                consts = {"NUM": num, "NEAREST": nearest, "ACC": acc_t, **extra}
                sig = dict(sig, **{k: "constexpr" for k in consts})
                specs.append(dict(module=mod, kernel=kernel, signature=sig, constexprs=consts))
        cast = {"src_ptr": f"*{acc}"}
        for i in range(8):
            cast.update({f"d{i}": f"*{inp}", f"T{i}": "i64", f"o{i}": "i64", f"b{i}": "i32"})
        cast.update({"NUM": "constexpr", "BLOCK": "constexpr"})
        specs.append(dict(module=mod, kernel="warp_features_cast_kernel", signature=cast,
                          constexprs={"NUM": num, "BLOCK": 256}))
    # sizes equal to 1 become constants (1x1 grid, a 1x1 map with one channel)
    for kernel, sig in (("warp_features_fwd_kernel", specs[0]["signature"]),
                        ("warp_features_bwd_kernel", specs[1]["signature"]),
                        ("warp_features_grid_grad_kernel", specs[2]["signature"])):
        ones = {k: 1 for k in ("h", "w", "C0", "H0", "W0", "nch0", "pb0", "nblk") if k in sig}
        consts = dict(specs[[s["kernel"] for s in specs].index(kernel)]["constexprs"], NUM=1, **ones)
        specs.append(dict(module=mod, kernel=kernel, signature=dict(sig, **{k: "constexpr" for k in ones}),
                          constexprs=consts))
    compile_for_sm90(specs)

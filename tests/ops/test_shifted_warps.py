"""shifted_warps: every backend against the float64 reference, exact-integer shifts, gradients,
opcheck, compile, bad input."""
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from fastmotion.ops import shifted_warps
from fastmotion import reference as ref
from tests.compile_check import assert_compiles_like_eager
from tests.tolerance import assert_matches_reference, backend_params

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # interpreter, masked lanes

sw_module = importlib.import_module("fastmotion.ops.shifted_warps")
BACKENDS = backend_params(sw_module.IMPLS)
CPU_BACKENDS = [p for p in BACKENDS if p.values[0] == "cpu"]
# (N, C, H, W, K+1): odd / prime sizes, K+1 = 1 and >= 33, batch 0, single pixel, one channel
SHAPES = [(2, 3, 7, 13, 11), (1, 2, 1, 1, 3), (1, 1, 5, 6, 33), (0, 3, 4, 4, 3), (2, 3, 9, 1, 2), (1, 3, 61, 67, 11)]
INTERP_MAX = 20000


def _interpreted(backend, device):
    return backend == "triton" and device == "cpu"


def _inputs(shape, device, dtype=torch.float64, seed=0, scale=0.3):
    n, c, h, w, k1 = shape
    g = torch.Generator().manual_seed(seed)
    source = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    shift = torch.randn(n, k1, 2, generator=g, dtype=torch.float64) * scale
    return source.to(device=device, dtype=dtype), shift.to(device=device, dtype=dtype)


def _check_forward(source, shift, backend, dtype=torch.float32):
    out = shifted_warps(source.to(dtype), shift.to(dtype), backend=backend)
    n, c, h, w = source.shape
    assert out.shape == (n, shift.shape[1], c, h, w) and out.dtype == dtype
    src64, sh64 = source.detach().cpu().double(), shift.detach().cpu().double()
    ref64 = ref.shifted_warps(src64, sh64)
    ref_lp = ref.shifted_warps(src64.to(dtype), sh64.to(dtype))
    assert_matches_reference(out, ref64, ref_lp, dtype)
    return out


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_reference_fp32(backend, device, shape):
    if _interpreted(backend, device) and math.prod(shape) > INTERP_MAX:
        pytest.skip("large shapes are slow under TRITON_INTERPRET; covered on GPU")
    source, shift = _inputs(shape, device)
    _check_forward(source, shift, backend)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_special_shifts(backend, device):
    """Zero shifts (Monkey-Net's background block), whole-pixel shifts (every tap on an exact
    integer coordinate), shifts far outside the image (every tap outside: zeros) and a shift of
    just under one pixel."""
    n, c, h, w = 1, 2, 9, 12
    source, _ = _inputs((n, c, h, w, 1), device)
    px = lambda dx, dy: [2.0 * dx / (w - 1), 2.0 * dy / (h - 1)]  # noqa: E731
    shifts = [[0.0, 0.0], px(1, 0), px(-3, 2), px(5, -4), [7.5, -3.0], [-40.0, 0.2], [0.1, 1e6],
              px(1 - 1e-6, 0.5), [2.0, 2.0], [-2.0, 0.0]]
    shift = torch.tensor([shifts], dtype=torch.float64, device=device)
    out = _check_forward(source, shift, backend)
    assert (out[0, 4:7] == 0).all()  # entirely outside
    torch.testing.assert_close(out[0, 0].cpu(), source[0].float().cpu())  # zero shift is the identity


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_forward_low_precision(backend, device, dtype):
    source, shift = _inputs((2, 3, 9, 12, 5), device)
    source, shift = source.to(dtype), shift.to(dtype)
    out = shifted_warps(source, shift, backend=backend)
    assert out.dtype == dtype
    src64, sh64 = source.cpu().double(), shift.cpu().double()  # the rounded inputs
    assert_matches_reference(out, ref.shifted_warps(src64, sh64), ref.shifted_warps(src64.to(dtype), sh64.to(dtype)),
                             dtype)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_and_channels_last(backend, device):
    source, shift = _inputs((2, 3, 7, 6, 4), device, dtype=torch.float32)
    expect = ref.shifted_warps(source.cpu(), shift.cpu())
    cl = source.contiguous(memory_format=torch.channels_last)
    strided = torch.stack([source, -source], dim=-1).flatten(-2)[..., ::2]  # the source with stride 2 along W
    assert not strided.is_contiguous() and torch.equal(strided, source)
    for s in (cl, strided):
        torch.testing.assert_close(shifted_warps(s, shift, backend=backend).cpu(), expect, rtol=1e-5, atol=2e-6)


def _grads(source, shift, grad_out, backend, dtype, want=(True, True)):
    s = source.detach().to(dtype).requires_grad_(want[0])
    k = shift.detach().to(dtype).requires_grad_(want[1])
    out = shifted_warps(s, k, backend=backend)
    inputs = [t for t, w in zip((s, k), want) if w]
    return torch.autograd.grad(out, inputs, grad_out.to(device=out.device, dtype=out.dtype))


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gradients_match_reference_fp32(backend, device):
    shape = (1, 2, 9, 10, 4) if _interpreted(backend, device) else (3, 3, 32, 33, 11)
    source, shift = _inputs(shape, device, scale=0.4)
    n, c, h, w, k1 = shape
    grad_out = torch.randn(n, k1, c, h, w, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g64 = _grads(source.cpu(), shift.cpu(), grad_out, "reference", torch.float64)
    g32 = _grads(source.cpu(), shift.cpu(), grad_out, "reference", torch.float32)
    got = _grads(source, shift, grad_out, backend, torch.float32)
    for name, a, r64, r32 in zip(("source", "kp_shift"), got, g64, g32):
        assert a.dtype == torch.float32
        assert_matches_reference(a, r64, r32, torch.float32, what=f"grad {name}")
    # one gradient at a time (the op skips the other)
    only_shift = _grads(source, shift, grad_out, backend, torch.float32, (False, True))[0]
    only_source = _grads(source, shift, grad_out, backend, torch.float32, (True, False))[0]
    torch.testing.assert_close(only_shift, got[1])
    torch.testing.assert_close(only_source, got[0])


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_gradients_low_precision(backend, device, dtype):
    source, shift = _inputs((2, 3, 9, 12, 5), device, scale=0.4)
    source, shift = source.to(dtype), shift.to(dtype)
    grad_out = torch.randn(2, 5, 3, 9, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    src64, sh64 = source.cpu().double(), shift.cpu().double()  # the rounded inputs
    g64 = _grads(src64, sh64, grad_out, "reference", torch.float64)
    g_lp = _grads(src64, sh64, grad_out.to(dtype), "reference", dtype)
    got = _grads(source, shift, grad_out.to(dtype), backend, dtype)
    for name, a, r64, rlp in zip(("source", "kp_shift"), got, g64, g_lp):
        assert a.dtype == dtype
        assert_matches_reference(a, r64, rlp, dtype, what=f"grad {name}")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_shift_gradient_at_integer_positions(backend, device):
    """At a zero (or whole-pixel) shift the sample is continuous but its derivative jumps, and the
    reference's own rounding picks the left or the right tap per pixel (((x + 1) / 2) (W - 1)
    lands 1 ulp below j for some j). The fused kernels compute the same coordinate in the same
    order, so the kp_shift gradient matches the reference run in the same precision (a kernel
    that used the constant pixel offset would take the right difference everywhere and miss by
    the size of the second difference)."""
    n, c, h, w = 2, 3, 17, 64
    source, _ = _inputs((n, c, h, w, 1), device)
    shift = torch.zeros(n, 3, 2, dtype=torch.float64, device=device)
    shift[:, 1] = torch.tensor([2.0 * 3 / (w - 1), 0.0])
    shift[:, 2] = torch.tensor([0.0, -2.0 * 2 / (h - 1)])
    grad_out = torch.randn(n, 3, c, h, w, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        expect = _grads(source.cpu(), shift.cpu(), grad_out, "reference", dtype, (False, True))[0]
        got = _grads(source, shift, grad_out, backend, dtype, (False, True))[0].cpu()
        # different summation order only: a tap-choice difference would be O(1) here
        torch.testing.assert_close(got, expect, rtol=1e-4 if dtype == torch.float32 else 1e-10,
                                   atol=1e-3 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gradcheck(backend, device):
    source, shift = _inputs((2, 2, 4, 5, 3), device, scale=0.4)
    source.requires_grad_()
    shift.requires_grad_()
    fn = lambda s, k: shifted_warps(s, k, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (source, shift), eps=1e-6, atol=1e-6, fast_mode=_interpreted(backend, device))


def test_gradcheck_reference():
    source, shift = _inputs((2, 2, 4, 5, 3), "cpu", scale=0.4)
    assert torch.autograd.gradcheck(ref.shifted_warps, (source.requires_grad_(), shift.requires_grad_()), eps=1e-6,
                                    atol=1e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_nan_shift_gives_nan_block(backend, device):
    source, shift = _inputs((1, 2, 5, 6, 3), device, dtype=torch.float32)
    shift[0, 1, 0] = float("nan")
    shift[0, 2, 1] = float("inf")
    out = shifted_warps(source, shift, backend=backend).cpu()
    expect = ref.shifted_warps(source.cpu(), shift.cpu())
    assert torch.equal(torch.isnan(out), torch.isnan(expect))
    assert torch.isnan(out[0, 1:]).all() and torch.isfinite(out[0, 0]).all()


def test_reference_matches_original_formulation():
    """The reference against a transcription of the original movement embedding's deformed source
    images: K+1 repeated copies of the source, grid + repeated difference, grid_sample with the
    align_corners=True semantics the original ran under."""
    torch.manual_seed(0)
    b, c, h, w, k1 = 2, 3, 6, 7, 4
    source = torch.randn(b, c, h, w, dtype=torch.float64)
    diff = torch.randn(b, k1, 2, dtype=torch.float64) * 0.3
    repeat = source.unsqueeze(1).repeat(1, k1, 1, 1, 1).view(b * k1, c, h, w)
    xs = 2 * (torch.arange(w, dtype=torch.float64) / (w - 1)) - 1
    ys = 2 * (torch.arange(h, dtype=torch.float64) / (h - 1)) - 1
    grid = torch.cat([xs.view(1, -1).repeat(h, 1).unsqueeze(2), ys.view(-1, 1).repeat(1, w).unsqueeze(2)], 2)
    deformation = grid.view(1, h, w, 2) + diff.view(b * k1, 2, 1, 1).repeat(1, 1, h, w).permute(0, 2, 3, 1)
    original = F.grid_sample(repeat, deformation, align_corners=True).view(b, k1, c, h, w)
    torch.testing.assert_close(ref.shifted_warps(source, diff), original, rtol=0, atol=0)


@pytest.mark.parametrize("backend,device", CPU_BACKENDS)
def test_opcheck(backend, device):
    source, shift = _inputs((2, 3, 5, 4, 3), device, dtype=torch.float32)
    torch.library.opcheck(torch.ops.fastmotion.shifted_warps_forward, (source, shift))
    grad = torch.randn(2, 3, 3, 5, 4)
    for flags in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(torch.ops.fastmotion.shifted_warps_backward, (grad, source, shift, *flags))


@pytest.mark.parametrize("backend,device", [p for p in BACKENDS if p.values[1] == "cuda" or p.values[0] == "cpu"])
def test_compile_fullgraph(backend, device):
    source, shift = (t.float().requires_grad_() for t in _inputs((2, 3, 6, 5, 3), device))

    def f(s, k):
        return shifted_warps(s, k, backend=backend).square().sum()

    assert_compiles_like_eager(f, source, shift)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: shifted_warps(torch.randn(3, 4, 4), torch.zeros(3, 2, 2)), ValueError, "source"),
        (lambda: shifted_warps(torch.randn(2, 3, 4, 4), torch.zeros(3, 2, 2)), ValueError, "kp_shift"),
        (lambda: shifted_warps(torch.randn(2, 3, 4, 4), torch.zeros(2, 2, 3)), ValueError, "kp_shift"),
        (lambda: shifted_warps(torch.randn(2, 3, 4, 4), torch.zeros(2, 2)), ValueError, "kp_shift"),
        (lambda: shifted_warps(torch.ones(2, 3, 4, 4, dtype=torch.int32), torch.zeros(2, 2, 2)), TypeError, "source"),
        (lambda: shifted_warps(torch.randn(2, 3, 4, 0), torch.zeros(2, 2, 2)), ValueError, "spatial"),
        (lambda: shifted_warps(torch.randn(2, 3, 4, 4), "zero"), TypeError, "kp_shift"),
        (lambda: shifted_warps(torch.randn(2, 3, 4, 4), torch.zeros(2, 2, 2), backend="cuda"), RuntimeError, "cuda"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_cpp_op_checks_its_arguments():
    source = torch.randn(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="accumulation dtype"):
        torch.ops.fastmotion.shifted_warps_forward(source, torch.zeros(2, 2, 2, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="grad_out"):
        torch.ops.fastmotion.shifted_warps_backward(torch.zeros(2, 2, 3, 4, 5), source, torch.zeros(2, 2, 2), True,
                                                    True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the other tests compile these kernels for it")
def test_triton_kernels_compile_for_sm90():
    """The real Triton compiler accepts the three kernels for every dtype, and with the size
    arguments Triton specializes to constants when they equal 1."""
    from tests.triton_compile import compile_for_sm90

    mod = "fastmotion.kernels.shifted_warps"
    specs = []
    sizes = {"C": "i32", "H": "i32", "W": "i32", "K1": "i32"}
    strides = {"s_n": "i64", "s_c": "i64", "s_h": "i64", "s_w": "i64"}
    for inp, acc in (("fp32", "fp32"), ("fp16", "fp32"), ("bf16", "fp32"), ("fp64", "fp64")):
        acc_t = "tl.float64" if acc == "fp64" else "tl.float32"
        tail = {"w_m1": acc, "h_m1": acc, "x_on": acc, "y_on": acc, "NBLK": "i32", "BLOCK": "constexpr",
                "ACC": "constexpr"}
        sigs = {
            "shifted_warps_fwd_kernel": {"src_ptr": f"*{inp}", "shift_ptr": f"*{acc}", "out_ptr": f"*{inp}",
                                         **sizes, **strides, **tail},
            "shifted_warps_bwd_shift_kernel": {"grad_ptr": f"*{inp}", "src_ptr": f"*{inp}", "shift_ptr": f"*{acc}",
                                               "partial_ptr": f"*{acc}", **sizes, **strides, **tail},
            "shifted_warps_bwd_source_kernel": {"grad_ptr": f"*{inp}", "shift_ptr": f"*{acc}",
                                                "gsrc_ptr": f"*{inp}", **sizes, **tail},
        }
        for kernel, sig in sigs.items():
            specs.append(dict(module=mod, kernel=kernel, signature=sig, constexprs={"BLOCK": 256, "ACC": acc_t}))
            if inp == "fp32":  # every size 1: Triton passes them as constants
                ones = {k: 1 for k in ("C", "H", "W", "K1", "NBLK", "s_w") if k in sig}
                sig1 = dict(sig, **{k: "constexpr" for k in ones})
                specs.append(dict(module=mod, kernel=kernel, signature=sig1,
                                  constexprs={"BLOCK": 256, "ACC": acc_t, **ones}))
    compile_for_sm90(specs)

"""compose_flow: every backend against the float64 reference, gradients, opcheck, compile, bad input."""
import importlib
import math

import pytest
import torch

from fastmotion.ops import compose_flow
from fastmotion import reference as ref
from tests.compile_check import assert_compiles_like_eager
from tests.tolerance import assert_matches_reference, backend_params

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # interpreter, masked lanes

cf_module = importlib.import_module("fastmotion.ops.compose_flow")
BACKENDS = backend_params(cf_module.IMPLS)
CPU_BACKENDS = [p for p in BACKENDS if p.values[0] == "cpu"]
# (N, K+1, H, W): odd and prime sizes, K+1 = 1 and >= 33, batch 0, single pixel
SHAPES = [(2, 11, 7, 13), (1, 1, 1, 1), (1, 33, 5, 6), (0, 3, 4, 4), (3, 2, 1, 9), (1, 11, 61, 67)]
INTERP_MAX = 20000  # elements beyond which interpreted Triton is too slow for the suite


def _interpreted(backend, device):
    return backend == "triton" and device == "cpu"


def _inputs(shape, device, dtype=torch.float64, seed=0, corr=True):
    n, k1, h, w = shape
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    shift = torch.randn(n, k1, 2, generator=g, dtype=torch.float64) * 0.3  # background row not zero
    correction = torch.randn(n, 2, h, w, generator=g, dtype=torch.float64) * 0.05 if corr else None
    to = dict(device=device, dtype=dtype)
    return logits.to(**to), shift.to(**to), None if correction is None else correction.to(**to)


def _cpu(t):
    return None if t is None else t.detach().cpu()


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("corr", [True, False], ids=["corr", "nocorr"])
def test_forward_matches_reference_fp32(backend, device, shape, corr):
    if _interpreted(backend, device) and math.prod(shape) > INTERP_MAX:
        pytest.skip("large shapes are slow under TRITON_INTERPRET; covered on GPU")
    logits, shift, correction = _inputs(shape, device, corr=corr)
    out = compose_flow(logits.float(), shift.float(), None if correction is None else correction.float(),
                       backend=backend)
    assert out.shape == (shape[0], shape[2], shape[3], 2) and out.dtype == torch.float32
    ref64 = ref.compose_flow(_cpu(logits), _cpu(shift), _cpu(correction))
    ref32 = ref.compose_flow(_cpu(logits).float(), _cpu(shift).float(),
                             None if correction is None else _cpu(correction).float())
    assert_matches_reference(out, ref64, ref32, torch.float32)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_forward_low_precision(backend, device, dtype):
    logits, shift, correction = (t.to(dtype) for t in _inputs((2, 11, 9, 12), device))
    out = compose_flow(logits, shift, correction, backend=backend)
    assert out.dtype == dtype
    args64 = [_cpu(t).double() for t in (logits, shift, correction)]  # the rounded inputs
    ref64 = ref.compose_flow(*args64)
    ref_lp = ref.compose_flow(*[t.to(dtype) for t in args64])
    assert_matches_reference(out, ref64, ref_lp, dtype)


def test_mixed_dtypes_promote_like_the_reference():
    logits, shift, correction = _inputs((1, 4, 5, 6), "cpu")
    out = compose_flow(logits.half(), shift.float(), correction.half(), backend="cpu")
    expect = ref.compose_flow(logits.half(), shift.float(), correction.half())
    assert out.dtype == expect.dtype == torch.float32
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-3)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_and_channels_last(backend, device):
    logits, shift, correction = _inputs((2, 5, 7, 6), device, dtype=torch.float32)
    base = logits.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # (N, K+1, H, W) view, channels last
    assert not base.is_contiguous()
    corr_t = correction.transpose(2, 3).contiguous().transpose(2, 3)
    shift_t = shift.transpose(1, 2).contiguous().transpose(1, 2)
    out = compose_flow(base, shift_t, corr_t, backend=backend)
    expect = ref.compose_flow(_cpu(logits), _cpu(shift), _cpu(correction))
    torch.testing.assert_close(out.cpu(), expect, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("corr", [True, False], ids=["corr", "nocorr"])
def test_gradients_match_reference_fp32(backend, device, corr):
    shape = (2, 11, 9, 10) if _interpreted(backend, device) else (4, 11, 32, 33)
    logits, shift, correction = _inputs(shape, device, corr=corr)
    g = torch.Generator().manual_seed(1)
    grad_out = torch.randn(shape[0], shape[2], shape[3], 2, generator=g, dtype=torch.float64)

    def grads(args, be, dtype):
        args = [None if a is None else a.detach().to(dtype).requires_grad_() for a in args]
        out = compose_flow(*args, backend=be)
        live = [a for a in args if a is not None]
        return torch.autograd.grad(out, live, grad_out.to(device=out.device, dtype=out.dtype))

    cpu_args = [_cpu(t) for t in (logits, shift, correction)]
    g64 = grads(cpu_args, "reference", torch.float64)
    g32 = grads(cpu_args, "reference", torch.float32)
    got = grads([logits, shift, correction], backend, torch.float32)
    for name, a, r64, r32 in zip(("mask_logits", "kp_shift", "correction"), got, g64, g32):
        assert a.dtype == torch.float32
        assert_matches_reference(a, r64, r32, torch.float32, what=f"grad {name}")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_gradients_low_precision(backend, device, dtype):
    logits, shift, correction = (t.to(dtype) for t in _inputs((2, 11, 9, 12), device))
    grad_out = torch.randn(2, 9, 12, 2, generator=torch.Generator().manual_seed(1)).to(dtype)

    def grads(args, be):
        args = [a.detach().requires_grad_() for a in args]
        out = compose_flow(*args, backend=be)
        return torch.autograd.grad(out, args, grad_out.to(device=out.device, dtype=out.dtype))

    args64 = [_cpu(t).double() for t in (logits, shift, correction)]  # the rounded inputs
    g64 = grads(args64, "reference")
    g_lp = grads([a.to(dtype) for a in args64], "reference")
    got = grads([logits, shift, correction], backend)
    for name, a, r64, rlp in zip(("mask_logits", "kp_shift", "correction"), got, g64, g_lp):
        assert a.dtype == dtype
        assert_matches_reference(a, r64, rlp, dtype, what=f"grad {name}")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gradcheck(backend, device):
    shape = (2, 3, 4, 5)
    logits, shift, correction = (t.requires_grad_() for t in _inputs(shape, device))
    fn = lambda a, b, c: compose_flow(a, b, c, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (logits, shift, correction), eps=1e-6, atol=1e-7,
                                    fast_mode=_interpreted(backend, device))
    fn = lambda a, b: compose_flow(a, b, None, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (logits, shift), eps=1e-6, atol=1e-7, fast_mode=_interpreted(backend, device))


def test_gradcheck_reference():
    logits, shift, correction = (t.requires_grad_() for t in _inputs((2, 3, 4, 5), "cpu"))
    assert torch.autograd.gradcheck(ref.compose_flow, (logits, shift, correction), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_nan_logits_propagate(backend, device):
    logits, shift, correction = _inputs((1, 4, 5, 6), device, dtype=torch.float32)
    logits[0, 2, 1, 3] = float("nan")
    out = compose_flow(logits, shift, correction, backend=backend).cpu()
    expect = ref.compose_flow(_cpu(logits), _cpu(shift), _cpu(correction))
    assert torch.equal(torch.isnan(out), torch.isnan(expect)) and torch.isnan(out[0, 1, 3]).all()
    assert torch.isfinite(out[0, 0]).all()


def test_reference_matches_original_formulation():
    """The reference against a transcription of the original DenseMotionModule's composition:
    5-D (B, K+1, 2, D, H, W) difference embedding times the softmax mask, plus correction, plus
    the original make_coordinate_grid, with the frame axis D folded into the batch."""
    torch.manual_seed(0)
    b, k1, d, h, w = 2, 4, 3, 5, 7
    prediction = torch.randn(b, k1 + 2, d, h, w, dtype=torch.float64)
    diff = torch.randn(b, d, k1, 2, dtype=torch.float64)
    diff[:, :, 0] = 0  # the original's background row
    mask = torch.softmax(prediction[:, :k1], dim=1).unsqueeze(2)
    emb = diff.view(b, d, k1, 2, 1, 1).repeat(1, 1, 1, 1, h, w).permute(0, 2, 3, 1, 4, 5)
    deformation = (emb * mask).sum(dim=1) + prediction[:, -2:]
    deformation = deformation.permute(0, 2, 3, 4, 1)
    xs = 2 * (torch.arange(w, dtype=torch.float64) / (w - 1)) - 1
    ys = 2 * (torch.arange(h, dtype=torch.float64) / (h - 1)) - 1
    grid = torch.cat([xs.view(1, -1).repeat(h, 1).unsqueeze(2), ys.view(-1, 1).repeat(1, w).unsqueeze(2)], 2)
    original = deformation + grid.view(1, 1, h, w, 2)  # (B, D, H, W, 2)
    fold = lambda t: t.transpose(1, 2).reshape(b * d, *t.shape[1:2], *t.shape[3:])  # noqa: E731
    ours = ref.compose_flow(fold(prediction[:, :k1]), diff.reshape(b * d, k1, 2), fold(prediction[:, -2:]))
    torch.testing.assert_close(ours, original.reshape(b * d, h, w, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend,device", CPU_BACKENDS)
def test_opcheck(backend, device):
    logits, shift, correction = _inputs((2, 3, 5, 4), device, dtype=torch.float32)
    torch.library.opcheck(torch.ops.fastmotion.compose_flow_forward, (logits, shift, correction))
    torch.library.opcheck(torch.ops.fastmotion.compose_flow_forward, (logits, shift, None))
    grad = torch.randn(2, 5, 4, 2)
    torch.library.opcheck(torch.ops.fastmotion.compose_flow_backward, (grad, logits, shift))


@pytest.mark.parametrize("backend,device", [p for p in BACKENDS if p.values[1] == "cuda" or p.values[0] == "cpu"])
def test_compile_fullgraph(backend, device):
    logits, shift, correction = (t.float().requires_grad_() for t in _inputs((2, 3, 6, 5), device))

    def f(a, b, c):
        return compose_flow(a, b, c, backend=backend).square().sum()

    assert_compiles_like_eager(f, logits, shift, correction)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: compose_flow(torch.randn(2, 3, 4), torch.zeros(2, 3, 2)), ValueError, "mask_logits"),
        (lambda: compose_flow(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 2)), ValueError, "kp_shift"),
        (lambda: compose_flow(torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 3)), ValueError, "kp_shift"),
        (lambda: compose_flow(torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 2), torch.zeros(2, 2, 4, 5)), ValueError,
         "correction"),
        (lambda: compose_flow(torch.ones(2, 3, 4, 4, dtype=torch.int64), torch.zeros(2, 3, 2)), TypeError,
         "mask_logits"),
        (lambda: compose_flow(torch.randn(2, 3, 4, 4), [[0.0, 0.0]]), TypeError, "kp_shift"),
        (lambda: compose_flow(torch.randn(2, 0, 4, 4), torch.zeros(2, 0, 2)), ValueError, "K\\+1"),
        (lambda: compose_flow(torch.randn(2, 3, 0, 4), torch.zeros(2, 3, 2)), ValueError, "spatial"),
        (lambda: compose_flow(torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 2), backend="cuda"), RuntimeError, "cuda"),
        (lambda: compose_flow(torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 2), backend="gpu"), ValueError, "backend"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_cpp_op_checks_its_arguments():
    logits = torch.randn(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="accumulation dtype"):
        torch.ops.fastmotion.compose_flow_forward(logits, torch.zeros(2, 3, 2, dtype=torch.float64), None)
    with pytest.raises(RuntimeError, match="grad_grid"):
        torch.ops.fastmotion.compose_flow_backward(torch.zeros(2, 4, 4, 3), logits, torch.zeros(2, 3, 2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the other tests compile these kernels for it")
def test_triton_kernels_compile_for_sm90():
    """The real Triton compiler (not the interpreter) accepts both kernels for every dtype, and
    with the size arguments Triton specializes to constants when they equal 1."""
    from tests.triton_compile import compile_for_sm90

    mod = "fastmotion.kernels.compose_flow"
    specs = []
    for inp, acc in (("fp32", "fp32"), ("fp16", "fp32"), ("bf16", "fp32"), ("fp64", "fp64")):
        acc_t = "tl.float64" if acc == "fp64" else "tl.float32"
        fwd = {"logits_ptr": f"*{inp}", "shift_ptr": f"*{acc}", "corr_ptr": f"*{inp}", "out_ptr": f"*{inp}",
               "K1": "i32", "HW": "i32", "W": "i32", "w_m1": acc, "h_m1": acc, "x_on": acc, "y_on": acc,
               "NBLK": "i32", "HAS_CORR": "constexpr", "BLOCK_K": "constexpr", "BLOCK_P": "constexpr",
               "ACC": "constexpr"}
        bwd = {"grad_ptr": f"*{inp}", "logits_ptr": f"*{inp}", "shift_ptr": f"*{acc}", "glogits_ptr": f"*{inp}",
               "partial_ptr": f"*{acc}", "K1": "i32", "HW": "i32", "NBLK": "i32", "BLOCK_K": "constexpr",
               "BLOCK_P": "constexpr", "ACC": "constexpr"}
        specs.append(dict(module=mod, kernel="compose_flow_fwd_kernel", signature=fwd,
                          constexprs={"HAS_CORR": True, "BLOCK_K": 16, "BLOCK_P": 256, "ACC": acc_t}))
        specs.append(dict(module=mod, kernel="compose_flow_bwd_kernel", signature=bwd,
                          constexprs={"BLOCK_K": 16, "BLOCK_P": 256, "ACC": acc_t}))
    ones = {"K1": 1, "HW": 1, "W": 1, "NBLK": 1}
    fwd1 = dict(specs[0]["signature"], **{k: "constexpr" for k in ones})
    specs.append(dict(module=mod, kernel="compose_flow_fwd_kernel", signature=fwd1,
                      constexprs={"HAS_CORR": False, "BLOCK_K": 64, "BLOCK_P": 64, "ACC": "tl.float32", **ones}))
    compile_for_sm90(specs)

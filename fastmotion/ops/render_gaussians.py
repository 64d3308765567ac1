"""``render_gaussians`` and ``keypoint_heatmap_embedding``: Gaussian keypoint heatmaps.

Backends: reference (plain PyTorch), cpu (C++), cuda (CUDA C++), triton. Both ops run on one
fused kernel pair, ``fastmotion::render_gaussians_forward`` / ``_backward``: per heatmap the
2x2 covariance is inverted once and every pixel costs a few FMAs and one exp per Gaussian; the
embedding's driving-minus-source difference, its normalisation and the zero background channel
are written in the same pass, in the ``(..., K+1, H, W)`` layout the next convolution reads. The
backward recomputes the Gaussians from the keypoints (nothing of size H*W is saved) and reduces
each heatmap to five moments, from which the mean and variance gradients follow in closed form.

Keypoints of kp_source may have leading dimensions that broadcast against kp_driving's (e.g.
``(B, 1, K, 2)`` against ``(B, D, K, 2)``): the kernels read them through zero strides, nothing
is expanded in memory; autograd sums the source gradients over the broadcast dimensions.

Degenerate input (singular covariances, empty sum-normalised heatmaps, non-covariance matrices)
follows the rule written in :mod:`fastmotion.reference.render_gaussians`, in every backend.

Autocast: no autocast rule; the ops run in the dtype of the keypoints (half and bfloat16 are
computed in float32 and rounded once), and mixed dtypes are promoted as in the reference.
"""
from __future__ import annotations

import math
import numbers

import torch

from fastmotion import backends
from fastmotion.ops import _checks, _eager
from fastmotion.ops.registry import Inputs, OpSpec, _cases, _keypoints, _nbytes, _put, register
from fastmotion import reference as ref

OP_RENDER = "render_gaussians"
OP_EMBED = "keypoint_heatmap_embedding"
_FWD = "render_gaussians_forward"
_BWD = "render_gaussians_backward"


# ---- torch.library registration of the fused op (C++ and Triton) ----

def _fake_forward(mean_d, var_d, mean_s, var_s, fixed_var, height, width, norm_const, norm_sum, background):
    # keypoints (A, B, K, 2) or (B, K, 2) -> heatmaps (A, B, K + bg, H, W) or (B, K + bg, H, W)
    return mean_d.new_empty(tuple(mean_d.shape[:-2]) + (mean_d.shape[-2] + int(background), height, width))


def _fake_backward(grad_out, mean_d, var_d, mean_s, var_s, fixed_var, norm_const, norm_sum, background):
    def like(t):
        return mean_d.new_empty((0,) if t is None else t.shape)

    return like(mean_d), like(var_d), like(mean_s), like(var_s)


def _setup_context(ctx, inputs, output):
    mean_d, var_d, mean_s, var_s, fixed_var, _height, _width, norm_const, norm_sum, background = inputs
    ctx.save_for_backward(mean_d, var_d, mean_s, var_s)
    ctx.args = (fixed_var, norm_const, norm_sum, background)


def _backward(ctx, backward_op, grad):
    mean_d, var_d, mean_s, var_s = ctx.saved_tensors
    gmd, gvd, gms, gvs = backward_op(grad, mean_d, var_d, mean_s, var_s, *ctx.args)
    return (gmd, None if var_d is None else gvd, None if mean_s is None else gms, None if var_s is None else gvs,
            None, None, None, None, None, None)


def _reference_forward(mean_d, var_d, mean_s, var_s, fixed_var, height, width, norm_const, norm_sum, background):
    """What the fused op computes, by the reference's math (the kernels' leading dims as they are)."""
    kp_variance = fixed_var if var_d is None else ("matrix" if var_d.shape[-1] == 2 else "single")
    kp_source = None if mean_s is None else {"mean": mean_s, "var": var_s}
    return ref.keypoint_heatmap_embedding({"mean": mean_d, "var": var_d}, kp_source, (height, width),
                                          "sum" if norm_sum else norm_const,
                                          "gaussian" if mean_s is None else "difference", background, kp_variance)


def _backward_reference(ctx, grad):
    """The keypoints' gradients by the reference's differentiable math (double backward)."""
    fixed_var, norm_const, norm_sum, background = ctx.args

    def heatmaps(md, vd, ms, vs):
        return [_reference_forward(md, vd, ms, vs, fixed_var, grad.shape[-2], grad.shape[-1], norm_const, norm_sum,
                                   background)]

    return (*_eager.reference_vjp(heatmaps, ctx.saved_tensors, [grad]), None, None, None, None, None, None)


IMPLS = _eager.wire(_FWD, _BWD, kernels="render_gaussians", fake_forward=_fake_forward, fake_backward=_fake_backward,
                    setup_context=_setup_context, backward=_backward, backward_reference=_backward_reference)
EMBED_IMPLS = IMPLS  # both ops run on the same fused kernels


# ---- argument checks (kept cheap: they run on every call) ----

def _check_var(var, mean, op, name="var"):
    if isinstance(var, numbers.Real) and not isinstance(var, bool):
        return _checks.positive_number(var, name, op)
    _checks.tensor(var, name, op)
    if (var.dim() != mean.dim() + 1 or var.shape[:-2] != mean.shape[:-1]
            or tuple(var.shape[-2:]) not in ((2, 2), (1, 1))):
        k_shape = tuple(mean.shape[:-1])
        raise ValueError(f"{op}: {name} must be {k_shape + (2, 2)} or {k_shape + (1, 1)} (or a number), "
                         f"got shape {tuple(var.shape)}")
    if var.device != mean.device:
        _checks.same_device(op, **{"mean": mean, name: var})
    return var


def _check_mean(mean, name, op):
    _checks.tensor(mean, name, op, min_dim=2)
    if mean.shape[-1] != 2:
        raise ValueError(f"{op}: {name} must be (..., K, 2), got shape {tuple(mean.shape)}")
    return mean


def _check_kp(kp, name, op, kp_variance):
    if not isinstance(kp, dict) or "mean" not in kp:
        raise TypeError(f"{op}: {name} must be a dict with 'mean' (and 'var'), got {type(kp).__name__}")
    mean = _check_mean(kp["mean"], f"{name}['mean']", op)
    if not isinstance(kp_variance, str):
        return mean, kp_variance
    if "var" not in kp:
        raise ValueError(f"{op}: {name} has no 'var' but kp_variance={kp_variance!r}")
    var = kp["var"]
    if not isinstance(var, torch.Tensor):
        raise TypeError(f"{op}: {name}['var'] must be a tensor for kp_variance={kp_variance!r}, "
                        f"got {type(var).__name__}")
    var = _check_var(var, mean, op, f"{name}['var']")
    if var.shape[-1] != (2 if kp_variance == "matrix" else 1):
        want = (2, 2) if kp_variance == "matrix" else (1, 1)
        raise ValueError(f"{op}: kp_variance={kp_variance!r} needs {name}['var'] of shape "
                         f"{tuple(mean.shape[:-1]) + want}, got {tuple(var.shape)}")
    return mean, var


def _broadcast_lead(lead_d, lead_s, op):
    """torch broadcasting of two leading shapes (plain Python: torch.broadcast_shapes is slow)."""
    if lead_d == lead_s:
        return lead_d
    n = max(len(lead_d), len(lead_s))
    a = (1,) * (n - len(lead_d)) + tuple(lead_d)
    b = (1,) * (n - len(lead_s)) + tuple(lead_s)
    out = []
    for x, y in zip(a, b):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"{op}: the leading dimensions of kp_source {tuple(lead_s)} do not broadcast "
                             f"against kp_driving's {tuple(lead_d)}")
        out.append(y if x == 1 else x)
    return tuple(out)


# ---- layout: leading dimensions -> the kernels' one or two ----

def _ab_views(lead, parts):
    """Views ``(A, B, *inner)`` of keypoint tensors whose leading shapes broadcast to ``lead``.

    ``parts``: ``(tensor, its leading shape)`` pairs. Leading dims are merged into at most two
    groups in which every tensor is either full or broadcast (a zero stride), so a broadcast
    source is never copied; patterns needing more groups fall back to a (tiny) expanded copy.
    """
    nd = len(lead)
    padded = [(1,) * (nd - len(lt)) + tuple(lt) for _, lt in parts]
    groups = []  # [size, which tensors are full along it]
    for d, n in enumerate(lead):
        if n == 1:
            continue
        full = tuple(p[d] == n for p in padded)
        if groups and groups[-1][1] == full:
            groups[-1][0] *= n
        else:
            groups.append([n, full])
    views = []
    if len(groups) <= 2:
        groups = [[1, (True,) * len(parts)]] * (2 - len(groups)) + groups
        a, b = groups[0][0], groups[1][0]
        for i, (t, lt) in enumerate(parts):
            inner = tuple(t.shape[len(lt):])
            own = tuple(g[0] if g[1][i] else 1 for g in groups)
            views.append(t.reshape(own + inner).expand((a, b) + inner))
    else:
        rows = math.prod(lead)
        for t, lt in parts:
            inner = tuple(t.shape[len(lt):])
            views.append(t.expand(tuple(lead) + inner).reshape((1, rows) + inner))
    return views


def _fused(name, lead, md, vd, ms, vs, fixed_var, size, norm_const, norm_sum, background):
    """Run the fused op on keypoints with leading shapes broadcasting to ``lead``; ``(*lead, C, H, W)``."""
    h, w = size
    args = (float(fixed_var), h, w, float(norm_const), bool(norm_sum), bool(background))
    fn = IMPLS[name].fn
    nd = len(lead)
    if 1 <= nd <= 2 and (ms is None or ms.shape[:-2] == md.shape[:-2]):
        # the common case: the kernels take one or two leading dims as they are, no views needed
        return fn(md, vd, ms, vs, *args)
    tensors = [t for t in (md, vd, ms, vs) if t is not None]
    parts = [(t, t.shape[:-2] if t is md or t is ms else t.shape[:-3]) for t in tensors]
    views = iter(_ab_views(lead, parts))
    md_v = next(views)
    vd_v = next(views) if vd is not None else None
    ms_v = next(views) if ms is not None else None
    vs_v = next(views) if vs is not None else None
    out = fn(md_v, vd_v, ms_v, vs_v, *args)
    return out.view(tuple(lead) + tuple(out.shape[2:]))


def _promote(*tensors):
    """The tensors (None kept) in their common dtype, as the reference's arithmetic promotes."""
    present = [t for t in tensors if t is not None]
    dtype = present[0].dtype
    if all(t.dtype == dtype for t in present):
        return tensors
    for t in present[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return tuple(None if t is None else t.to(dtype) for t in tensors)


# ---- public ops ----

def render_gaussians(mean: torch.Tensor, var, spatial_size, *, backend: str | None = None) -> torch.Tensor:
    """Gaussian heatmaps ``(..., K, H, W)`` of keypoints ``mean (..., K, 2)`` with covariance
    ``var`` ``(..., K, 2, 2)``, isotropic variance ``(..., K, 1, 1)`` or a fixed number.

    ``exp(-0.5 (g - mean)^T var^-1 (g - mean))`` on Monkey-Net's [-1, 1] grid (x along W, y along
    H): the original ``kp2gaussian``. Differentiable in mean and var. Singular covariances and
    other degenerate input: see :mod:`fastmotion.reference.render_gaussians`.
    """
    op = OP_RENDER
    _check_mean(mean, "mean", op)
    var = _check_var(var, mean, op)
    size = _checks.spatial_size(spatial_size, "spatial_size", op)
    name = backends.select(op, IMPLS, mean.device, backend)
    if name == "reference":
        return ref.render_gaussians(mean, var, size)
    lead = tuple(mean.shape[:-2])
    if isinstance(var, torch.Tensor):
        mean, var = _promote(mean, var)
        return _fused(name, lead, mean, var, None, None, 1.0, size, 1.0, False, False)
    return _fused(name, lead, mean, None, None, None, var, size, 1.0, False, False)


def keypoint_heatmap_embedding(kp_driving, kp_source, spatial_size, norm_const=100, heatmap_type="difference",
                               add_background=True, kp_variance="matrix", *, backend: str | None = None):
    """Heatmap channels of Monkey-Net's movement embedding, ``(..., K+1, H, W)``
    (``(..., K, H, W)`` without ``add_background``), written in one pass.

    Args:
        kp_driving, kp_source: keypoint dicts ``{'mean': (..., K, 2), 'var': (..., K, 2, 2) |
            (..., K, 1, 1)}``; kp_source's leading dims broadcast against kp_driving's (it is
            not read for ``heatmap_type="gaussian"``).
        spatial_size: ``(H, W)``.
        norm_const: the heatmaps are divided by this number, or by their own sum for ``"sum"``.
        heatmap_type: ``"difference"`` (driving minus source) or ``"gaussian"`` (driving only).
        add_background: prepend a zero channel.
        kp_variance: ``"matrix"`` / ``"single"`` read ``kp['var']``; a number is a fixed variance.
        backend: force an implementation (see :mod:`fastmotion.backends`).
    """
    op = OP_EMBED
    _checks.choice(heatmap_type, "heatmap_type", op, ("difference", "gaussian"))
    if norm_const != "sum":
        norm_const = _checks.positive_number(norm_const, "norm_const", op)
    kp_variance = _checks.kp_variance(kp_variance, op)
    md, vd = _check_kp(kp_driving, "kp_driving", op, kp_variance)
    ms = vs = None
    lead = tuple(md.shape[:-2])
    if heatmap_type == "difference":
        ms, vs = _check_kp(kp_source, "kp_source", op, kp_variance)
        if ms.shape[-2] != md.shape[-2]:
            raise ValueError(f"{op}: kp_source has {ms.shape[-2]} keypoints, kp_driving {md.shape[-2]}")
        if ms.device != md.device:
            _checks.same_device(op, kp_driving=md, kp_source=ms)
        lead = _broadcast_lead(lead, tuple(ms.shape[:-2]), op)
    size = _checks.spatial_size(spatial_size, "spatial_size", op)
    name = backends.select(op, EMBED_IMPLS, md.device, backend)
    if name == "reference":
        return ref.keypoint_heatmap_embedding(kp_driving, kp_source, size, norm_const, heatmap_type,
                                              add_background, kp_variance)
    fixed = kp_variance if isinstance(kp_variance, float) else 1.0
    vd = vd if isinstance(vd, torch.Tensor) else None
    vs = vs if isinstance(vs, torch.Tensor) else None
    md, vd, ms, vs = _promote(md, vd, ms, vs)
    norm_sum = norm_const == "sum"
    return _fused(name, lead, md, vd, ms, vs, fixed, size, 1.0 if norm_sum else norm_const, norm_sum,
                  add_background)


# --- the ops' benchmark entries (fastmotion.ops.registry): rendering and the movement embedding ---

def _gaussian_inputs(device, dtype, shape, embed=False):
    n, k, h, w = shape
    tensors = _keypoints(n, k, 0) + (_keypoints(n, k, 1) if embed else ())
    return Inputs(tuple(_put(t, device, dtype) for t in tensors), {"spatial_size": (h, w)})


def _gaussian_bytes(inputs, mode):
    n, k = inputs.tensors[0].shape[:2]
    h, w = inputs.options["spatial_size"]
    embed = len(inputs.tensors) == 4
    item = inputs.tensors[0].element_size()
    heat = n * (k + embed) * h * w * item
    kp = _nbytes(*inputs.tensors)
    return heat + kp if mode == "fwd" else 2 * heat + 2 * kp


def _render_reference(mean, var, spatial_size):
    return ref.render_gaussians(mean, var, spatial_size)


def _render_fused(mean, var, spatial_size, backend=None):
    return render_gaussians(mean, var, spatial_size, backend=backend)


_EMBED = {"norm_const": 100, "heatmap_type": "difference", "add_background": True, "kp_variance": "matrix"}


def _embed_reference(mean_d, var_d, mean_s, var_s, spatial_size):
    return ref.keypoint_heatmap_embedding({"mean": mean_d, "var": var_d}, {"mean": mean_s, "var": var_s},
                                          spatial_size, **_EMBED)


def _embed_fused(mean_d, var_d, mean_s, var_s, spatial_size, backend=None):
    return keypoint_heatmap_embedding({"mean": mean_d, "var": var_d}, {"mean": mean_s, "var": var_s},
                                      spatial_size, **_EMBED, backend=backend)


register(OpSpec("render_gaussians", "render_gaussians", "IMPLS", _render_reference, _render_fused, _gaussian_inputs,
                _gaussian_bytes,
                _cases([(1, 10, 64, 64), (32, 10, 64, 64), (8, 10, 128, 128), (1, 10, 256, 256)],
                       key=[(32, 10, 64, 64)], quick=[(1, 10, 64, 64)]),
                tiny={"shape": (1, 2, 4, 4)}))
register(OpSpec("keypoint_heatmap_embedding", "render_gaussians", "EMBED_IMPLS", _embed_reference, _embed_fused,
                lambda device, dtype, shape: _gaussian_inputs(device, dtype, shape, embed=True), _gaussian_bytes,
                _cases([(1, 10, 64, 64), (32, 10, 64, 64), (8, 10, 128, 128)], key=[(32, 10, 64, 64)],
                       quick=[(1, 10, 64, 64)]),
                tiny={"shape": (1, 2, 4, 4)}))

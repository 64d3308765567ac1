"""``warp_features``: warp several feature maps by one sampling grid given at another size.

Backends: reference (F.interpolate + F.grid_sample), cpu (C++), cuda (CUDA C++), triton.

The original generator resizes the dense-motion grid to every encoder skip's size
(``F.interpolate``, nearest or trilinear) and then grid-samples the skip. The fused kernels fold
the resize into the sampling: each output element computes its resized grid value straight from
the small grid, so no resized grid is stored; all maps of a call are warped by one op (one
launch per pass on the GPU). The backward scatters into the feature gradients and pushes the
coordinate gradient back through the resize into the small grid (see the kernel files).

Dtypes: each output has its map's dtype; the grid is used in float32 (float64 for float64
features) and its gradient comes back in the grid's own dtype. Maps of different dtypes (under
autocast the source image stays float32 while the encoder's maps are half) are warped in one call
per dtype.
NaN / inf: a NaN or infinite grid value makes the outputs that read it NaN (as grid_sample's NaN
weights do); taps outside a map read 0 and keep their weight, as in grid_sample.
Determinism: the CPU backward is deterministic; on the GPU the feature gradients are scattered
with float atomics, except under torch.use_deterministic_algorithms(True), where the Triton
backend gathers them (grid_sample's gather input gradient) and the CUDA backend raises.
"""
from __future__ import annotations

import torch

from fastmotion import backends
from fastmotion.ops import _checks, _eager
from fastmotion.ops._schema import MODE_BILINEAR, MODE_NEAREST, PADDING_CODES
from fastmotion.ops.registry import (Case, Inputs, OpSpec, _generator, _nbytes, _put, _registered, register,
                                     smooth_flow_grid)
from fastmotion import reference as ref

OP = "warp_features"
PADDING_ZEROS = PADDING_CODES["zeros"]
MODES = ("nearest", "bilinear", "trilinear")
_FWD = "warp_features_forward"
_BWD = "warp_features_backward"


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fake_forward(features, grid, mode):
    n = grid.shape[0]
    return [f.new_empty((n,) + tuple(f.shape[1:])) for f in features]


def _fake_backward(grad_outs, features, grid, mode, features_requires_grad, grid_requires_grad):
    n = grid.shape[0]
    grads = [f.new_empty((n,) + tuple(f.shape[1:])) for f in features] if features_requires_grad else []
    return grads, grid.new_empty(tuple(grid.shape) if grid_requires_grad else (0,))


def _setup_context(ctx, inputs, output):
    features, grid, mode = inputs
    ctx.save_for_backward(*features, grid)
    ctx.num_features = len(features)
    ctx.mode = mode


def _registered_needs(ctx):
    return bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1])


def _backward_reference(ctx, grads):
    """Feature and grid gradients by the reference's differentiable math (double backward);
    half and bfloat16 maps computed in float32 (the grid already is), as the kernels do."""
    saved = ctx.saved_tensors
    features, grid = list(saved[:ctx.num_features]), saved[ctx.num_features]
    def warped(*tensors):
        maps, g = tensors[:-1], tensors[-1]
        outs = ref.warp_features([f.to(_acc_dtype(f.dtype)) for f in maps], g,
                                 "nearest" if ctx.mode == MODE_NEAREST else "bilinear")
        return [o.to(f.dtype) for o, f in zip(outs, maps)]

    got = _eager.reference_vjp(warped, features + [grid], list(grads))
    return got[:-1], got[-1], None


def _backward(ctx, backward_op, grads, needs=_registered_needs):
    """The fused gradients; ``needs(ctx)`` -> (features need gradients, grid needs one)."""
    saved = ctx.saved_tensors
    features, grid = list(saved[:ctx.num_features]), saved[ctx.num_features]
    need_features, need_grid = needs(ctx)
    need_features = need_features and any(f.requires_grad for f in features)
    if not (need_features or need_grid) or not features:
        return ([None] * len(features) if features else None), None, None
    grads = [torch.zeros_like(f, memory_format=torch.contiguous_format) if g is None else g.contiguous()
             for g, f in zip(grads, features)]
    grad_features, grad_grid = backward_op(grads, features, grid, ctx.mode, need_features, need_grid)
    return (list(grad_features) if need_features else [None] * len(features),
            grad_grid if need_grid else None, None)


# Eager entries (see fastmotion/ops/_eager.py). autograd.Function does not see tensors inside a
# list argument, so they take the maps flat: (grid, mode, *features) -> tuple of warped maps.

def _flat_needs(ctx):
    return any(ctx.needs_input_grad[2:]), bool(ctx.needs_input_grad[0])


def _flat_backward(ctx, backward_op, grads):
    return _backward(ctx, backward_op, grads, needs=_flat_needs)


def _flat_entry(name, forward, backward_op, traced, tensor_args, transforms):
    def flat_forward(grid, mode, *features):
        return tuple(forward(list(features), grid, mode))

    def flat_setup_context(ctx, inputs, output):
        grid, mode, *features = inputs
        _setup_context(ctx, (features, grid, mode), output)

    formula = _eager.backward_formula(_flat_backward, _backward_reference, backward_op)

    def flat_backward(ctx, *grads):
        grad_features, grad_grid, _ = formula(ctx, list(grads))
        return (grad_grid, None, *(grad_features or ()))

    def flat_traced(grid, mode, *features):
        return tuple(traced(list(features), grid, mode))

    fused = _eager.fused_op(name, flat_forward, flat_setup_context, flat_backward, flat_traced, transforms=transforms)
    return lambda features, grid, mode: fused(grid, mode, *features)


def _triton_launchers():
    """warp_features' Triton launchers; in deterministic mode (torch.use_deterministic_algorithms,
    or FASTMOTION_GRID_SAMPLE_SCATTER=gather) the feature gradients are grid_sample's gather input
    gradient per map at the grid resized to the map's size instead of the kernels' atomic scatter
    (the resized grids are materialised: the price of determinism)."""
    from fastmotion.kernels import grid_sample as gs
    from fastmotion.kernels import warp_features as tk

    def warp_features_backward(grad_outs: list[torch.Tensor], features: list[torch.Tensor], grid: torch.Tensor,
                               mode: int, features_requires_grad: bool,
                               grid_requires_grad: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        if not (features_requires_grad and gs.gather_input_grad()):
            return tk.warp_features_backward(grad_outs, features, grid, mode, features_requires_grad,
                                             grid_requires_grad)
        _, grad_grid = tk.warp_features_backward(grad_outs, features, grid, mode, False, grid_requires_grad)
        resize = "nearest" if mode == MODE_NEAREST else "bilinear"
        grad_features = []
        for g, f in zip(grad_outs, features):
            g = g.contiguous()
            if g.numel() == 0:
                grad_features.append(f.new_zeros((grid.shape[0],) + tuple(f.shape[1:])))
                continue
            grid_f = ref.resize_grid(grid.contiguous(), f.shape[-2:], resize).contiguous()
            grad_features.append(gs.input_grad_by_gather(g, f.contiguous(), grid_f, MODE_BILINEAR, PADDING_ZEROS,
                                                         True, torch.contiguous_format))
        return grad_features, grad_grid

    return tk.warp_features_forward, warp_features_backward


IMPLS = _eager.wire(_FWD, _BWD, launchers=_triton_launchers, fake_forward=_fake_forward, fake_backward=_fake_backward,
                    setup_context=_setup_context, backward=_backward, backward_reference=_backward_reference,
                    entry=_flat_entry)


def warp_features(features, grid: torch.Tensor, mode: str = "nearest", *, backend: str | None = None):
    """Warp each ``(N, C_i, H_i, W_i)`` in ``features`` by ``grid (N, h, w, 2)`` resized to
    ``(H_i, W_i)`` with ``mode`` (the original generator's ``interpolation_mode``; 'trilinear'
    means linear, align_corners=False), sampling bilinear / zeros / align_corners=True.
    Returns a list with one warped map per input map."""
    _checks.tensor(grid, "grid", OP, dim=4)
    if grid.shape[-1] != 2 or grid.shape[1] < 1 or grid.shape[2] < 1:
        raise ValueError(f"{OP}: grid must be (N, h, w, 2) with h, w >= 1, got {tuple(grid.shape)}")
    _checks.choice(mode, "mode", OP, MODES)
    if isinstance(features, torch.Tensor):
        raise TypeError(f"{OP}: features must be a list of (N, C, H, W) tensors, got one tensor")
    features = list(features)
    for i, f in enumerate(features):
        name = f"features[{i}]"
        _checks.tensor(f, name, OP, dim=4)
        if f.shape[0] != grid.shape[0]:
            raise ValueError(f"{OP}: {name} has batch {f.shape[0]}, grid has {grid.shape[0]}")
        _checks.nonempty_spatial(f, name, OP)
        if f.device != grid.device:
            _checks.same_device(OP, **{"grid": grid, name: f})
    groups = {}
    for i, f in enumerate(features):
        groups.setdefault(f.dtype, []).append(i)
    if len(groups) > 1:  # one call per dtype, outputs back in the input order
        out = [None] * len(features)
        for idx in groups.values():
            for i, warped in zip(idx, warp_features([features[i] for i in idx], grid, mode, backend=backend)):
                out[i] = warped
        return out
    name = backends.select(OP, IMPLS, grid.device, backend)
    if name == "reference":
        return ref.warp_features(features, grid, mode)
    if not features:
        return []
    kernel_mode = MODE_NEAREST if mode == "nearest" else MODE_BILINEAR  # the grid resize: nearest or linear
    return list(IMPLS[name].fn(features, grid.to(_acc_dtype(features[0].dtype)), kernel_mode))


# --- the op's benchmark entry (fastmotion.ops.registry): the generator's encoder skips warped by one flow

# taichi: num_blocks=5, block_expansion=32, 64x64 frames, nearest resize of the 64x64 flow;
# vox: num_blocks=7, 256x256 frames, dense motion at scale 0.25 (64x64 flow), trilinear resize.
WARP_CONFIGS = {
    "taichi": dict(channels=(3, 64, 128, 256, 512, 1024), top=64, grid=64, mode="nearest"),
    "vox": dict(channels=(3, 64, 128, 256, 512, 1024, 1024, 1024), top=256, grid=64, mode="trilinear"),
    "tiny": dict(channels=(2, 2), top=8, grid=4, mode="nearest"),
}


def _warp_inputs(device, dtype, config, n):
    cfg = WARP_CONFIGS[config]
    g = _generator(0)
    skips = [torch.randn(n, c, cfg["top"] >> i, cfg["top"] >> i, generator=g) for i, c in enumerate(cfg["channels"])]
    grid = smooth_flow_grid(n, cfg["grid"], cfg["grid"], amplitude=0.1)
    return Inputs(tuple(_put(t, device, dtype) for t in skips + [grid]), {"mode": cfg["mode"]})


def _warp_bytes(inputs, mode):
    *skips, grid = inputs.tensors
    feat = _nbytes(*skips)
    fwd = 2 * feat + _nbytes(grid)
    return fwd if mode == "fwd" else fwd + 3 * feat + 2 * _nbytes(grid)


def _warp_reference(*tensors, mode):
    return ref.warp_features(list(tensors[:-1]), tensors[-1], mode)


def _warp_fused(*tensors, mode, backend=None):
    return warp_features(list(tensors[:-1]), tensors[-1], mode, backend=backend)


def _warp_registered(tensors, options, backend):
    mode = MODE_NEAREST if options["mode"] == "nearest" else MODE_BILINEAR  # resize: nearest or linear
    return _registered("warp_features_forward", backend)(list(tensors[:-1]), tensors[-1], mode)


def _warp_cases():
    cases = [("taichi", 1), ("taichi", 16), ("vox", 1), ("vox", 4)]
    return tuple(Case(f"{cfg} skips N={n}", {"config": cfg, "n": n}, key=(cfg, n) == ("taichi", 16),
                      quick=(cfg, n) == ("taichi", 1)) for cfg, n in cases)


register(OpSpec("warp_features", "warp_features", "IMPLS", _warp_reference, _warp_fused, _warp_inputs, _warp_bytes,
                _warp_cases(), tiny={"config": "tiny", "n": 1}, registered=_warp_registered))

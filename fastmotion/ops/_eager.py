"""Eager calls of the fused ops: the registered kernels and autograd formula, minus the
registered-op machinery around them.

Every fused op is a torch.library op (schema in C++ or a ``triton_op``) with fake kernels and a
``register_autograd`` formula: that is what torch.compile traces and what ``opcheck`` tests. In
eager mode that machinery is pure host time around the kernel. Measured on the 2-core dev CPU
(torch 2.13, a 1x2x4x4 input, so the kernel itself is ~1 us): a C++ op called through its
registered Python autograd kernel costs 11 us without gradients and 42 us with them, against
3.5 us when called below autograd; a ``triton_op`` costs ~21 / ~48 us over its body. On a GPU
the kernels of a real-time frame take tens of microseconds, so that host time would decide the
speed (bench/test_call_overhead.py measures each public op). The public ops therefore call, in
eager mode:
  * no input needs a gradient: the kernel directly (a C++ op below the autograd dispatch key,
    a Triton launcher with ``wrap_triton`` off, see ``triton_launcher``);
  * otherwise: a plain ``torch.autograd.Function`` with the op's own ``setup_context`` and
    ``backward`` (the same functions that were registered): ~17 us for ``apply`` of a trivial one;
and under torch.compile the registered op, so the traced graph is unchanged.
"""
from __future__ import annotations

import contextlib
import importlib
from typing import Callable, Dict, Optional, Sequence

import torch

_BELOW_AUTOGRAD = torch._C._AutoDispatchBelowAutograd
try:
    from torch._library.triton import set_wrap_triton_enabled as _wrap_triton_enabled
except ImportError:  # a torch without the switch: launch as it does
    def _wrap_triton_enabled(enabled):
        return contextlib.nullcontext()


def below_autograd(op: Callable) -> Callable:
    """``op`` (a ``torch.ops.fastmotion`` overload) called with the autograd keys excluded: the
    kernel runs, nothing is recorded (the caller records the graph node itself)."""

    def call(*args):
        with _BELOW_AUTOGRAD():
            return op(*args)

    return call


def _first_tensor(args: Sequence):
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
            return a[0]
    return None


def triton_launcher(launcher: Callable) -> Callable:
    """A Triton launcher as the eager path calls it: with its first tensor's CUDA device current
    (Triton launches on the current device) and with torch's ``wrap_triton`` switched off, as a
    ``triton_op`` does around its body. ``wrap_triton`` is on by default: outside a triton_op the
    launch would go through the higher-order op torch uses for tracing, which torch itself calls
    slow in eager mode (its comment on ``set_wrap_triton_enabled``)."""

    def call(*args):
        with _wrap_triton_enabled(False):
            t = _first_tensor(args)
            if t is not None and t.device.type == "cuda" and t.device.index != torch.cuda.current_device():
                with torch.cuda.device(t.device):
                    return launcher(*args)
            return launcher(*args)

    return call


def _needs_grad(args: Sequence) -> bool:
    for a in args:
        if isinstance(a, torch.Tensor):
            if a.requires_grad:
                return True
        elif isinstance(a, (list, tuple)):
            if any(isinstance(t, torch.Tensor) and t.requires_grad for t in a):
                return True
    return False


def builds_graph(ctx, grads: Sequence) -> bool:
    """Whether an op's backward must itself be differentiable: a graph of it is being built
    (``create_graph=True``, torch.func transforms: grad mode is on inside the backward) and a saved
    input or an incoming gradient requires grad.

    Every op's backward (:func:`backward_formula`) checks ``torch.is_grad_enabled() and
    builds_graph(ctx, grads)`` and then computes its gradients with the reference's differentiable
    math (``reference_vjp``) instead of the fused kernels, whose results carry no graph (a second
    derivative through them would be silently zero). A first-order backward pays one
    ``torch.is_grad_enabled()`` for it.
    """
    for g in grads:
        if isinstance(g, torch.Tensor):
            if g.requires_grad:
                return True
        elif isinstance(g, (list, tuple)) and any(isinstance(t, torch.Tensor) and t.requires_grad for t in g):
            return True
    return any(t is not None and t.requires_grad for t in ctx.saved_tensors)


def backward_formula(backward: Callable, backward_reference: Callable, backward_op: Callable) -> Callable:
    """An op's autograd backward(ctx, *grads): ``backward(ctx, backward_op, *grads)``, the fused
    first-order gradients; while a graph of the backward is being built (:func:`builds_graph`),
    ``backward_reference(ctx, *grads)``, the reference's differentiable math."""
    def formula(ctx, *grads):
        if torch.is_grad_enabled() and builds_graph(ctx, grads):
            return backward_reference(ctx, *grads)
        return backward(ctx, backward_op, *grads)
    return formula


def reference_vjp(fn: Callable, inputs: Sequence, grads: Sequence) -> list:
    """Gradients of ``fn(*inputs)`` (the reference's outputs, a sequence; None entries skipped)
    given ``grads`` (one per output, None for none), with respect to each of ``inputs`` that
    requires grad (None for the others), recorded so that they can be differentiated again.

    ``torch.func.vjp`` rather than ``torch.autograd.grad``: it composes with regular autograd
    (create_graph) and with the torch.func transforms alike (under jacrev(grad(...)) an inner
    ``autograd.grad`` gives silently wrong second derivatives)."""
    wanted = [i for i, t in enumerate(inputs) if isinstance(t, torch.Tensor) and t.requires_grad]
    result = [None] * len(inputs)
    if not wanted or all(g is None for g in grads):
        return result
    keep = None

    def of_wanted(*tensors):
        nonlocal keep
        args = list(inputs)
        for i, t in zip(wanted, tensors):
            args[i] = t
        outs = fn(*args)
        if keep is None:
            keep = [k for k, (o, g) in enumerate(zip(outs, grads)) if o is not None and g is not None]
        return tuple(outs[k] for k in keep)

    _, pullback = torch.func.vjp(of_wanted, *[inputs[i] for i in wanted])
    if not keep:
        return result
    got = pullback(tuple(grads[k] for k in keep))
    for i, g in zip(wanted, got):
        result[i] = g
    return result


def fused_op(name: str, forward: Callable, setup_context: Callable, backward: Callable,
             traced: Callable, tensor_args: int | None = None, transforms: bool = True) -> Callable:
    """The eager entry of one fused op.

    forward(*args): runs the kernels, returns the op's outputs (must not record autograd);
    setup_context(ctx, inputs, output) / backward(ctx, *grads): the op's autograd formula, the
    same signatures as ``torch.library.register_autograd`` (one gradient per input);
    traced(*args): the registered op, called instead while torch.compile traces.
    tensor_args: how many leading arguments may hold tensors that need gradients (all: None).
    transforms: whether torch.func transforms can run it; Triton kernels cannot read functorch's
    wrapped tensors (and torch.library's custom ops refuse those transforms), so Triton entries
    raise a clear error there instead of an obscure one.
    Tensors inside list arguments are not tracked by ``autograd.Function``: ops that take
    lists flatten them before calling (see warp_features).
    """
    def forward_with_ctx(ctx, *args):
        # Old-style forward(ctx, ...): with a separate setup_context, Function.apply binds the
        # arguments through inspect.signature on every call (grid_sample with gradients, dev
        # CPU: 74 us a call that way, 40 us this way).
        output = forward(*args)
        setup_context(ctx, args, output)
        return output

    function = type(name, (torch.autograd.Function,), {
        "forward": staticmethod(forward_with_ctx),
        "backward": staticmethod(backward),
    })
    # torch.func transforms (grad, jacrev, ...) accept only the new style, with setup_context
    transformable = type(name + "Transformable", (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    })

    def call(*args):
        if torch.compiler.is_compiling():
            return traced(*args)
        if torch._C._are_functorch_transforms_active():
            if not transforms:
                raise RuntimeError(f"{name}: torch.func transforms (grad, vmap, jacrev, ...) cannot run the Triton "
                                   "kernels (they cannot read functorch's wrapped tensors); use backend='cpu', "
                                   "'cuda' or 'reference'")
            return transformable.apply(*args)
        if torch.is_grad_enabled() and _needs_grad(args if tensor_args is None else args[:tensor_args]):
            return function.apply(*args)
        return forward(*args)

    call.function = function
    return call


def function_name(op: str) -> str:
    """The name of the eager autograd.Function of the op ``fastmotion::<op>``: ``GridSampleForward``."""
    return "".join(part.title() for part in op.split("_"))


def _leading_tensor_args(op) -> int:
    """How many leading arguments of a compiled op's schema are Tensor / Tensor? / Tensor[]."""
    count = 0
    for arg in op._schema.arguments:
        if "Tensor" not in str(arg.type):
            break
        count += 1
    return count


def wire(fwd: str, bwd: str, *, kernels: Optional[str] = None, fake_forward: Callable, fake_backward: Callable,
         setup_context: Callable, backward: Callable, backward_reference: Callable, entry: Optional[Callable] = None,
         output: Callable = lambda fn: fn, launchers: Optional[Callable] = None) -> Dict:
    """Register one fused op on every backend and return its backend table
    (:func:`fastmotion.backends.impl_table`), the one call an ``fastmotion/ops`` module makes.

    fwd, bwd: the op's forward and backward, named as ``fastmotion::<fwd>`` / ``<bwd>`` in the
        compiled extension and as the launchers ``fastmotion.kernels.<kernels>.<fwd>`` / ``<bwd>``,
        whose annotated signatures are the Triton ops' schemas;
    fake_forward, fake_backward: the compiled ops' fake kernels (the Triton ops trace their
        launchers instead);
    setup_context(ctx, inputs, output), backward(ctx, backward_op, *grads) and
        backward_reference(ctx, *grads): the autograd formula (:func:`backward_formula`) around a
        backward op (the compiled one, the Triton op or its eager launcher), registered with each
        forward and used by its eager entry;
    entry(name, forward, backward_op, traced, tensor_args, transforms): the eager entry of one
        backend (default: :func:`fused_op` with the formula around ``backward_op``);
    output(entry): what the table calls, given the entry (default: the entry itself);
    launchers() -> (forward, backward): the Triton launchers, when they are not the kernel
        module's ``<fwd>`` / ``<bwd>`` (an op that combines two kernel modules).

    The compiled backends exist when the extension defines ``fwd``; Triton when it is usable
    (:func:`fastmotion.backends.unavailable_reason`).
    """
    from fastmotion import _ext, backends

    def backward_with(backward_op):
        return backward_formula(backward, backward_reference, backward_op)

    def default_entry(name, forward, backward_op, traced, tensor_args, transforms):
        return fused_op(name, forward, setup_context, backward_with(backward_op), traced, tensor_args, transforms)

    entry = entry or default_entry
    compiled = None

    def compiled_backward(*args):
        return getattr(torch.ops.fastmotion, bwd)(*args)

    if _ext.register_compiled_op(fwd, bwd, fake_forward, fake_backward, backward_with(compiled_backward),
                                 setup_context):
        op = getattr(torch.ops.fastmotion, fwd).default
        compiled = entry(function_name(fwd), below_autograd(op), compiled_backward, op, _leading_tensor_args(op), True)
    triton = None
    if backends.unavailable_reason("triton", "cuda") is None:
        if launchers is None:
            module = importlib.import_module(f"fastmotion.kernels.{kernels}")
            launch_forward, launch_backward = getattr(module, fwd), getattr(module, bwd)
        else:
            launch_forward, launch_backward = launchers()
        forward_op = torch.library.triton_op(f"fastmotion::{fwd}_triton", launch_forward, mutates_args=())
        backward_op = torch.library.triton_op(f"fastmotion::{bwd}_triton", launch_backward, mutates_args=())
        forward_op.register_autograd(backward_with(backward_op), setup_context=setup_context)
        # eager: the launchers themselves
        triton = entry(function_name(fwd) + "Triton", triton_launcher(launch_forward), triton_launcher(launch_backward),
                       forward_op, None, False)
    return backends.impl_table(output(compiled) if compiled is not None else None, fwd,
                               output(triton) if triton is not None else None)

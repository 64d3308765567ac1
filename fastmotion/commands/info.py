"""``fastmotion info``: versions, and which backends are usable here and why not."""
from __future__ import annotations

import os
import platform
import sys


def _inference_convolutions() -> str:
    """Which kernels the models' fast path uses for float32 CPU inference (models/winograd_conv.py)."""
    import torch

    from fastmotion.models import winograd_conv

    capability = torch.backends.cpu.get_cpu_capability()
    if winograd_conv.available():
        return f"Winograd where it pays off, else oneDNN (CPU capability {capability})"
    if not winograd_conv.built():
        return "oneDNN (the compiled extension has no Winograd kernel)"
    return f"oneDNN (CPU capability {capability}: Winograd needs AVX2 or AVX-512)"


def _bf16_inference_convolutions() -> str:
    """Which kernels CPU inference convolutions use under ``--dtype bf16`` (CPU autocast)."""
    import torch

    from fastmotion.inference.animator import cpu_has_bf16
    from fastmotion.models import winograd_conv

    if not cpu_has_bf16():
        return "none (oneDNN reports no bfloat16 convolutions on this CPU: --dtype bf16 is refused)"
    if winograd_conv.available(torch.bfloat16):
        return "Winograd on the project's AVX512_BF16 GEMM where it pays off, else oneDNN bfloat16"
    return "oneDNN bfloat16 (the bfloat16 Winograd kernel needs AVX512_BF16 and the compiled extension)"


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print versions and which backends are usable here, and why not")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    import fastmotion
    from fastmotion import _ext, backends

    print(f"fastmotion {fastmotion.__version__}")
    print(f"python     {platform.python_version()} ({sys.executable})")
    print(f"torch      {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}, "
          f"CUDA device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'})")
    try:
        import triton

        print(f"triton     {triton.__version__}{' (TRITON_INTERPRET=1: kernels run on the CPU)' if backends.triton_interpreted() else ''}")
    except ImportError:
        print("triton     not installed")
    module, err = _ext.load()
    if module is None:
        print(f"extension  not loaded: {err}")
    else:
        print(f"extension  {module.__file__} (CUDA kernels compiled: {'yes' if module.with_cuda else 'no'})")
    env_value = os.environ.get(backends.ENV_VAR, "")
    try:
        requested = backends.requested_backend()
    except ValueError as exc:  # the diagnostic command reports a bad setting instead of stopping at it
        requested, bad_setting = None, str(exc)
    else:
        bad_setting = None
    if bad_setting is None:
        print(f"backend    {requested or 'auto'} ({backends.ENV_VAR}={env_value!r})")
        print(f"float32 CPU inference convolutions: {_inference_convolutions()}")
        print(f"bfloat16 CPU inference convolutions: {_bf16_inference_convolutions()}")
    else:
        print(f"backend    invalid: {bad_setting}; every model and op call fails until it is fixed or unset")
    print()
    print(f"{'backend':<10} {'CPU tensors':<14} CUDA tensors")
    notes = []
    for name, per_device in backends.status().items():
        cells = []
        for dev in ("cpu", "cuda"):
            reason = per_device[dev]
            if reason is None:
                cells.append("usable")
            else:
                notes.append(f"  {name} on {dev}: {reason}")
                cells.append("no (see below)")
        print(f"{name:<10} {cells[0]:<14} {cells[1]}")
    if notes:
        print("\nwhy not:")
        print("\n".join(notes))
    if bad_setting is not None:
        print(f"fastmotion info: error: {bad_setting}", file=sys.stderr)
        return 1
    return 0

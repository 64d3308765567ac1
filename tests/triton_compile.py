"""Compile Triton kernels for a Hopper GPU (sm_90) without a GPU.

TRITON_INTERPRET runs kernels as numpy and cannot catch what only the real compiler rejects
(loop-carried type changes, unsupported ops, register blowups). The triton wheel ships ptxas,
so the whole pipeline down to a cubin runs on any Linux machine. The test suite sets
TRITON_INTERPRET=1, under which kernels are not JITFunctions, so compilation runs in a fresh
subprocess without it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r"""
import importlib, json, sys
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
specs = json.loads(sys.argv[1])
for spec in specs:
    mod = importlib.import_module(spec["module"])
    fn = getattr(mod, spec["kernel"])
    constexprs = {k: (getattr(tl, v[3:]) if isinstance(v, str) and v.startswith("tl.") else v)
                  for k, v in spec["constexprs"].items()}
    src = ASTSource(fn=fn, signature=spec["signature"], constexprs=constexprs)
    options = {"num_warps": spec.get("num_warps", 4), **spec.get("options", {})}
    out = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    assert len(out.asm["cubin"]) > 0
    print(spec["kernel"], "ok", "regs", getattr(out, "n_regs", "?"), "spills", getattr(out, "n_spills", "?"))
"""


def compile_for_sm90(specs):
    """Compile each spec ``{"module", "kernel", "signature", "constexprs", "num_warps", "options"}``
    to a cubin (``options``: extra compile options such as ``enable_fp_fusion``; optional).

    Triton dtypes in constexprs are written as strings ``"tl.float32"``. Skips with the reason
    when triton or its NVIDIA backend (ptxas) is unavailable here."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(specs)], capture_output=True, text=True,
                          env=env, timeout=600)
    if proc.returncode != 0:
        if "ptxas" in proc.stderr and ("not found" in proc.stderr or "No such file" in proc.stderr):
            pytest.skip("ptxas not available for the Triton AOT compile check")
        raise AssertionError(f"Triton compile for sm_90 failed:\n{proc.stderr[-4000:]}")
    return proc.stdout

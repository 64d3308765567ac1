"""The model accuracy tests once more under each oneDNN instruction set this CPU has.

oneDNN picks its convolution kernels (and so their blocking and summation order) by instruction
set, and machines of this project's kind have AVX-512 (with bfloat16) or AVX2 only; the float32
accuracy tests must hold on both. ``ONEDNN_MAX_CPU_ISA`` is read once when oneDNN starts, so each
instruction set runs the tests in a fresh interpreter. The plain test run covers the CPU's best
instruction set (AVX512_CORE_BF16 or above where the CPU has it).
"""
import os
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ACCURACY_TESTS = ["tests/models/test_backends.py", "-k", "float32"]

# ONEDNN_MAX_CPU_ISA value -> how to tell the CPU has it.
ISAS = {
    "AVX2": "_is_avx2_supported",
    "AVX512_CORE": "_is_avx512_supported",
}


def _cpu_has(isa: str):
    check = getattr(torch.cpu, ISAS[isa], None)
    if check is None:
        return None
    return bool(check())


@pytest.mark.parametrize("isa", list(ISAS))
def test_model_accuracy_under_onednn_isa(isa):
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        pytest.skip(f"this run already sets ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']}")
    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch is built without oneDNN")
    has = _cpu_has(isa)
    if has is None:
        pytest.skip(f"torch.cpu.{ISAS[isa]} is missing: cannot tell whether this CPU has {isa}")
    if not has:
        pytest.skip(f"this CPU has no {isa}")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ACCURACY_TESTS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"ONEDNN_MAX_CPU_ISA={isa}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, proc.stdout[-2000:]

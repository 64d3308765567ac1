"""`fastmotion info` tells the truth about this machine."""
import subprocess
import sys

import torch

from fastmotion import _ext, backends


def test_info_reports_backends_truthfully():
    proc = subprocess.run([sys.executable, "-m", "fastmotion.cli", "info"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"torch      {torch.__version__}" in out
    module, err = _ext.load()
    if module is None:
        assert "extension  not loaded" in out
    else:
        assert "extension  " + module.__file__ in out
    table = out.split("CUDA tensors", 1)[1].split("\n\n", 1)[0]  # the backend x device table
    rows = {line.split()[0]: line for line in table.strip().splitlines()}
    assert set(rows) == set(backends.BACKENDS)
    cpu_usable = backends.unavailable_reason("cpu", "cpu") is None
    assert rows["cpu"].split()[1] == ("usable" if cpu_usable else "no")
    assert rows["reference"].split()[1] == "usable"
    if not torch.cuda.is_available():
        assert "no CUDA device is visible" in out
    from fastmotion.models import winograd_conv

    assert ("float32 CPU inference convolutions: Winograd" in out) == winograd_conv.available()
    from fastmotion.inference.animator import cpu_has_bf16

    assert ("bfloat16 CPU inference convolutions: Winograd" in out) == (
        cpu_has_bf16() and winograd_conv.available(torch.bfloat16))
    assert ("bfloat16 CPU inference convolutions: none" in out) == (not cpu_has_bf16())


def test_use_backend_rejects_unknown_name():
    import pytest

    with pytest.raises(ValueError, match="use_backend"):
        with backends.use_backend("gpu"):
            pass


def _info(env_value=None, **popen):
    import os

    env = dict(os.environ)
    env.pop("FASTMOTION_BACKEND", None)
    if env_value is not None:
        env["FASTMOTION_BACKEND"] = env_value
    return subprocess.Popen([sys.executable, "-m", "fastmotion.cli", "info"], env=env, text=True, **popen)


def test_info_reports_a_bad_backend_setting_without_traceback():
    proc = _info("bogus", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in err and "Traceback" not in out
    assert err.strip().splitlines() == [err.strip()]  # one line
    assert "FASTMOTION_BACKEND" in err and "'bogus'" in err
    assert "backend    invalid:" in out and "'bogus'" in out
    assert "reference  usable" in out  # the rest of the diagnosis is still printed


def test_info_into_a_closed_pipe_is_quiet():
    """`fastmotion info | head -1`: the reader goes away before the output is written."""
    proc = _info(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child (still importing torch) writes anything
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 0, err
    assert err == ""

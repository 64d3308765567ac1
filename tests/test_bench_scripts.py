"""The GPU session's scripts must not rot between GPU sessions: bench/profile_kernels.py runs
here on small shapes and reports the kernels it is meant to find."""
import json

from bench import profile_kernels
from fastmotion import backends


def test_profile_kernels_reports_each_providers_kernels(tmp_path, capsys):
    out = tmp_path / "kernels.json"
    assert profile_kernels.main(["--small", "--iters", "1", "--only", "grid_sample", "--out", str(out)]) == 0
    results = {r["provider"]: r for r in json.loads(out.read_text())}
    # the reference of grid_sample is PyTorch's F.grid_sample
    assert "reference" in results and results["reference"]["wall_us_per_call"] > 0
    assert any("grid_sampler_2d_backward" in k["name"] for k in results["reference"]["kernels"])
    if backends.unavailable_reason("cpu", "cpu", "grid_sample_forward") is None:
        names = [k["name"] for k in results["cpu"]["kernels"]]
        assert "fastmotion::grid_sample_forward" in names and "fastmotion::grid_sample_backward" in names
    assert "grid_sample" in capsys.readouterr().out


def test_profile_inference_prints_the_operator_table(capsys):
    from bench import profile_inference

    assert profile_inference.main(["--config", "taichi", "--size", "64", "--dtype", "fp32", "--rows", "5"]) == 0
    out = capsys.readouterr().out
    assert "taichi 64x64 fp32" in out and "ms per frame" in out and "Self CPU" in out

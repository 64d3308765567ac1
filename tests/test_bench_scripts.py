"""The GPU session's scripts must not rot between GPU sessions: bench/profile_kernels.py runs
here on small shapes and reports the kernels it is meant to find."""
import json
import os
import subprocess

import pytest

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


def test_every_number_of_the_readme_benchmark_section_is_in_docs_performance():
    """The README summarises; docs/performance.md holds each number with the command behind it."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Benchmarks"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    docs = (root / "docs" / "performance.md").read_text()
    prose = re.sub(r"```.*?```", "", section, flags=re.S)  # commands, not measurements
    numbers = re.findall(r"\d+\.\d+x", prose)
    assert len(numbers) >= 10
    missing = [n for n in numbers if n not in docs]
    assert missing == []


def test_compare_script_pairs_bench_rows_with_pytest_benchmark_rows(tmp_path, capsys):
    import json

    from bench import compare

    (tmp_path / "cli.json").write_text(json.dumps({"rows": [
        {"op": "grid_sample", "case": "1x2x4x4", "mode": "fwd", "provider": "cpu", "status": "ok", "median_ms": 2.0},
        {"op": "grid_sample", "case": "1x2x4x4", "mode": "fwd", "provider": "cuda", "status": "skipped"}]}))
    (tmp_path / "pb.json").write_text(json.dumps({"benchmarks": [
        {"extra_info": {"op": "grid_sample", "case": "1x2x4x4", "mode": "fwd", "provider": "cpu"},
         "stats": {"median": 0.0025}}]}))
    assert compare.main([str(tmp_path / "cli.json"), str(tmp_path / "pb.json")]) == 0
    out = capsys.readouterr().out
    assert "0.80" in out and "1 cases; median ratio 0.80; 0 within 10%" in out


@pytest.mark.parametrize("script", ["bench/gpu_check.sh", "bench/gpu_export_check.sh"])
def test_gpu_scripts_parse(script):
    """The GPU scripts only run on a lent GPU machine: at least keep them valid bash here."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(["bash", "-n", os.path.join(root, script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

"""`fastmotion bench`: a small run writes a valid results.json and report.md whose numbers are
consistent with each other; bad arguments give one line and exit code 1."""
import json

import pytest
import torch

from fastmotion import backends, cli
from fastmotion.benchmark import report


def _bench(tmp_path, *args):
    out = tmp_path / "out"
    code = cli.main(["bench", *args, "--out", str(out), "--no-plot"])
    return code, out


def test_quick_ops_run_writes_results_and_report(tmp_path, capsys):
    code, out = _bench(tmp_path, "ops", "--quick", "--ops", "grid_sample", "--rounds", "3", "--device", "cpu")
    assert code == 0
    doc = report.read_json(out / "results.json")
    rows = doc["rows"]
    assert {r["op"] for r in rows} == {"grid_sample"}
    assert doc["environment"]["device"] == "cpu" and doc["copy_bandwidth_gbps"] > 0
    ok = {(r["provider"], r["mode"]): r for r in rows if r["status"] == "ok"}
    expected = {("reference", "fwd"), ("reference", "fwd+bwd")}
    if backends.unavailable_reason("cpu", "cpu", "grid_sample_forward") is None:
        expected |= {("cpu", "fwd"), ("cpu", "fwd+bwd")}
    assert expected <= set(ok)
    # the quick case is 1x32x64x64 float32 with a 1x64x64x2 grid; output = input size
    img, grid = 32 * 64 * 64 * 4, 64 * 64 * 2 * 4
    assert ok["reference", "fwd"]["bytes_moved"] == 2 * img + grid
    assert ok["reference", "fwd+bwd"]["bytes_moved"] == (2 * img + grid) + img + 2 * (img + grid)
    for r in ok.values():
        assert r["q1_ms"] <= r["median_ms"] <= r["q3_ms"] and r["rounds"] == 3
        assert r["gbps"] == pytest.approx(r["bytes_moved"] / (r["median_ms"] * 1e-3) / 1e9, rel=1e-2)
        assert r["peak_mb"] >= 0 and r["hardware"] and r["date"] and r["versions"]
        assert r["command"].startswith("fastmotion bench ops --device cpu")
    ref = ok["reference", "fwd+bwd"]["median_ms"]
    for r in ok.values():
        if r["mode"] == "fwd+bwd":
            assert r["speedup_vs_reference"] == pytest.approx(ref / r["median_ms"], rel=1e-2)
    skipped = {r["provider"]: r["reason"] for r in rows if r["status"] == "skipped"}
    assert "compile" in skipped and "--compile none" in skipped["compile"]  # --quick runs no torch.compile
    assert "native" in skipped  # F.grid_sample is the reference itself
    md = (out / "report.md").read_text()
    assert "### grid_sample" in md and "fastmotion bench ops" in md and "reference (F.grid_sample)" in md
    assert str(out / "results.json") in capsys.readouterr().out


def test_every_registered_op_runs_at_its_tiny_size(tmp_path):
    code, out = _bench(tmp_path, "ops", "--tiny", "--rounds", "1", "--device", "cpu")
    assert code == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    from fastmotion.ops import registry

    assert [r for r in rows if r["status"] == "failed"] == []
    for name in registry.OPS:
        assert {(r["mode"]) for r in rows if r["op"] == name and r["provider"] == "reference"
                and r["status"] == "ok"} == {"fwd", "fwd+bwd"}


def test_charts_are_written_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert cli.main(["bench", "ops", "--tiny", "--ops", "compose_flow", "--rounds", "1", "--device", "cpu",
                     "--out", str(out)]) == 0
    for name in ("speedup_ops.png", "bandwidth_ops.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "![speedup_ops](speedup_ops.png)" in (out / "report.md").read_text()


def test_suites_that_cannot_run_say_why(tmp_path):
    code, out = _bench(tmp_path, "export", "--device", "cpu")
    assert code == 0
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["status"] == "skipped" and "fastmotion.export" in row["reason"]
    assert "fastmotion.export" in (out / "report.md").read_text()


@pytest.mark.parametrize("args,message", [
    (["nonsense"], "SUITE must be one of"),
    (["ops", "--dtype", "fp8"], "--dtype must be one of"),
    (["ops", "--ops", "no_such_op"], "--ops: unknown op 'no_such_op'"),
    (["ops", "--rounds", "0"], "--rounds must be a positive integer"),
    (["ops", "--quick", "--tiny"], "--quick and --tiny"),
    (["ops", "--compile", "sometimes"], "--compile must be one of"),
])
def test_bad_arguments_give_one_line(tmp_path, capsys, args, message):
    code, out = _bench(tmp_path, *args)
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.strip().count("\n") == 0
    assert not out.exists()


def test_out_that_is_a_file_gives_one_line(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    assert cli.main(["bench", "ops", "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert "--out must be a folder" in err and err.strip().count("\n") == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_gives_one_line(tmp_path, capsys):
    code, _ = _bench(tmp_path, "ops", "--device", "cuda")
    err = capsys.readouterr().err
    assert code == 1 and "no CUDA device" in err and err.strip().count("\n") == 0


def test_pytest_benchmark_files_become_report_rows(tmp_path):
    """The train / export suites read the Trainer's and exporter's pytest-benchmark files this way."""
    from fastmotion.benchmark import pytest_suite

    suite = tmp_path / "bench_fake.py"
    suite.write_text(
        "import time, pytest\n"
        "@pytest.mark.parametrize('provider,seconds', [('reference', 0.004), ('fast', 0.001)])\n"
        "def test_step(benchmark, provider, seconds):\n"
        "    benchmark.group = 'step'\n"
        "    benchmark.pedantic(time.sleep, args=(seconds,), rounds=3, iterations=1)\n"
        "    benchmark.extra_info.update(provider=provider, peak_MB=1.5, videos_per_s=8 / seconds)\n"
        "def test_gpu_only():\n"
        "    pytest.skip('CUDA not available')\n")
    rows = pytest_suite.run(str(suite), "train", "cpu", quick=True, rounds=None, timeout=120)
    ok = {r["provider"]: r for r in rows if r["status"] == "ok"}
    assert set(ok) == {"reference", "fast"}
    assert 3.5 < ok["reference"]["median_ms"] < 40 and ok["fast"]["peak_mb"] == 1.5
    assert ok["fast"]["speedup_vs_reference"] == pytest.approx(ok["reference"]["median_ms"] / ok["fast"]["median_ms"],
                                                              rel=1e-2)
    assert [r["reason"] for r in rows if r["status"] == "skipped"] == ["CUDA not available"]


def test_missing_pytest_benchmark_file_says_so():
    from fastmotion.benchmark import pytest_suite

    (row,) = pytest_suite.run("bench/no_such_suite.py", "export", "cpu", quick=True, rounds=None)
    assert row["status"] == "skipped" and "not found" in row["reason"]

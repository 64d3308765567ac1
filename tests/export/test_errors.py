"""Bad input to the exporter: clear errors naming what to change or install, one line and exit 1
on the command line, and no half-written export folder."""
import os
import sys

import pytest
import torch

import fastmotion.export as fx
from fastmotion import cli
from fastmotion.export import formats
from tests.export.helpers import narrow_config, networks

pytest.importorskip("onnx", reason="onnx is not installed (pip install fastmotion[export])")


def _cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _hide_module(monkeypatch, name):
    """Make ``import name`` fail as if the package were not installed (None in sys.modules)."""
    monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("opset", [11, 15])
def test_an_opset_below_gridsample_is_refused(tmp_path, capsys, opset):
    code, _, err = _cli(capsys, "export", "--out", tmp_path / "x", "--opset", opset)
    assert code == 1 and err.count("\n") == 1
    assert f"opset {opset} is too low" in err and "GridSample" in err and "--opset 16" in err
    assert not (tmp_path / "x").exists()


def test_tensorrt_refuses_opset_20_whose_linear_mode_it_reads_as_nearest(tmp_path):
    with pytest.raises(ValueError, match="reads as nearest"):
        formats.check_opset(20, "tensorrt")
    assert formats.check_opset(19, "tensorrt") == 19


@pytest.mark.parametrize("module, hint", [("onnxscript", "pip install fastmotion[export]"),
                                          ("onnx", "pip install fastmotion[export]")])
def test_a_missing_export_dependency_names_the_extra(tmp_path, capsys, monkeypatch, module, hint):
    _hide_module(monkeypatch, module)
    code, _, err = _cli(capsys, "export", "--out", tmp_path / "x")
    assert code == 1 and err.count("\n") == 1
    assert f"'{module}'" in err and hint in err
    assert not (tmp_path / "x").exists()


def test_onnxruntime_missing_names_the_extra(tmp_path, monkeypatch):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"format": "onnx", "frame_size": [64, 64], "graphs": '
                                          '{"keypoint_detector": {"outputs": []}, "source_encoder": {}, '
                                          '"frame_generator": {}}}')
    _hide_module(monkeypatch, "onnxruntime")
    with pytest.raises(fx.MissingDependency, match=r"fastmotion\[export\]"):
        fx.OnnxRuntimeAnimator(folder)


def test_tensorrt_without_tensorrt_or_a_gpu_says_what_is_missing(tmp_path, capsys, monkeypatch):
    try:
        import tensorrt  # noqa: F401
        have_trt = True
    except ImportError:
        have_trt = False
    if have_trt and torch.cuda.is_available():
        pytest.skip("tensorrt and a GPU are present: the error path does not apply (tests/export/test_tensorrt.py)")
    code, _, err = _cli(capsys, "export", "--format", "tensorrt", "--out", tmp_path / "x")
    assert code == 1 and err.count("\n") == 1
    assert ("pip install fastmotion[tensorrt]" in err) if not have_trt else ("CUDA GPU" in err)
    assert not (tmp_path / "x").exists()


def test_an_unsupported_config_option_is_named(tmp_path, capsys):
    config = narrow_config("shapes")
    config["model_params"]["generator_params"]["interpolation_mode"] = "bicubic"
    path = tmp_path / "bad.yaml"
    import yaml
    path.write_text(yaml.safe_dump(config))
    code, _, err = _cli(capsys, "export", "--config", path, "--out", tmp_path / "x")
    # the config is refused when it loads (fastmotion/config/validate.py), naming the key and the choices
    assert code == 1 and err.count("\n") == 1 and "interpolation_mode" in err and "bicubic" in err
    config = narrow_config("shapes")
    config["model_params"]["kp_detector_params"]["use_jacobian"] = True
    with pytest.raises(fx.UnsupportedModel, match="use_jacobian"):
        fx.export(tmp_path / "y", config=config)


def test_networks_that_disagree_are_refused(tmp_path):
    kp_detector, _ = networks(narrow_config("shapes"))
    _, generator = networks(narrow_config("nemo"))  # 10 keypoints against 4
    with pytest.raises(fx.UnsupportedModel, match="num_kp"):
        fx.export(tmp_path / "x", kp_detector=kp_detector, generator=generator)


def test_bad_arguments(tmp_path, capsys):
    assert "frame_size 50x50" in _cli(capsys, "export", "--out", tmp_path / "x", "--frame-size", "50")[2]
    assert "no such file" in _cli(capsys, "export", "--out", tmp_path / "x", "--checkpoint", tmp_path / "none")[2]
    with pytest.raises(ValueError, match="format must be one of"):
        fx.export(tmp_path / "x", format="tflite")
    with pytest.raises(ValueError, match="dtype must be one of"):
        fx.export(tmp_path / "x", dtype="bf16")
    with pytest.raises(ValueError, match="graphs must be"):
        fx.export(tmp_path / "x", graphs=("decoder",))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    code, _, err = _cli(capsys, "export", "--out", tmp_path / "full")
    assert code == 1 and "not empty" in err and (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_a_failed_export_leaves_no_folder_and_keeps_an_earlier_one(tmp_path, monkeypatch):
    out = tmp_path / "export"
    config = narrow_config("shapes")
    kp_detector, generator = networks(config)
    fx.export(out, config=config, kp_detector=kp_detector, generator=generator, graphs=("source_encoder",))
    before = sorted(os.listdir(out))
    calls = []
    real = torch.onnx.export

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) >= 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        fx.export(out, config=config, kp_detector=kp_detector, generator=generator,
                  graphs=("source_encoder", "keypoint_detector"))
    assert sorted(os.listdir(out)) == before
    assert fx.read_manifest(out)["graphs"].keys() == {"source_encoder"}
    assert sorted(os.listdir(tmp_path)) == ["export"], "temporary folders left behind"
    with pytest.raises(RuntimeError, match="disk full"):
        fx.export(tmp_path / "new", config=config, kp_detector=kp_detector, generator=generator,
                  graphs=("source_encoder",))
    assert not (tmp_path / "new").exists() and sorted(os.listdir(tmp_path)) == ["export"]


def test_the_command_exports_the_default_model(tmp_path, capsys, monkeypatch):
    """No --config: the built-in demo model, or the shapes config with random weights while the demo
    assets are not installed (and the output says so)."""
    from fastmotion.inference import demo
    monkeypatch.setenv(demo.ENV_VAR, str(tmp_path / "no-demo-here"))
    code, out, err = _cli(capsys, "export", "--out", tmp_path / "x", "--frame-size", "32x32")
    assert code == 0, err
    assert "random weights" in out and "built-in demo model is not installed" in out
    manifest = fx.read_manifest(tmp_path / "x")
    assert manifest["random_weights"] and manifest["frame_size"] == [32, 32]
    for graph in fx.GRAPHS:
        assert f"wrote {tmp_path / 'x' / (graph + '.onnx')}" in out
    assert sorted(os.listdir(tmp_path)) == ["x"]

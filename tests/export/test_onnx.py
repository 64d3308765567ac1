"""ONNX export of every packaged config (narrow layers, random weights, smallest frame size):
onnx.checker, onnxruntime (CPU) against the PyTorch networks on the fast path (fused kernels,
an implementation independent of the exported reference math), TensorRT's operator list, the
three graphs chained against the Animator, real frames, fp16 and a dynamic batch."""
import copy
import os

import pytest
import torch

import fastmotion.export as fx
from fastmotion.export import graphs as gr
from fastmotion.export.tensorrt_onnx_ops import MAX_OPSET, MIN_OPSET, operator_support
from fastmotion.inference import Animator
from tests.export.helpers import CONFIGS, export_narrow, moving_gif_frames, onnx_session, run_session

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install fastmotion[export])")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install fastmotion[export])")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install fastmotion[export])")

FP32_TOL = 1e-4
_EXPORTS = {}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(name)``: (folder, kp_detector, generator, config) of the narrow config, exported once."""
    def get(name, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in _EXPORTS:
            folder = str(tmp_path_factory.mktemp(f"onnx-{name}") / "export")
            _EXPORTS[key] = export_narrow(folder, name, **kwargs)
        return _EXPORTS[key]
    return get


def _frames(n, size, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=gen)


def _pytorch_outputs(kp_detector, generator, source, driving):
    """Every graph's inputs and outputs computed by the networks as they are (default backend)."""
    with torch.no_grad():
        kp_s = kp_detector.detect(source)
        kp_d = kp_detector.detect(driving)
        skips = generator.encode_source(source)
        pred = generator.decode(skips, kp_d, kp_s)["video_prediction"]
    kp = lambda k: [k["mean"]] + ([k["var"]] if "var" in k else [])  # noqa: E731
    return {"keypoint_detector": ([driving], kp(kp_d)),
            "source_encoder": ([source], skips[1:]),
            "frame_generator": ([source, *skips[1:], *kp(kp_s), *kp(kp_d)], [pred])}


def _max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("name", CONFIGS)
def test_graphs_pass_the_onnx_checker_and_name_their_io(exported, name):
    folder, kp_detector, generator, _ = exported(name)
    manifest = fx.read_manifest(folder)
    names = gr.io_names(kp_detector, generator)
    for graph in gr.GRAPHS:
        model = onnx.load(os.path.join(folder, manifest["graphs"][graph]["file"]))
        onnx.checker.check_model(model, full_check=True)
        assert [i.name for i in model.graph.input] == names[graph][0]
        assert [o.name for o in model.graph.output] == names[graph][1]
        assert [i["name"] for i in manifest["graphs"][graph]["inputs"]] == names[graph][0]
        assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
        assert all(n.domain in ("", "ai.onnx") for n in model.graph.node), "custom-domain node in the graph"
    assert manifest["opset"] == fx.DEFAULT_OPSET and manifest["dtype"] == "fp32"


@pytest.mark.parametrize("name", CONFIGS)
def test_onnxruntime_matches_pytorch(exported, name):
    folder, kp_detector, generator, _ = exported(name)
    manifest = fx.read_manifest(folder)
    size = tuple(manifest["frame_size"])
    cases = _pytorch_outputs(kp_detector, generator, _frames(1, size, 1), _frames(1, size, 2))
    for graph, (inputs, expected) in cases.items():
        got = run_session(onnx_session(os.path.join(folder, manifest["graphs"][graph]["file"])), inputs)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            assert _max_err(g, e) <= FP32_TOL, f"{name} {graph}: max error {_max_err(g, e):.2e}"


def _attr(node, key, default=None):
    for a in node.attribute:
        if a.name == key:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


@pytest.mark.parametrize("name", CONFIGS)
def test_every_node_type_is_supported_by_tensorrt(exported, name):
    """Each node type against TensorRT's ONNX operator list (fastmotion/export/tensorrt_onnx_ops.tsv,
    TensorRT 10.0) and the restrictions that apply to these graphs."""
    folder, _, _, _ = exported(name)
    manifest = fx.read_manifest(folder)
    table = operator_support()
    for graph in gr.GRAPHS:
        model = onnx.shape_inference.infer_shapes(onnx.load(os.path.join(folder, manifest["graphs"][graph]["file"])))
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert MIN_OPSET <= opset <= MAX_OPSET
        types = sorted({n.op_type for n in model.graph.node})
        unsupported = [t for t in types if t not in table or not table[t].supported]
        assert not unsupported, f"{name} {graph}: node types TensorRT does not parse: {unsupported}"
        ranks = {v.name: len(v.type.tensor_type.shape.dim)
                 for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
        constants = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                                 for o in n.output}
        for node in model.graph.node:
            if node.op_type == "GridSample":
                assert ranks.get(node.input[0]) == 4, "TensorRT's GridSample takes 4-D input only"
                assert _attr(node, "mode") == "bilinear"  # opset <= 19 spelling; 'linear' would be nearest
            elif node.op_type == "Resize":
                assert _attr(node, "mode", "nearest") in ("nearest", "linear")
                assert _attr(node, "coordinate_transformation_mode", "half_pixel") in (
                    "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
                assert _attr(node, "nearest_mode", "round_prefer_floor") in (
                    "floor", "ceil", "round_prefer_floor", "round_prefer_ceil")
                assert not _attr(node, "antialias", 0)
            elif node.op_type in ("Slice", "Squeeze", "Unsqueeze", "ReduceMax") and len(node.input) > 1:
                axes = node.input[3] if node.op_type == "Slice" and len(node.input) > 3 else \
                    (node.input[1] if node.op_type != "Slice" else "")
                assert not axes or axes in constants, f"{node.op_type} axes must be an initializer for TensorRT"
            elif node.op_type == "Conv":
                assert node.input[1] in constants, "TensorRT needs Conv weights as initializers"


def _animator_frames(kp_detector, generator, config, source, driving):
    animator = Animator(kp_detector, generator, config, device="cpu", frame_size=tuple(source.shape[-2:]))
    animator.set_source(source[0])
    return animator.animate(driving)


def _exported_frames(folder, source, driving):
    chain = fx.OnnxRuntimeAnimator(folder)
    chain.set_source(source[:1])
    return torch.cat([chain(driving[i:i + 1]) for i in range(driving.shape[0])])


@pytest.mark.parametrize("name", CONFIGS)
def test_chained_graphs_reproduce_the_animator(exported, name):
    folder, kp_detector, generator, config = exported(name)
    size = tuple(fx.read_manifest(folder)["frame_size"])
    source, driving = _frames(1, size, 3), _frames(3, size, 4)
    expected = _animator_frames(kp_detector, generator, config, source, driving)
    got = _exported_frames(folder, source, driving)
    assert got.shape == expected.shape
    assert _max_err(got, expected) <= FP32_TOL


def test_real_frames_moving_gif(exported):
    folder, kp_detector, generator, config = exported("moving-gif")
    size = tuple(fx.read_manifest(folder)["frame_size"])
    sources, driving = moving_gif_frames(size)
    source, driving = sources[3:4], driving[::5]
    expected = _animator_frames(kp_detector, generator, config, source, driving)
    got = _exported_frames(folder, source, driving)
    assert _max_err(got, expected) <= FP32_TOL
    assert expected.std() > 0.01  # the frames carry content, not a constant image


def test_dynamic_batch_runs_batch_1_and_4(exported):
    folder, kp_detector, generator, _ = exported("shapes", dynamic_batch=True)
    manifest = fx.read_manifest(folder)
    assert manifest["dynamic_batch"] and manifest["graphs"]["frame_generator"]["inputs"][0]["shape"][0] == "batch"
    size = tuple(manifest["frame_size"])
    for batch in (1, 4):
        cases = _pytorch_outputs(kp_detector, generator, _frames(batch, size, 5), _frames(batch, size, 6))
        for graph, (inputs, expected) in cases.items():
            got = run_session(onnx_session(os.path.join(folder, manifest["graphs"][graph]["file"])), inputs)
            for g, e in zip(got, expected):
                assert g.shape[0] == batch and _max_err(g, e) <= FP32_TOL


def test_fp16_export_within_twice_pytorch_half_error(exported):
    """fp16 graphs: the error against the float64 model is at most twice that of PyTorch running the
    same reference math in float16, plus 2e-3 (one float16 rounding step at 1.0 is ~1e-3)."""
    folder, kp_detector, generator, _ = exported("shapes", dtype="fp16")
    manifest = fx.read_manifest(folder)
    assert all(i["dtype"] == "float16" for g in manifest["graphs"].values() for i in g["inputs"])
    size = tuple(manifest["frame_size"])
    ref = {k: m.double() for k, m in gr.graph_modules(copy.deepcopy(kp_detector), copy.deepcopy(generator)).items()}
    half = {k: m.half() for k, m in gr.graph_modules(copy.deepcopy(kp_detector), copy.deepcopy(generator)).items()}
    cases = _pytorch_outputs(kp_detector, generator, _frames(1, size, 7), _frames(1, size, 8))
    for graph, (inputs, _) in cases.items():
        with torch.no_grad():
            exact = ref[graph](*[t.double() for t in inputs])
            torch_half = half[graph](*[t.half() for t in inputs])
        exact = exact if isinstance(exact, tuple) else (exact,)
        torch_half = torch_half if isinstance(torch_half, tuple) else (torch_half,)
        got = run_session(onnx_session(os.path.join(folder, manifest["graphs"][graph]["file"])),
                          [t.half() for t in inputs])
        declared = [o["dtype"] for o in manifest["graphs"][graph]["outputs"]]
        for g, h, e, dtype in zip(got, torch_half, exact, declared):
            assert str(g.dtype) == f"torch.{dtype}"  # the keypoints' softmax and moments come out in float32
            assert _max_err(g, e) <= 2 * _max_err(h, e) + 2e-3, f"{graph}: {_max_err(g, e):.2e} vs {_max_err(h, e):.2e}"


@pytest.mark.parametrize("opset, mode", [(16, "bilinear"), (20, "linear")])
def test_other_opsets_spell_gridsample_as_their_spec_says(exported, opset, mode):
    """Opset 16 (GridSample's first) works; opset 20 spells the mode 'linear' (correct ONNX, read right by
    onnxruntime) and the manifest marks it as not for TensorRT, whose parser reads it as nearest."""
    folder, kp_detector, generator, _ = exported("shapes", opset=opset, graphs=("frame_generator",))
    manifest = fx.read_manifest(folder)
    assert manifest["opset"] == opset and manifest["tensorrt_compatible"] == (opset <= 19)
    model = onnx.load(os.path.join(folder, "frame_generator.onnx"))
    assert {_attr(n, "mode") for n in model.graph.node if n.op_type == "GridSample"} == {mode}
    size = tuple(manifest["frame_size"])
    inputs, expected = _pytorch_outputs(kp_detector, generator, _frames(1, size, 9), _frames(1, size, 10))[
        "frame_generator"]
    got = run_session(onnx_session(os.path.join(folder, "frame_generator.onnx")), inputs)
    assert _max_err(got[0], expected[0]) <= FP32_TOL


def test_the_demo_model_exports_and_reproduces_its_animator(tmp_path, monkeypatch):
    """The default export: the built-in demo model (config + checkpoint) when installed, else a
    stand-in with the same layout (tests/inference/standin.py) — the checkpoint-loading path."""
    from fastmotion.inference import demo
    from tests.inference.standin import make_demo_standin, shapes_clip
    if not all(os.path.isfile(os.path.join(demo.PACKAGED_DIR, f)) for f in demo.FILES.values()):
        monkeypatch.setenv(demo.ENV_VAR, make_demo_standin(str(tmp_path / "standin")))
    else:
        monkeypatch.delenv(demo.ENV_VAR, raising=False)
    manifest = fx.export(tmp_path / "demo")
    assert manifest["model"] == "the built-in demo model" and not manifest["random_weights"]
    animator = Animator.from_checkpoint(device="cpu")
    size = tuple(manifest["frame_size"])
    assert size == animator.frame_size
    clip = torch.from_numpy(shapes_clip(4, size=size[0])).permute(0, 3, 1, 2).float() / 255
    animator.set_source(clip[0])
    expected = animator.animate(clip[1:])
    chain = fx.OnnxRuntimeAnimator(tmp_path / "demo")
    chain.set_source(clip[:1])
    got = torch.cat([chain(clip[i:i + 1]) for i in range(1, 4)])
    assert _max_err(got, expected) <= FP32_TOL

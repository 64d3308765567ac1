"""Deployment: the three graphs of streaming inference as ONNX, AOTInductor packages or TensorRT
engines, and animators that run them.

    import fastmotion.export as fx
    fx.export("out/onnx", format="onnx")                     # the built-in demo model
    fx.export("out/vox", config="vox", checkpoint="vox.pth.tar", dynamic_batch=True)
    animator = fx.OnnxRuntimeAnimator("out/onnx")
    animator.set_source(source)                              # (B, C, H, W) in [0, 1]
    frame = animator(driving)

Graphs (see :mod:`fastmotion.export.graphs`): ``keypoint_detector`` (image -> kp mean, var),
``source_encoder`` (source -> encoder maps), ``frame_generator`` (source, maps, source keypoints,
normalized driving keypoints -> frame). ``manifest.json`` names their inputs, outputs, shapes and
dtypes, the opset and the config.
"""
from fastmotion.export.deps import MissingDependency
from fastmotion.export.files import read_manifest
from fastmotion.export.formats import DEFAULT_OPSET, FORMATS, MIN_OPSET, export
from fastmotion.export.graphs import GRAPHS, graph_modules
from fastmotion.export.model import UnsupportedModel, load_export_model
from fastmotion.export.runtime import AOTIAnimator, ExportedAnimator, OnnxRuntimeAnimator
from fastmotion.export.tensorrt import TensorRTAnimator

__all__ = ["export", "FORMATS", "DEFAULT_OPSET", "MIN_OPSET", "GRAPHS", "graph_modules", "load_export_model",
           "read_manifest", "MissingDependency", "UnsupportedModel", "ExportedAnimator", "OnnxRuntimeAnimator",
           "AOTIAnimator", "TensorRTAnimator"]

"""TensorRT engines built from the exported ONNX graphs, and :class:`TensorRTAnimator`, which
runs them with torch CUDA tensors as the engines' input and output buffers.

Built with the ``tensorrt`` Python API (TensorRT 10): the ONNX parser reads each graph (GridSample
4-D, mode ``bilinear``: opset <= 19, see :mod:`fastmotion.export.formats`), ``--dtype fp16`` sets
the FP16 builder flag (TensorRT picks half-precision kernels where it is faster; inputs and
outputs stay float32), and a dynamic batch gets one optimization profile (1 .. max, optimum 1).
An engine is specific to the GPU model and TensorRT version it was built with.
"""
from __future__ import annotations

import os
from typing import Dict, List

import torch

from fastmotion.export.deps import MissingDependency, require
from fastmotion.export.graphs import GRAPHS
from fastmotion.export.runtime import ExportedAnimator


def check_tensorrt():
    """The ``tensorrt`` module, or a one-line error saying what is missing (the package or a GPU)."""
    trt = require("tensorrt", "TensorRT export")
    if not torch.cuda.is_available():
        raise MissingDependency("TensorRT needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is "
                                "False); export --format onnx here and build the engines on the GPU machine")
    return trt


def _torch_dtype(trt, dtype):
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.bool: torch.bool}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    return table[dtype]


def build_engines(folder: str, graphs: Dict[str, dict], fp16: bool, dynamic_batch: bool, max_batch: int,
                  log=None) -> Dict[str, dict]:
    """Build ``<graph>.engine`` next to each ``<graph>.onnx`` in ``folder``; returns the graphs'
    manifest entries with the engine file added."""
    trt = check_tensorrt()
    log = log or (lambda line: None)
    logger = trt.Logger(trt.Logger.WARNING)
    out = {}
    for name, entry in graphs.items():
        entry = dict(entry)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(os.path.join(folder, entry["file"])):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT's ONNX parser rejected {entry['file']}: {errors}")
        config = builder.create_builder_config()
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        else:  # float32 means float32: no TF32 tensor-core rounding in convolutions and matmuls
            config.clear_flag(trt.BuilderFlag.TF32)
        if dynamic_batch:
            profile = builder.create_optimization_profile()
            for i in range(network.num_inputs):
                tensor = network.get_input(i)
                rest = tuple(tensor.shape)[1:]
                profile.set_shape(tensor.name, (1,) + rest, (1,) + rest, (max_batch,) + rest)
            config.add_optimization_profile(profile)
        log(f"  {name}: building the TensorRT engine{' (fp16)' if fp16 else ''}")
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT could not build an engine from {entry['file']} (see its log above)")
        engine_file = f"{name}.engine"
        with open(os.path.join(folder, engine_file), "wb") as f:
            f.write(serialized)
        entry["engine"] = engine_file
        entry["tensorrt_version"] = trt.__version__
        out[name] = entry
    return out


class TensorRTAnimator(ExportedAnimator):
    """The TensorRT engines of a ``--format tensorrt`` export, run on ``device`` (a CUDA device)
    with torch tensors as buffers on the current torch CUDA stream."""

    format = "tensorrt"

    def __init__(self, folder, *, device="cuda", **kwargs):
        super().__init__(folder, **kwargs)
        trt = check_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"TensorRTAnimator: device must be a CUDA device, got {device!r}")
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engines, self.contexts, self._names = {}, {}, {}
        with torch.cuda.device(self.device):
            for name in GRAPHS:
                entry = self.manifest["graphs"][name]
                with open(os.path.join(self.folder, entry["engine"]), "rb") as f:
                    engine = runtime.deserialize_cuda_engine(f.read())
                if engine is None:
                    raise RuntimeError(f"TensorRTAnimator: could not load {entry['engine']} (built for another GPU "
                                       "or TensorRT version? rebuild with `fastmotion export --format tensorrt`)")
                self.engines[name] = engine
                self.contexts[name] = engine.create_execution_context()
                # inputs and outputs by name, in the manifest's (the ONNX graph's) order
                self._names[name] = ([i["name"] for i in entry["inputs"]], [o["name"] for o in entry["outputs"]])
                io = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
                if not set(self._names[name][0] + self._names[name][1]) <= io:
                    raise RuntimeError(f"TensorRTAnimator: {entry['engine']} does not have the inputs and outputs "
                                       "its manifest names; rebuild the export")

    def run(self, graph: str, inputs) -> List[torch.Tensor]:
        engine, context = self.engines[graph], self.contexts[graph]
        in_names, out_names = self._names[graph]
        keep = []
        for name, t in zip(in_names, inputs):
            t = t.to(self.device, _torch_dtype(self._trt, engine.get_tensor_dtype(name))).contiguous()
            keep.append(t)
            context.set_input_shape(name, tuple(t.shape))
            context.set_tensor_address(name, t.data_ptr())
        outputs = []
        for name in out_names:
            shape = tuple(context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=_torch_dtype(self._trt, engine.get_tensor_dtype(name)), device=self.device)
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRTAnimator: running the {graph} engine failed")
        return outputs

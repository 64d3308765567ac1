"""Writing the three graphs: ONNX (torch.onnx's dynamo exporter), AOTInductor packages, TensorRT
engines (built from the ONNX graphs); each format's folder carries a ``manifest.json``.

ONNX details that matter for deployment:
- The networks run on the reference backend, so every fused op is plain PyTorch and becomes
  standard ONNX ops (Softmax, MatMul, ReduceSum, Exp, Resize, GridSample, ...).
- ``GridSample`` is 4-D (the models are 2-D inside). Opsets 16-19 spell its mode ``bilinear``;
  opset 20 renamed it ``linear``, which TensorRT's ONNX parser reads as nearest
  (NVIDIA/TensorRT#4646), so the default opset is 18 and TensorRT engines need opset <= 19.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from typing import Dict, List, Optional, Sequence

import torch

from fastmotion._version import __version__
from fastmotion.export import graphs as gr
from fastmotion.export.deps import require
from fastmotion.export.files import MANIFEST, atomic_dir, write_json
from fastmotion.export.model import ExportModel, load_export_model

FORMATS = ("onnx", "aoti", "tensorrt")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
DEFAULT_OPSET = 18          # torch.onnx's own opset (no version conversion)
MIN_OPSET = 16              # GridSample appears in opset 16
MAX_BILINEAR_OPSET = 19     # from opset 20 GridSample's mode is spelled 'linear' (see the module docstring)
MAX_BATCH = 64              # upper end of the dynamic batch dimension


def check_opset(opset, fmt: str = "onnx") -> int:
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ValueError(f"opset must be an integer, got {opset!r}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too low: the warps need ONNX GridSample, which exists from opset "
                         f"{MIN_OPSET}; use --opset {MIN_OPSET} or higher (default {DEFAULT_OPSET})")
    if fmt == "tensorrt" and opset > MAX_BILINEAR_OPSET:
        raise ValueError(f"opset {opset} spells GridSample's bilinear mode 'linear', which TensorRT's ONNX parser "
                         f"reads as nearest (NVIDIA/TensorRT#4646); use --opset {MAX_BILINEAR_OPSET} or lower "
                         f"for TensorRT (default {DEFAULT_OPSET})")
    onnx = require("onnx", "ONNX export")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ValueError(f"opset {opset} is newer than the installed onnx package supports ({newest})")
    return opset


def check_dtype(dtype) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return dtype


@contextlib.contextmanager
def _quiet():
    """torch.onnx / torch.export print progress and warn about torchvision ops they skip: keep
    the command's output to what it says itself."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch._export",
                                              "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _dynamic_shapes(name: str, n_inputs: int, dynamic_batch: bool):
    if not dynamic_batch:
        return None
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    spec = tuple({0: batch} for _ in range(n_inputs))
    # the per-frame graph takes its inputs as *args: one pytree entry holding all of them
    return (spec,) if name == "frame_generator" else spec


def _prepare(model: ExportModel, dtype: str):
    """Graph modules and example inputs in the export dtype (inputs computed in float32 eagerly)."""
    examples = gr.example_inputs(model.kp_detector, model.generator, model.frame_size)
    mods = gr.graph_modules(model.kp_detector, model.generator)
    names = gr.io_names(model.kp_detector, model.generator)
    if dtype != "fp32":
        mods = {k: m.to(DTYPES[dtype]) for k, m in mods.items()}
        examples = {k: tuple(t.to(DTYPES[dtype]) for t in v) for k, v in examples.items()}
    for m in mods.values():
        m.requires_grad_(False)
    return mods, examples, names


def _manifest(fmt: str, model: ExportModel, dtype: str, dynamic_batch: bool, graphs: Dict[str, dict],
              extra: Optional[dict] = None) -> dict:
    config = model.config
    norm = dict((config.get("transfer_params") or {}).get("normalization_params") or {})
    out = {
        "format": fmt,
        "fastmotion_version": __version__,
        "torch_version": torch.__version__,
        "model": model.description,
        "random_weights": model.random_weights,
        "frame_size": list(model.frame_size),
        "dtype": dtype,
        "dynamic_batch": dynamic_batch,
        "batch": [1, MAX_BATCH] if dynamic_batch else 1,
        "num_kp": model.kp_detector.num_kp,
        "kp_variance": model.kp_detector.kp_variance,
        "normalization_params": norm,
        "graphs": graphs,
        "config": {k: config[k] for k in ("model_params", "transfer_params", "dataset_params") if k in config},
    }
    out.update(extra or {})
    return out


_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 7: "int64"}  # TensorProto codes


def _shape_of(value_info) -> List:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param if d.dim_param else d.dim_value for d in dims]


def _write_onnx(model: ExportModel, folder: str, opset: int, dtype: str, dynamic_batch: bool,
                which: Sequence[str]) -> Dict[str, dict]:
    onnx = require("onnx", "ONNX export")
    require("onnxscript", "ONNX export (torch.onnx's dynamo exporter)")
    mods, examples, names = _prepare(model, dtype)
    graphs = {}
    for name in which:
        inputs, outputs = names[name]
        path = os.path.join(folder, f"{name}.onnx")
        with _quiet():
            torch.onnx.export(mods[name], examples[name], path, input_names=inputs, output_names=outputs,
                              opset_version=opset, dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=_dynamic_shapes(name, len(inputs), dynamic_batch))
        proto = onnx.load(path, load_external_data=False)
        info = lambda vi: {"name": vi.name, "shape": _shape_of(vi),  # noqa: E731
                           "dtype": _ONNX_DTYPES.get(vi.type.tensor_type.elem_type, "other")}
        graphs[name] = {"file": f"{name}.onnx", "inputs": [info(v) for v in proto.graph.input],
                        "outputs": [info(v) for v in proto.graph.output],
                        "ops": sorted({n.op_type for n in proto.graph.node})}
    return graphs


def export(out, format: str = "onnx", config=None, checkpoint=None, *, opset: int = DEFAULT_OPSET,
           dtype: str = "fp32", dynamic_batch: bool = False, frame_size: Optional[Sequence[int]] = None,
           kp_detector=None, generator=None, graphs: Sequence[str] = gr.GRAPHS, device="cpu", log=None) -> dict:
    """Export the three graphs of streaming inference into the folder ``out`` (written atomically).

    Args:
        out: folder to write (new, empty, or an earlier export, which is replaced).
        format: ``'onnx'``, ``'aoti'`` (torch.export + AOTInductor ``.pt2`` packages) or
            ``'tensorrt'`` (ONNX graphs plus serialized TensorRT engines; needs ``tensorrt`` and a GPU).
        config, checkpoint: the model (see :func:`fastmotion.export.model.load_export_model`;
            neither: the built-in demo model); or pass ``kp_detector`` and ``generator`` (and ``config``
            as a dict for the manifest) directly.
        opset: ONNX opset (16-19 keep GridSample's mode spelled ``bilinear``; default 18).
        dtype: ``'fp32'`` or ``'fp16'`` (ONNX / AOTI: the graphs compute in half precision;
            TensorRT: float32 ONNX, engines built with the FP16 flag).
        dynamic_batch: a dynamic batch dimension (1 to 64) instead of batch 1.
        frame_size: ``(H, W)``; default the config's.
        device: where AOTInductor compiles for (``'cpu'`` or a CUDA device; aoti only).
        graphs: which graphs to write (default all three; a subset is for tests and inspection:
            the animators need all three).
        log: callable for progress lines (default: silent).

    Returns the manifest (also written as ``manifest.json``).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    check_dtype(dtype)
    graphs = tuple(graphs)
    if not graphs or any(g not in gr.GRAPHS for g in graphs):
        raise ValueError(f"graphs must be a non-empty subset of {gr.GRAPHS}, got {graphs!r}")
    if not isinstance(dynamic_batch, bool):
        raise ValueError(f"dynamic_batch must be True or False, got {dynamic_batch!r}")
    if format in ("onnx", "tensorrt"):
        check_opset(opset, format)
    if format == "tensorrt":
        from fastmotion.export.tensorrt import check_tensorrt
        check_tensorrt()
    from fastmotion.export.files import check_out_dir
    check_out_dir(out)
    log = log or (lambda line: None)
    model = _model(config, checkpoint, frame_size, kp_detector, generator)
    log(f"exporting {model.description} at {model.frame_size[1]}x{model.frame_size[0]} as {format} ({dtype}"
        f"{', dynamic batch' if dynamic_batch else ''})")
    with atomic_dir(out) as tmp:
        if format == "onnx":
            graphs = _write_onnx(model, tmp, opset, dtype, dynamic_batch, graphs)
            # from opset 20 GridSample says 'linear', which TensorRT's parser reads as nearest
            manifest = _manifest("onnx", model, dtype, dynamic_batch, graphs,
                                 {"opset": opset, "tensorrt_compatible": opset <= MAX_BILINEAR_OPSET})
        elif format == "aoti":
            from fastmotion.export.aoti import write_aoti
            graphs = write_aoti(model, tmp, dtype, dynamic_batch, _prepare, _dynamic_shapes, graphs, log,
                                torch.device(device))
            manifest = _manifest("aoti", model, dtype, dynamic_batch, graphs)
        else:
            from fastmotion.export.tensorrt import build_engines
            graphs = _write_onnx(model, tmp, opset, "fp32", dynamic_batch, graphs)
            graphs = build_engines(tmp, graphs, fp16=dtype == "fp16", dynamic_batch=dynamic_batch,
                                   max_batch=MAX_BATCH, log=log)
            manifest = _manifest("tensorrt", model, dtype, dynamic_batch, graphs,
                                 {"opset": opset, "tensorrt_compatible": True})
        write_json(os.path.join(tmp, MANIFEST), manifest)
    return manifest


def _model(config, checkpoint, frame_size, kp_detector, generator) -> ExportModel:
    if kp_detector is None and generator is None:
        return load_export_model(config, checkpoint, frame_size)
    if kp_detector is None or generator is None:
        raise ValueError("export: pass both kp_detector and generator, or neither")
    if checkpoint is not None:
        raise ValueError("export: pass either networks or a checkpoint, not both")
    from fastmotion.export.model import _config_frame_size, check_exportable, check_frame_size
    if config is not None and not isinstance(config, dict):
        from fastmotion.config import load_config
        config = load_config(config)
    config = dict(config or {})
    # the export switches the networks to the reference backend and float32: work on copies
    kp_detector, generator = copy.deepcopy(kp_detector), copy.deepcopy(generator)
    check_exportable(kp_detector, generator)
    size = tuple(frame_size) if frame_size is not None else _config_frame_size(config, kp_detector, generator)
    size = check_frame_size(size, kp_detector, generator)
    return ExportModel(kp_detector.float().eval(), generator.float().eval(), config, size,
                       "networks passed to fastmotion.export", False)

"""``fastmotion export``: the three graphs of streaming inference as ONNX, TensorRT engines or
AOTInductor packages, with a manifest.json (see :mod:`fastmotion.export`)."""
from __future__ import annotations

import os

from fastmotion.cli import CommandError


def _frame_size(text):
    import argparse

    parts = text.lower().replace(",", "x").split("x")
    try:
        size = [int(p) for p in parts]
    except ValueError:
        size = []
    if len(size) == 1:
        size = size * 2
    if len(size) != 2:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 256x256) or one number, got {text!r}")
    return tuple(size)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export the model as ONNX, TensorRT engines or AOTInductor packages",
        description="Write the three graphs of streaming inference (keypoint detector, source encoder, per-frame "
                    "generator) and a manifest.json into --out. Without --config/--checkpoint: the built-in demo "
                    "model.")
    p.add_argument("--format", default="onnx", choices=["onnx", "tensorrt", "aoti"],
                   help="onnx (standard ops; GridSample 4-D bilinear), tensorrt (engines built from the ONNX; needs "
                        "tensorrt and a GPU) or aoti (torch.export + AOTInductor .pt2 packages)")
    p.add_argument("--out", required=True, help="output folder (new, empty, or an earlier export, which is replaced)")
    p.add_argument("--config", help="model config: a packaged name (vox, taichi, ...) or a YAML path; without "
                                     "--checkpoint the weights are random")
    p.add_argument("--checkpoint", help="a Monkey-Net checkpoint (.pth.tar, original or fastmotion format)")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset, 16-19 for TensorRT (default 18; opset 20+ spells GridSample's bilinear mode "
                        "'linear', which TensorRT reads as nearest)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16"],
                   help="fp16: half-precision graphs (onnx, aoti) or engines built with the FP16 flag (tensorrt)")
    p.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch dimension (1 to 64)")
    p.add_argument("--frame-size", type=_frame_size, default=None, metavar="HxW",
                   help="frame size the graphs take (default: the config's)")
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    from fastmotion.export import DEFAULT_OPSET, MissingDependency, export

    for path, what in ((args.checkpoint, "--checkpoint"),
                       (args.config if args.config and (os.sep in args.config or args.config.endswith((".yaml", ".yml")))
                        else None, "--config")):
        if path is not None and not os.path.exists(path):
            raise CommandError(f"{what} {path}: no such file")
    if args.opset is not None and args.format == "aoti":
        raise CommandError("--opset applies to --format onnx and tensorrt, not aoti")
    start = time.perf_counter()
    try:
        manifest = export(args.out, args.format, args.config, args.checkpoint,
                          opset=DEFAULT_OPSET if args.opset is None else args.opset, dtype=args.dtype,
                          dynamic_batch=args.dynamic_batch, frame_size=args.frame_size,
                          log=lambda line: print(line, flush=True))
    except (MissingDependency, FileNotFoundError, ValueError, TypeError) as exc:
        raise CommandError(" ".join(str(exc).split())) from exc
    out = os.path.abspath(args.out)
    if manifest["random_weights"]:
        print(f"note: {manifest['model']}: the graphs are for trying the deployment path, not for animating")
    for name, entry in manifest["graphs"].items():
        files = [entry["file"]] + ([entry["engine"]] if "engine" in entry else [])
        for f in files:
            size = os.path.getsize(os.path.join(out, f)) / 2**20
            print(f"wrote {os.path.join(out, f)} ({size:.1f} MiB)")
    print(f"wrote {os.path.join(out, 'manifest.json')} ({time.perf_counter() - start:.1f} s)")
    return 0

"""TensorRT's ONNX operator support list, kept in the repo so tests can check exported graphs.

Source: onnx/onnx-tensorrt ``docs/operators.md`` at commit 96e781103cfc4adf4a6bb557e94bac8e693f6f4c
("ONNX-TensorRT 10.1 GA release", 2024-06-17); its header reads "TensorRT 10.0 supports operators in
the inclusive range of opset 9 to opset 20". The table below is transcribed mechanically from that
file into ``tensorrt_onnx_ops.tsv`` beside this module (operator, supported Y/N, types,
restrictions, tab-separated; a duplicated ArgMax row kept once). Update it together with the version
named here.
"""
from __future__ import annotations

from importlib import resources
from typing import Dict, NamedTuple

TENSORRT_VERSION = "10.0 (onnx-tensorrt 10.1 GA, docs/operators.md)"
SOURCE = ("https://github.com/onnx/onnx-tensorrt/blob/96e781103cfc4adf4a6bb557e94bac8e693f6f4c/"
          "docs/operators.md")
MIN_OPSET, MAX_OPSET = 9, 20


class OperatorSupport(NamedTuple):
    supported: bool
    types: str
    restrictions: str


def operator_support() -> Dict[str, OperatorSupport]:
    """``{ONNX operator: OperatorSupport}`` for the default ONNX domain."""
    out = {}
    table = resources.files(__package__).joinpath("tensorrt_onnx_ops.tsv").read_text(encoding="utf-8")
    for line in table.splitlines():
        op, supported, types, restrictions = (line.split("\t") + ["", "", ""])[:4]
        out[op] = OperatorSupport(supported == "Y", types, restrictions)
    return out

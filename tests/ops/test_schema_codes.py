"""The integer codes of the compiled ops' schemas (fastmotion/ops/_schema.py) are the numbers the
C++ and CUDA kernels read (csrc/include/fastmotion/): a reordered enum on either side fails here."""
import re
from pathlib import Path

import pytest

from fastmotion.ops import _schema

INCLUDE = Path(__file__).resolve().parents[2] / "csrc" / "include" / "fastmotion"


def _enum(header: str, name: str) -> dict:
    if not INCLUDE.is_dir():
        pytest.skip(f"no C++ sources at {INCLUDE} (an installed package, not a checkout)")
    found = re.search(rf"enum {name} : int \{{(.*?)\}};", (INCLUDE / header).read_text(), re.S)
    assert found, f"enum {name} not found in {header}"
    return {key: int(value) for key, value in re.findall(r"\b(k\w+) = (\d+)", found.group(1))}


def test_var_modes_match_var_mode_h():
    assert _enum("var_mode.h", "VarMode") == {
        "kVarMatrix": _schema.VAR_MATRIX, "kVarSingle": _schema.VAR_SINGLE, "kVarFixed": _schema.VAR_FIXED}


def test_sampling_codes_match_sampling_h():
    assert _enum("sampling.h", "GridSampleMode") == {
        "kModeBilinear": _schema.MODE_CODES["bilinear"], "kModeNearest": _schema.MODE_CODES["nearest"]}
    assert _enum("sampling.h", "GridSamplePadding") == {
        "kPadZeros": _schema.PADDING_CODES["zeros"], "kPadBorder": _schema.PADDING_CODES["border"],
        "kPadReflection": _schema.PADDING_CODES["reflection"]}

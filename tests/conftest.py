"""Test-suite setup: Triton kernels run under the interpreter on machines without a GPU.

TRITON_INTERPRET must be set before triton is imported (it is read when kernels are defined),
so this happens here, before anything imports fastmotion.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _gather_input_grad(request, monkeypatch):
    """Tests marked gather_input_grad (tests.tolerance.gather_params) run the Triton backward
    with its deterministic gather input gradient."""
    if request.node.get_closest_marker("gather_input_grad"):
        monkeypatch.setenv("FASTMOTION_GRID_SAMPLE_SCATTER", "gather")

"""Test-suite setup: Triton kernels run under the interpreter on machines without a GPU.

TRITON_INTERPRET must be set before triton is imported (it is read when kernels are defined),
so this happens here, before anything imports fastmotion.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

"""Triton kernels of fastmotion, one module per op family (ships as ``fastmotion.kernels``).

Modules here import triton at import time; fastmotion imports them only when the triton
backend is usable. Launchers call kernels through ``torch.library.wrap_triton`` so that the
``torch.library.triton_op`` wrappers in ``fastmotion.ops`` stay traceable by torch.compile.
"""

"""Replay a per-frame step as a CUDA graph (``--cuda-graphs``).

A batch-1 frame at 256x256 launches a few hundred small kernels; replaying them as one graph
removes the host's launch cost. The step must read only tensors that stay where they are
between frames (the source's encoder maps, the relative-motion buffers, which are updated in
place): whoever changes those calls :meth:`reset`, and the next frame captures again.
"""
from __future__ import annotations

from typing import Callable

import torch

WARMUP_RUNS = 3  # compiles Triton kernels and fills the weight caches before capture


class CudaGraphStep:
    """``step(x)`` through a captured graph; ``x`` is copied into the graph's input buffer.
    Outputs are the graph's own buffers, overwritten by the next call: copy what you keep."""

    def __init__(self, step: Callable[[torch.Tensor], object]):
        self.step = step
        self.graph = None
        self._input = None
        self._output = None

    def reset(self) -> None:
        self.graph = self._input = self._output = None

    def _capture(self, x: torch.Tensor) -> None:
        self._input = x.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.step(self._input)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._output = self.step(self._input)
        self.graph = graph

    def __call__(self, x: torch.Tensor):
        if x.device.type != "cuda":
            raise ValueError(f"CudaGraphStep: CUDA graphs need CUDA tensors, got a {x.device.type} tensor")
        if (self.graph is None or self._input.shape != x.shape or self._input.dtype != x.dtype
                or self._input.stride() != x.stride()):
            self._capture(x)
        self._input.copy_(x)
        self.graph.replay()
        return self._output

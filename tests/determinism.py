"""Helpers of the deterministic-mode tests (grid_sample / warp_features gather input gradients)."""
import contextlib
import importlib

import torch


@contextlib.contextmanager
def deterministic_algorithms(warn_only=False):
    """torch.use_deterministic_algorithms(True) inside the block, the previous setting after."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def count_gathers(monkeypatch):
    """A list that records the input shape of every call of the Triton gather input gradient."""
    kernels = importlib.import_module("fastmotion.kernels.grid_sample")
    calls = []
    real = kernels.input_grad_by_gather

    def counting(*args):
        calls.append(tuple(args[1].shape))
        return real(*args)

    monkeypatch.setattr(kernels, "input_grad_by_gather", counting)
    return calls

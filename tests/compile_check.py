"""torch.compile(fullgraph=True) sees through an op: the compiled function gives the eager one's
value and gradients."""
import torch


def assert_compiles_like_eager(f, *inputs, backend="aot_eager"):
    """``f(*inputs)``: a scalar loss of the op under test; ``inputs`` all require gradients."""
    compiled = torch.compile(f, fullgraph=True, backend=backend)
    out = compiled(*inputs)
    grads = torch.autograd.grad(out, inputs)
    expect = f(*inputs)
    expect_grads = torch.autograd.grad(expect, inputs)
    torch.testing.assert_close(out, expect)
    for got, want in zip(grads, expect_grads):
        torch.testing.assert_close(got, want)

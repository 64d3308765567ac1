"""The fast path (default backend + model-level rewrites) against backend="reference" (the
original's math): whole-model forward and gradients, eval and train mode."""
import pytest
import torch

from tests.models import block_replay
from tests.models.helpers import build, copy_weights, images, max_err, tiny_config
from tests.tolerance import FLOOR

# Structures of two original configs at small sizes: taichi (no scale factor, nearest skip
# resizing) and vox (scale_factor 0.25 for detector / dense motion / embedding, trilinear).
CASES = {"taichi": (tiny_config("taichi"), 32), "vox": (tiny_config("vox"), 64)}


def run_models(models, size, dtype, train, seed=0, disc_on="prediction", backward=True):
    """Forward of detector, generator and discriminator, and the gradients of a random projection
    of every output w.r.t. all parameters and the source image. ``disc_on``: the discriminator
    scores the generated frames or the (real) driving frames."""
    kp_detector, generator, discriminator = models
    for m in models:
        m.train(train)
        m.zero_grad(set_to_none=True)
    source = images(2, size, frames=1, seed=seed, dtype=dtype).requires_grad_()
    driving = images(2, size, frames=1, seed=seed + 1, dtype=dtype)
    kp_source, kp_driving = kp_detector(source), kp_detector(driving)
    out = generator(source, kp_driving, kp_source)
    maps = discriminator(out["video_prediction"] if disc_on == "prediction" else driving, kp_driving, kp_source)
    outputs = {"kp_mean": kp_driving["mean"], "kp_var": kp_driving["var"], "prediction": out["video_prediction"],
               "deformed": out["video_deformed"]}
    outputs.update({f"disc_map{i}": m for i, m in enumerate(maps[1:], 1)})
    if not backward:
        return outputs, None
    gen = torch.Generator().manual_seed(seed + 7)
    loss = sum((v * torch.randn(v.shape, generator=gen, dtype=torch.float64).to(dtype)).sum()
               for v in outputs.values())
    loss.backward()
    grads = {"source": source.grad}
    for name, m in zip(("kp", "gen", "disc"), models):
        grads.update({f"{name}.{k}": p.grad for k, p in m.named_parameters() if p.grad is not None})
    return outputs, grads


def relative_err(a, b):
    return max_err(a, b) / max(1.0, b.detach().abs().max().item())


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_equals_reference_float64(case, train):
    """In float64 the fast path's rewrites (folded BatchNorm, sub-pixel convolutions, fused ops,
    channels_last) must agree with the reference to rounding."""
    config, size = CASES[case]
    ref = build(config, backend="reference", dtype=torch.float64)
    fast = build(config, dtype=torch.float64)
    copy_weights(ref, fast)
    out_ref, grad_ref = run_models(ref, size, torch.float64, train)
    out_fast, grad_fast = run_models(fast, size, torch.float64, train)
    assert_same_math_float64(out_fast, grad_fast, out_ref, grad_ref)


def assert_same_math_float64(out, grads, out_ref, grad_ref):
    """float64 outputs and gradients of ``run_models`` agree with the reference's to rounding."""
    for key in out_ref:
        assert relative_err(out[key], out_ref[key]) < 1e-9, key
    assert grad_ref.keys() == grads.keys()
    for key in grad_ref:
        assert relative_err(grads[key], grad_ref[key]) < 1e-8, key


def float32_models(config):
    """(float64 reference, float32 reference, float32 fast path), all with the same weights."""
    ref64 = build(config, backend="reference", dtype=torch.float64)
    ref32 = build(config, backend="reference")
    fast32 = build(config)
    copy_weights(ref64, ref32)
    copy_weights(ref64, fast32)
    return ref64, ref32, fast32


def assert_outputs_within_reference_error(out64, out_ref, out_fast):
    """Each output's max error is at most twice the float32 reference's (DESIGN.md's rule, with
    the float32 floor)."""
    for key in out64:
        scale = max(1.0, out64[key].abs().max().item())
        budget = 2 * max(max_err(out_ref[key], out64[key]), FLOOR[torch.float32] * scale)
        err = max_err(out_fast[key], out64[key])
        assert err <= budget, f"{key}: fast path error {err:.3g} > budget {budget:.3g}"


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_fast_path_float32_within_reference_error(train):
    """float32 forward of the whole model (with autograd) against the float64 reference. The
    discriminator scores the driving frames: on the nearly constant output of an untrained
    generator its InstanceNorm divides by tiny deviations (ill-conditioned for every path).

    Gradients are judged block by block (next test): through the whole model they jump where a
    ReLU input sits within rounding of zero (see tests/models/block_replay.py)."""
    config, size = CASES["taichi"]
    ref64, ref32, fast32 = float32_models(config)
    out64, _ = run_models(ref64, size, torch.float64, train, disc_on="driving", backward=False)
    out_ref, _ = run_models(ref32, size, torch.float32, train, disc_on="driving", backward=False)
    out_fast, _ = run_models(fast32, size, torch.float32, train, disc_on="driving", backward=False)
    assert_outputs_within_reference_error(out64, out_ref, out_fast)


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_float32_inference_within_reference_error(case):
    """Inference (eval, no autograd): the oneDNN pre-packed convolutions with folded BatchNorm."""
    config, size = CASES[case]
    models = float32_models(config)
    outs = []
    for (kp_detector, generator, discriminator), dtype in zip(models, (torch.float64, torch.float32, torch.float32)):
        for m in (kp_detector, generator, discriminator):
            m.eval()
        source, driving = images(2, size, frames=1, dtype=dtype), images(2, size, frames=1, seed=1, dtype=dtype)
        with torch.no_grad():
            kp_source, kp_driving = kp_detector(source), kp_detector(driving)
            out = generator(source, kp_driving, kp_source)
            maps = discriminator(driving, kp_driving, kp_source)
        outs.append({"kp_mean": kp_driving["mean"], "kp_var": kp_driving["var"], **out,
                     **{f"disc_map{i}": m for i, m in enumerate(maps[1:], 1)}})
    assert_outputs_within_reference_error(*outs)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_fast_path_float32_blocks_within_reference_error(train):
    """Every block call of the float32 fast path, replayed on the float64 reference's inputs and
    output gradient: output, input gradients and parameter gradients within twice the float32
    reference's relative error (see tests/models/block_replay.py)."""
    config, size = CASES["taichi"]
    errors = block_replay.block_errors(*float32_models(config), size, train)
    assert len({e.block for e in errors}) >= 30, "blocks were not replayed"
    failures = [str(e) for e in errors if not e.ok()]
    assert not failures, "\n".join(failures)


class _BFloat16Weights:
    """``torch.nn.functional`` with convolutions that round their weights to bfloat16 (what a
    bfloat16 fpmath mode does to float32 convolutions)."""

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    @staticmethod
    def conv2d(x, weight, *args):
        return torch.nn.functional.conv2d(x, weight.to(torch.bfloat16).to(weight.dtype), *args)


def _backward_off_by(factor):
    def hook(module, grad_input, grad_output):
        return tuple(None if g is None else g * factor for g in grad_input)
    return hook


@pytest.mark.parametrize("error", ["bfloat16-convolutions", "one-input-gradient-1e-4-off"])
def test_block_check_detects_an_injected_error(monkeypatch, error):
    """The per-block check can fail: a less accurate convolution in the fast path, or one
    block's input gradient off by a relative 1e-4, is reported (and only where it was injected)."""
    from fastmotion.models import conv_fusion

    config, size = CASES["taichi"]
    ref64, ref32, fast32 = float32_models(config)
    if error == "bfloat16-convolutions":
        monkeypatch.setattr(conv_fusion, "F", _BFloat16Weights())
        target = ""
    else:
        target = "gen.dense_motion_module.hourglass.encoder.down_blocks.1#"
        fast32[1].dense_motion_module.hourglass.encoder.down_blocks[1].register_full_backward_hook(
            _backward_off_by(1 + 1e-4))
    failures = [e for e in block_replay.block_errors(ref64, ref32, fast32, size, train=True) if not e.ok()]
    assert failures, "the injected error went unnoticed"
    assert all(e.block.startswith(target) for e in failures), [str(e) for e in failures]


def test_use_backend_context_selects_reference_path():
    """fastmotion.use_backend("reference") reaches the model: it then computes what backend="reference" does."""
    import fastmotion

    config, size = CASES["vox"]
    ref = build(config, backend="reference")
    auto = build(config)
    copy_weights(ref, auto)
    for m in ref + auto:
        m.eval()
    x = images(1, size, frames=1)
    with torch.no_grad():
        expected = ref[1](x, ref[0](x), ref[0](x))["video_prediction"]
        with fastmotion.use_backend("reference"):
            assert not auto[1].fast_path()
            got = auto[1](x, auto[0](x), auto[0](x))["video_prediction"]
    assert torch.equal(got, expected)


def test_backend_switch_propagates_and_validates():
    config, _ = CASES["taichi"]
    kp, gen, disc = build(config)
    gen.backend = "reference"
    assert gen.dense_motion_module.hourglass.encoder.down_blocks[0].backend == "reference"
    assert not gen.video_decoder.up_blocks[0].fast_path()
    gen.set_backend(None)
    assert gen.refinement_module[0].fast_path()
    with pytest.raises(ValueError, match="backend must be one of"):
        kp.set_backend("fast")


def test_eval_folding_cache_follows_weight_updates():
    """Eval-mode folded weights are cached; an in-place weight update (optimizer step,
    load_state_dict) must invalidate them."""
    config, size = CASES["taichi"]
    ref = build(config, backend="reference")
    fast = build(config)
    copy_weights(ref, fast)
    x = images(2, size)
    for m in ref + fast:
        m.eval()
    with torch.no_grad():
        fast[0](x)  # fills the caches
        for m in (ref[0], fast[0]):
            for p in m.parameters():
                p.mul_(1.01)
            m.predictor.encoder.down_blocks[0].norm.running_var.add_(0.3)
        assert max_err(fast[0](x)["mean"], ref[0](x)["mean"]) < 1e-5
        fast[0].load_state_dict(build(config, seed=3)[0].state_dict())
        ref[0].load_state_dict(fast[0].state_dict())
        assert max_err(fast[0](x)["mean"], ref[0](x)["mean"]) < 1e-5

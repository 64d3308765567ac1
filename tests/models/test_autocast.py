"""The models under autocast (mixed precision), as the trainer and fp16 / bf16 inference run them.

Autocast leaves some tensors in float32 (the input images, BatchNorm's parameters and statistics)
while convolutions produce half tensors: the fused ops and the fast layers must take such mixes.
Runs on CPU with bfloat16 (CPU autocast) and, where a GPU is present, on CUDA with float16.
"""
import pytest
import torch
import torch.nn.functional as F

from fastmotion.models import normalize_kp
from fastmotion.train.step import train_step
from tests.models.helpers import build, copy_weights, images, max_err, tiny_config

CASES = [("cpu", torch.bfloat16), ("cuda", torch.float16)]


def _smooth_images(batch, size, seed, frames=None):
    """Images without pixel-level detail: half-precision sampling grids (a few thousandths of the
    image off) move a sample by a fraction of a pixel, which must not turn into a large error."""
    coarse = images(batch, 8, seed=seed)
    out = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return out if frames is None else out.unsqueeze(2)


def _device_or_skip(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available")


@pytest.mark.parametrize("device,dtype", CASES, ids=["cpu-bf16", "cuda-fp16"])
@pytest.mark.parametrize("backend", ["reference", None], ids=["reference", "fast"])
@pytest.mark.parametrize("name", ["taichi", "vox"])
def test_inference_under_autocast_close_to_float32(name, backend, device, dtype):
    _device_or_skip(device)
    config = tiny_config(name)
    kp_detector, generator, _ = [m.to(device).eval() for m in build(config, backend=backend)]
    params = config["transfer_params"]["normalization_params"]
    size = 64 if name == "taichi" else 128
    source, first, driving = (_smooth_images(2, size, seed=s).to(device) for s in range(3))

    def run():
        kp_source, kp_first = kp_detector(source), kp_detector(first)
        kp_norm = normalize_kp(kp_detector(driving), kp_source, kp_initial=kp_first, **params)
        return generator(source, kp_norm, kp_source)

    with torch.no_grad():
        expected = run()
        with torch.autocast(device, dtype=dtype):
            got = run()
    for key in ("video_prediction", "video_deformed"):
        assert torch.isfinite(got[key]).all()
        assert got[key].shape == expected[key].shape
        # images in [0, 1], half-precision convolutions through two hourglasses and a half grid:
        # on average close; the deformed source can differ more where a sample crosses the
        # image border (zero padding), so its worst pixel is not bounded tightly
        assert (got[key].double() - expected[key].double()).abs().mean() < 0.01, key
    assert max_err(got["video_prediction"], expected["video_prediction"]) < 0.05


@pytest.mark.parametrize("device,dtype", CASES, ids=["cpu-bf16", "cuda-fp16"])
def test_train_step_under_autocast_matches_reference_backend(device, dtype):
    """A training iteration under autocast runs on both backends, with finite gradients, and the
    fast path's losses and gradients stay close to the reference backend's under the same autocast."""
    _device_or_skip(device)
    config = tiny_config("taichi")
    reference = [m.to(device).train() for m in build(config, backend="reference")]
    fast = [m.to(device).train() for m in build(config)]
    copy_weights(reference, fast)
    source, video = (_smooth_images(2, 64, seed=s, frames=1).to(device) for s in (4, 5))
    losses = []
    for models in (reference, fast):
        with torch.autocast(device, dtype=dtype):
            losses.append(train_step(*models, source, video, config["train_params"]))
        for m in models:
            for p in m.parameters():
                assert p.grad is None or torch.isfinite(p.grad).all()
    for key in ("generator", "discriminator"):
        assert abs(losses[0][key] - losses[1][key]) <= 0.05 * (1 + abs(losses[0][key])), key

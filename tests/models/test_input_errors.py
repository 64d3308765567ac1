"""Inputs the networks cannot take get one sentence naming the argument and what is expected:
image sizes (the rule and the nearest valid size), videos without frames, images of another dtype
than the network's. An empty batch is not an error: it gives empty outputs."""
import re

import pytest
import torch

from fastmotion.models.input_size import HourglassSize, PooledConvSize, nearest_valid
from tests.models.helpers import build, images, tiny_config

TAICHI = tiny_config("taichi")  # num_blocks 3 everywhere, no scale factors
VOX = tiny_config("vox")  # detector and dense motion at scale_factor 0.25


def networks(config=TAICHI, backend=None):
    models = build(config, backend=backend)
    for m in models:
        m.eval()
    return models


def keypoints(batch, frames=None, k=10):
    lead = (batch,) if frames is None else (batch, frames)
    return {"mean": torch.zeros(*lead, k, 2), "var": torch.eye(2).expand(*lead, k, 2, 2) * 0.01}


def test_size_rules():
    rule = HourglassSize(3)
    assert [s for s in range(1, 30) if rule.ok(s)] == [8, 16, 24]
    scaled = HourglassSize(3, 0.25)  # floor(side / 4) a multiple of 8
    assert [s for s in range(1, 70) if scaled.ok(s)] == [32, 33, 34, 35, 64, 65, 66, 67]
    assert nearest_valid(30, [rule]) == 32 and nearest_valid(20, [rule]) == 24  # tie: the larger one
    assert nearest_valid(48, [rule, scaled]) == 64 and nearest_valid(40, [rule, scaled]) == 32
    disc = PooledConvSize(3)  # 4x4 conv + 2x2 pool, three times: 29 -> 26 -> 13 -> 10 -> 5 -> 2 -> 1
    assert disc.minimum() == 29 and not disc.ok(28) and disc.ok(29)


@pytest.mark.parametrize("backend", [None, "reference"], ids=["fast", "reference"])
@pytest.mark.parametrize("size, nearest", [(30, 32), (36, 40), (4, 8), (1, 8)])
def test_detector_size_error_names_rule_and_nearest_size(backend, size, nearest):
    kp, _, _ = networks(backend=backend)
    with pytest.raises(ValueError, match=re.escape(
            f"KPDetector: x height and width must each be a multiple of 8 (2**num_blocks, num_blocks=3), got "
            f"{size}x{size}; the nearest valid size is {nearest}x{nearest}")):
        kp(images(1, size))
    with torch.no_grad():
        assert kp(images(1, nearest))["mean"].shape == (1, 10, 2)  # the suggestion works


def test_size_error_with_scale_factor_and_non_square_input():
    kp, gen, _ = networks(VOX)
    with pytest.raises(ValueError, match=re.escape("after scaling by scale_factor=0.25 (rounded down), got 60x64; "
                                                   "the nearest valid size is 64x64")):
        kp(images(1, 64)[..., :60, :])
    with pytest.raises(ValueError, match=r"MotionTransferGenerator: source_image height and width must each be a "
                                         r"multiple of 8 .* and a multiple of 8 .*after scaling by scale_factor=0\.25"
                                         r".*got 48x48; the nearest valid size is 64x64"):
        gen(images(1, 48), keypoints(1), keypoints(1))
    with torch.no_grad():
        out = gen(images(1, 64), keypoints(1), keypoints(1))
    assert out["video_prediction"].shape == (1, 3, 64, 64)


def test_dense_motion_module_size_error():
    _, gen, _ = networks(VOX)
    with pytest.raises(ValueError, match=re.escape("DenseMotionModule: source_image height and width must each be a "
                                                   "multiple of 8 (2**num_blocks, num_blocks=3) after scaling by "
                                                   "scale_factor=0.25 (rounded down), got 16x16; the nearest valid "
                                                   "size is 32x32")):
        gen.dense_motion_module(images(1, 16), keypoints(1), keypoints(1))


def test_discriminator_size_error():
    _, _, disc = networks()
    with pytest.raises(ValueError, match=re.escape("Discriminator: x height and width must each be at least 29 "
                                                   "(3 blocks of 4x4 convolution and 2x2 pooling), got 8x8; the "
                                                   "nearest valid size is 29x29")):
        disc(images(1, 8), keypoints(1), keypoints(1))
    with torch.no_grad():
        assert len(disc(images(1, 29), keypoints(1), keypoints(1))) == 5


@pytest.mark.parametrize("backend", [None, "reference"], ids=["fast", "reference"])
def test_empty_batch_gives_empty_outputs(backend):
    kp, gen, disc = networks(backend=backend)
    with torch.no_grad():
        kp_out = kp(images(0, 32))
        assert kp_out["mean"].shape == (0, 10, 2) and kp_out["var"].shape == (0, 10, 2, 2)
        out = gen(images(0, 32), keypoints(0), keypoints(0))
        assert out["video_prediction"].shape == (0, 3, 32, 32) and out["video_deformed"].shape == (0, 3, 32, 32)
        maps = disc(images(0, 32), keypoints(0), keypoints(0))
        assert [m.shape[0] for m in maps] == [0] * 5
        video = gen(images(0, 32, frames=1), keypoints(0, 2), keypoints(0, 1))
        assert video["video_prediction"].shape == (0, 3, 2, 32, 32)


def test_video_without_frames_is_an_error():
    kp, gen, disc = networks()
    with pytest.raises(ValueError, match=r"KPDetector: x is a video with no frames \(D = 0"):
        kp(images(1, 32, frames=0))
    with pytest.raises(ValueError, match=r"MotionTransferGenerator: kp_driving\['mean'\] has no frames"):
        gen(images(1, 32, frames=1), keypoints(1, 0), keypoints(1, 1))
    with pytest.raises(ValueError, match=r"Discriminator: x is a video with no frames"):
        disc(images(1, 32, frames=0), keypoints(1, 0), keypoints(1, 0))


@pytest.mark.parametrize("backend", [None, "reference"], ids=["fast", "reference"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_image_dtype_must_match_the_network(backend, dtype):
    kp, gen, disc = networks(backend=backend)
    expected = f"has dtype {dtype} but the network's parameters are torch.float32"
    with pytest.raises(TypeError, match=re.escape(f"KPDetector: x {expected}")):
        kp(images(1, 32, dtype=dtype))
    with pytest.raises(TypeError, match=re.escape(f"MotionTransferGenerator: source_image {expected}")):
        gen(images(1, 32, dtype=dtype), keypoints(1), keypoints(1))
    with pytest.raises(TypeError, match=re.escape(f"Discriminator: x {expected}")):
        disc(images(1, 32, dtype=dtype), keypoints(1), keypoints(1))


def test_autocast_takes_other_image_dtypes():
    kp, _, _ = networks()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert kp(images(1, 32, dtype=torch.bfloat16))["mean"].dtype == torch.float32

"""Animator (source encoded once, then per driving frame) against the original transfer_one flow."""
import pytest
import torch

from fastmotion.models import Animator, normalize_kp
from tests.models.helpers import build, copy_weights, images, max_err, tiny_config

PARAMS = {"move_location": True, "movement_mult": True, "adapt_variance": False}


def transfer_one(kp_detector, generator, source, driving_video, params):
    """The original transfer.py's transfer_one, on our modules (the reference backend)."""
    d = driving_video.shape[2]
    kp_driving = [kp_detector(driving_video[:, :, i:i + 1]) for i in range(d)]
    kp_driving = {k: torch.cat([kp[k] for kp in kp_driving], dim=1) for k in kp_driving[0]}
    kp_source = kp_detector(source)
    kp_norm = normalize_kp(kp_driving, kp_source, **params)
    outs = [generator(source, {k: v[:, i:i + 1] for k, v in kp_norm.items()}, kp_source) for i in range(d)]
    return {k: torch.cat([o[k] for o in outs], dim=2) for k in outs[0]}, kp_norm


@pytest.mark.parametrize("name,size", [("vox", 64), ("taichi", 32)])
def test_animate_matches_transfer_one(name, size):
    config = tiny_config(name)
    ref = build(config, backend="reference")
    fast = build(config)
    copy_weights(ref, fast)
    for m in ref + fast:
        m.eval()
    source, driving = images(1, size, frames=1), images(1, size, frames=3, seed=1)
    with torch.no_grad():
        expected, kp_norm = transfer_one(ref[0], ref[1], source, driving, PARAMS)
    out = Animator(fast[0], fast[1], PARAMS).animate(source, driving)
    for key in ("video_prediction", "video_deformed"):
        assert out[key].shape == expected[key].shape
        # float32: a warped image moves by (grid rounding) x (image gradient, up to ~size/2 per unit)
        assert max_err(out[key], expected[key]) < 5e-5, key
    assert max_err(out["kp_norm"]["mean"], kp_norm["mean"]) < 1e-6


def test_streaming_frames_and_reset():
    config = tiny_config("taichi")
    kp_detector, generator, _ = build(config)
    kp_detector.eval()
    generator.eval()
    animator = Animator(kp_detector, generator, {"move_location": True})
    source, frames = images(2, 32), [images(2, 32, seed=i) for i in (1, 2)]
    animator.set_source(source)
    first = animator(frames[0])
    assert first["video_prediction"].shape == (2, 3, 32, 32)
    # the first frame is the initial pose: normalised keypoints equal the source's
    assert max_err(first["kp_norm"]["mean"], animator.kp_source["mean"]) < 1e-6
    second = animator(frames[1])
    with torch.no_grad():
        kp_s, kp_d = kp_detector(source), kp_detector(frames[1])
        kp_norm = normalize_kp(kp_d, kp_s, kp_initial=kp_detector(frames[0]), move_location=True)
        expected = generator(source, kp_norm, kp_s)
    assert max_err(second["video_prediction"], expected["video_prediction"]) < 1e-5
    animator.set_source(source)  # a new source resets the initial pose
    assert animator.kp_initial is None


def test_errors():
    config = tiny_config("taichi")
    kp_detector, generator, discriminator = build(config)
    with pytest.raises(TypeError, match="generator"):
        Animator(kp_detector, discriminator)
    with pytest.raises(ValueError, match="unknown normalization_params"):
        Animator(kp_detector, generator, {"move_locaton": True})
    animator = Animator(kp_detector, generator)
    with pytest.raises(RuntimeError, match="set_source"):
        animator(images(1, 32))
    animator.set_source(images(1, 32))
    with pytest.raises(ValueError, match="driving must be frames"):
        animator(images(2, 32))

"""fastmotion.Animator: frame by frame equal to the model's batch output (the original transfer
flow on backend="reference"), relative vs absolute motion, anchors, image kinds, bad input."""
import contextlib
import copy

import numpy as np
import pytest
import torch
from PIL import Image

import fastmotion
from fastmotion.inference import animator as animator_module
from fastmotion.inference.best_frame import best_frame_index, normalized_pose
from fastmotion.inference.relative_motion import RelativeMotion, symmetric_positive_2x2
from fastmotion.models import normalize_kp
from fastmotion.models.normalize import make_symmetric_positive
from tests.models.helpers import build, copy_weights, images, max_err, tiny_config


def _models(name="taichi", **params):
    config = tiny_config(name)
    config["transfer_params"]["normalization_params"].update(params)
    ref = build(config, backend="reference")
    fast = build(config)
    copy_weights(ref, fast)
    for m in ref + fast:
        m.eval()
    return config, ref, fast


def _batch_transfer(kp_detector, generator, source, video, params):
    """The model's batch output: keypoints of the whole driving video (B, C, D, H, W), the
    original normalize_kp (first frame = initial pose), one generator call over all frames."""
    with torch.no_grad():
        kp_video = kp_detector(video)
        kp_source = kp_detector(source.unsqueeze(2))
        kp_norm = normalize_kp(kp_video, kp_source, **params)
        return generator(source.unsqueeze(2), kp_norm, kp_source)["video_prediction"], kp_video, kp_norm


@pytest.mark.parametrize("name,size,params", [
    ("taichi", 32, {"move_location": True, "movement_mult": True}),
    ("vox", 64, {"move_location": True, "adapt_variance": True, "clip_mean": True}),
])
def test_animate_equals_the_batch_output_frame_by_frame(name, size, params):
    config, ref, fast = _models(name, **params)
    source, video = images(1, size, seed=0), images(1, size, frames=4, seed=1)
    expected, _, _ = _batch_transfer(ref[0], ref[1], source, video, config["transfer_params"]["normalization_params"])
    animator = fastmotion.Animator(fast[0], fast[1], config, frame_size=(size, size),
                                   adapt_variance=params.get("adapt_variance", False))
    animator.set_source(source)
    frames = video[0].transpose(0, 1)  # (T, C, H, W)
    out = animator.animate(frames)
    assert out.shape == frames.shape and out.dtype == torch.float32
    for t in range(frames.shape[0]):
        assert max_err(out[t], expected[0, :, t]) < 5e-5, t
    # frame by frame through __call__ gives the same frames
    animator.set_source(source)
    for t in range(frames.shape[0]):
        assert max_err(animator(frames[t]), out[t]) < 1e-6


def test_relative_and_absolute_motion_and_anchor_choice():
    config, ref, fast = _models("taichi", move_location=True)
    source, video = images(1, 32, seed=2), images(1, 32, frames=3, seed=3)
    frames = video[0].transpose(0, 1)
    with torch.no_grad():
        kp_s = ref[0](source)
        kps = [ref[0](frames[t:t + 1]) for t in range(3)]
    relative = fastmotion.Animator(fast[0], fast[1], config, frame_size=(32, 32))
    relative.set_source(source)
    first = relative.step(frames[0])
    # relative motion, anchored on the first frame: that frame drives the source's own keypoints
    assert np.abs(first.kp_norm - relative.kp_source).max() < 1e-6
    assert np.abs(first.kp_driving - kps[0]["mean"][0].numpy()).max() < 1e-5
    # anchored on frame 2: kp_norm = kp_t - kp_2 + kp_source
    relative.set_source(source)
    relative.set_anchor(frames[2])
    got = relative.step(frames[1])
    want = (kps[1]["mean"] - kps[2]["mean"] + kp_s["mean"])[0].numpy()
    assert np.abs(got.kp_norm - want).max() < 1e-5
    absolute = fastmotion.Animator(fast[0], fast[1], config, frame_size=(32, 32), relative=False)
    absolute.set_source(source)
    got = absolute.step(frames[1])
    assert np.abs(got.kp_norm - kps[1]["mean"][0].numpy()).max() < 1e-5
    with torch.no_grad():
        expected = ref[1](source, kps[1], kp_s)["video_prediction"]
    assert max_err(got.image, expected[0]) < 5e-5
    # the motion differs between the two modes on a frame other than the anchor
    assert np.abs(absolute.step(frames[1]).kp_norm - relative.step(frames[1]).kp_norm).max() > 1e-3


def test_relative_motion_equals_normalize_kp():
    gen = torch.Generator().manual_seed(0)
    def kp(batch):
        a = torch.randn(batch, 5, 2, 2, generator=gen, dtype=torch.float64) * 0.3
        return {"mean": torch.rand(batch, 5, 2, generator=gen, dtype=torch.float64) * 2.4 - 1.2,
                "var": a @ a.transpose(-1, -2) + 0.01 * torch.eye(2, dtype=torch.float64)}
    kp_s, kp_0, kp_d = kp(2), kp(2), kp(2)
    for params in ({"move_location": True}, {"move_location": True, "movement_mult": True},
                   {"adapt_variance": True}, {"move_location": True, "clip_mean": True, "adapt_variance": True},
                   {}):
        motion = RelativeMotion(**params)
        motion.set(kp_s, kp_0)
        got = motion(kp_d)
        want = normalize_kp(kp_d, kp_s, kp_initial=kp_0, **params)
        assert max_err(got["mean"], want["mean"]) < 1e-12, params
        assert max_err(got["var"], want["var"]) < 1e-9, params


def test_symmetric_positive_2x2_equals_the_eigen_decomposition():
    gen = torch.Generator().manual_seed(1)
    var = torch.randn(500, 2, 2, generator=gen, dtype=torch.float64)  # indefinite, negative, non-symmetric
    var = torch.cat([var, torch.eye(2, dtype=torch.float64).expand(2, 2, 2) * torch.tensor([3.0, -1.0],
                     dtype=torch.float64).view(2, 1, 1), torch.zeros(1, 2, 2, dtype=torch.float64)])
    assert max_err(symmetric_positive_2x2(var), make_symmetric_positive(var)) < 1e-12
    assert symmetric_positive_2x2(var.float()).dtype == torch.float32


def test_best_frame():
    pose = np.array([[-0.5, -0.4], [0.5, -0.3], [0.1, 0.6], [-0.2, 0.1]])
    other = np.array([[-0.5, 0.4], [0.5, 0.3], [0.6, -0.6], [-0.2, 0.9]])
    moved_and_scaled = pose * 0.5 + 0.3  # same pose, other place and size
    assert best_frame_index(pose, np.stack([other, moved_and_scaled, other])) == 1
    assert np.abs(normalized_pose(moved_and_scaled) - normalized_pose(pose)).max() < 1e-12
    with pytest.raises(ValueError, match="T > 0"):
        best_frame_index(pose, np.zeros((0, 4, 2)))
    # through the detector: the driving frame equal to the source is the closest pose
    config, _, fast = _models("taichi", move_location=True)
    source = images(1, 32, seed=4)
    frames = torch.cat([images(1, 32, seed=5), source, images(1, 32, seed=6)])
    animator = fastmotion.Animator(fast[0], fast[1], config, frame_size=(32, 32))
    animator.set_source(source)
    assert animator.best_frame(list(frames)) == 1
    out = animator.animate(frames, anchor="best")
    assert max_err(out[1], animator.animate(frames, anchor=1)[1]) < 1e-6


def test_image_kinds_round_trip():
    config, _, fast = _models("taichi")
    animator = fastmotion.Animator(fast[0], fast[1], config)  # frame size from the config: 64x64
    assert animator.frame_size == (64, 64)
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)  # resized to 64x64
    animator.set_source(source)
    assert animator.source.shape == (64, 64, 3)
    frame = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out_u8 = animator(frame)
    assert out_u8.dtype == np.uint8 and out_u8.shape == (64, 64, 3)
    out_f = animator(frame.astype(np.float32) / 255)
    assert out_f.dtype == np.float32 and np.abs(out_f * 255 - out_u8).max() <= 0.5 + 1e-3
    out_pil = animator(Image.fromarray(frame))
    assert isinstance(out_pil, Image.Image) and np.array_equal(np.asarray(out_pil), out_u8)
    tensor = torch.from_numpy(frame).permute(2, 0, 1)
    out_t = animator(tensor)  # uint8 (C, H, W) -> uint8 (C, H, W)
    assert out_t.dtype == torch.uint8 and out_t.shape == (3, 64, 64)
    assert np.array_equal(out_t.permute(1, 2, 0).numpy(), out_u8)
    out_b = animator(tensor.unsqueeze(0).float() / 255)
    assert out_b.shape == (1, 3, 64, 64) and out_b.dtype == torch.float32
    clip = animator.animate(np.stack([frame, frame]))
    assert clip.shape == (2, 64, 64, 3) and clip.dtype == np.uint8
    assert isinstance(animator.animate([frame]), list)
    gray = animator(frame[..., 0])
    assert gray.shape == (64, 64, 3)


def test_bad_input():
    config, _, fast = _models("taichi")
    animator = fastmotion.Animator(fast[0], fast[1], config)
    with pytest.raises(RuntimeError, match="set_source"):
        animator(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(TypeError, match="numpy array, a PIL image or a torch tensor"):
        animator.set_source("image.png")
    with pytest.raises(ValueError, match="set_source"):
        animator.set_source(np.zeros((64, 64, 5), np.uint8))
    animator.set_source(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="anchor"):
        animator.animate([np.zeros((64, 64, 3), np.uint8)], anchor=3)
    with pytest.raises(ValueError, match="no driving frames"):
        animator.animate([])
    with pytest.raises(ValueError, match="multiples of"):
        fastmotion.Animator(fast[0], fast[1], config, frame_size=(60, 64))
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        fastmotion.Animator(fast[0], fast[1], config, device="cpu", dtype="fp16")
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        fastmotion.Animator(fast[0], fast[1], config, device="cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="device must be a torch device"):
        fastmotion.Animator(fast[0], fast[1], config, device="gpu")
    with pytest.raises(ValueError, match="dtype must be one of"):
        fastmotion.Animator(fast[0], fast[1], config, dtype="int8")
    with pytest.raises(ValueError, match="random weights"):
        fastmotion.Animator.from_checkpoint("shapes")


def test_bf16_on_cpu_needs_the_instructions(monkeypatch):
    config, _, fast = _models("taichi")
    monkeypatch.setattr(animator_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match="bf16 on CPU needs"):
        fastmotion.Animator(fast[0], fast[1], config, device="cpu", dtype="bf16")


def test_bf16_on_cpu_close_to_fp32():
    if not animator_module.cpu_has_bf16():
        pytest.skip("this CPU has no bfloat16 convolutions (oneDNN reports none)")
    config, _, fast = _models("taichi", move_location=True)
    smooth = torch.nn.functional.interpolate(images(3, 8, seed=7), size=(64, 64), mode="bilinear")
    outs = []
    for dtype in ("fp32", "bf16"):
        animator = fastmotion.Animator(copy.deepcopy(fast[0]), copy.deepcopy(fast[1]), config, dtype=dtype)
        animator.set_source(smooth[0])
        outs.append(animator.animate(smooth[1:]))
    assert outs[1].dtype == torch.float32
    mse = ((outs[0] - outs[1]) ** 2).mean().item()
    psnr = 10 * np.log10(1.0 / max(mse, 1e-20))
    assert psnr > 30, psnr


def test_cuda_graphs_match_eager():
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    config, _, fast = _models("taichi", move_location=True)
    source, frames = images(1, 64, seed=8), images(4, 64, seed=9)
    outs = []
    for graphs in (False, True):
        animator = fastmotion.Animator(copy.deepcopy(fast[0]), copy.deepcopy(fast[1]), config, device="cuda",
                                       cuda_graphs=graphs)
        animator.set_source(source.cuda())
        outs.append(animator.animate(frames.cuda()).cpu())
        animator.set_source(source.cuda())  # a new source re-captures
        outs.append(animator(frames[1].cuda()).cpu())
    assert max_err(outs[0], outs[2]) < 1e-4 and max_err(outs[1], outs[3]) < 1e-4


def test_cuda_graph_step_refuses_cpu_tensors():
    from fastmotion.inference.cuda_graph import CudaGraphStep

    with pytest.raises(ValueError, match="CUDA graphs need CUDA tensors"):
        CudaGraphStep(lambda x: x)(torch.zeros(2))


def test_nvtx_ranges_cost_nothing_when_off(monkeypatch):
    from fastmotion import nvtx

    if nvtx.ENABLED:
        pytest.skip("FASTMOTION_NVTX is set in this environment")
    assert nvtx.range("keypoints") is nvtx.range("decode")  # one shared no-op context
    marks = []
    monkeypatch.setattr(nvtx, "_RANGE", lambda name: marks.append(name) or contextlib.nullcontext())
    config, _, fast = _models("taichi")
    animator = fastmotion.Animator(fast[0], fast[1], config, frame_size=(32, 32))
    animator.set_source(images(1, 32))
    animator(images(1, 32, seed=1)[0])
    assert {"keypoints", "dense motion", "warp", "decode"} <= set(marks)

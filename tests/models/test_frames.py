"""Video (B, C, D, H, W) and frame (B, C, H, W) inputs give the same results; bad inputs get clear errors."""
import pytest
import torch

from fastmotion.models import DenseMotionModule, MovementEmbeddingModule
from tests.models.helpers import build, images, max_err, tiny_config

TOL = 1e-5  # float32; batch size changes the convolutions' summation order


@pytest.fixture(scope="module", params=["reference", None], ids=["reference", "fast"])
def models(request):
    models = build(tiny_config("taichi"), backend=request.param)
    for m in models:
        m.eval()
    return models


def frames_of(kp, i):
    return {k: v[:, i] for k, v in kp.items()}


def test_kp_detector_video_equals_frames(models):
    kp_detector = models[0]
    video = images(2, 32, frames=3)
    with torch.no_grad():
        kp = kp_detector(video)
        assert kp["mean"].shape == (2, 3, 10, 2) and kp["var"].shape == (2, 3, 10, 2, 2)
        for i in range(3):
            single = kp_detector(video[:, :, i])
            assert single["mean"].shape == (2, 10, 2)
            assert max_err(kp["mean"][:, i], single["mean"]) < TOL
            assert max_err(kp["var"][:, i], single["var"]) < TOL


def test_generator_video_equals_frames(models):
    kp_detector, generator, _ = models
    source, driving = images(2, 32, frames=1), images(2, 32, frames=2, seed=1)
    with torch.no_grad():
        kp_source, kp_driving = kp_detector(source), kp_detector(driving)
        out = generator(source, kp_driving, kp_source)  # 2 driving frames share the source
        assert out["video_prediction"].shape == (2, 3, 2, 32, 32)
        assert out["video_deformed"].shape == (2, 3, 2, 32, 32)
        assert out["video_prediction"].is_contiguous()
        for i in range(2):
            single = generator(source[:, :, 0], frames_of(kp_driving, i), frames_of(kp_source, 0))
            assert single["video_prediction"].shape == (2, 3, 32, 32)
            for key in single:
                assert max_err(out[key][:, :, i], single[key]) < TOL, key
        # source keypoints given per driving frame broadcast the same way
        repeated = {k: v.expand(-1, 2, *v.shape[2:]) for k, v in kp_source.items()}
        again = generator(source, kp_driving, repeated)
        assert max_err(again["video_prediction"], out["video_prediction"]) < TOL


def test_dense_motion_and_embedding_video_layout(models):
    generator = models[1]
    dense = generator.dense_motion_module
    kp_detector = models[0]
    source, driving = images(2, 32, frames=1), images(2, 32, frames=2, seed=1)
    with torch.no_grad():
        kp_source, kp_driving = kp_detector(source), kp_detector(driving)
        grid = dense(source, kp_driving, kp_source)
        assert grid.shape == (2, 2, 32, 32, 3)  # the original's (x, y, z = 0)
        assert torch.equal(grid[..., 2], torch.zeros_like(grid[..., 2]))
        single = dense(source[:, :, 0], frames_of(kp_driving, 1), frames_of(kp_source, 0))
        assert single.shape == (2, 32, 32, 2)
        assert max_err(grid[:, 1, ..., :2], single) < TOL
        embedding = dense.mask_embedding(source, kp_driving, kp_source)
        assert embedding.shape == (2, dense.mask_embedding.out_channels, 2, 32, 32)
        single = dense.mask_embedding(source[:, :, 0], frames_of(kp_driving, 0), frames_of(kp_source, 0))
        assert max_err(embedding[:, :, 0], single) < TOL


def test_discriminator_video_equals_frames_for_single_frames(models):
    kp_detector, _, discriminator = models
    video = images(2, 32, frames=1)
    with torch.no_grad():
        kp = kp_detector(video)
        maps = discriminator(video, kp, kp)
        single = discriminator(video[:, :, 0], frames_of(kp, 0), frames_of(kp, 0))
        assert maps[0] is video and single[0].shape == (2, 3, 32, 32)
        for a, b in zip(maps[1:], single[1:]):
            assert a.dim() == 5 and a.shape[2] == 1
            assert max_err(a[:, :, 0], b) < TOL


def test_discriminator_instance_norm_spans_the_video(models):
    """InstanceNorm3d statistics cover all frames of a video: for D > 1 the result is not the
    per-frame one, and a video whose frames are copies of one frame gives that frame's result."""
    kp_detector, _, discriminator = models
    frame = images(2, 32, frames=1)
    video = frame.expand(-1, -1, 2, -1, -1).contiguous()
    with torch.no_grad():
        kp = kp_detector(video)
        maps = discriminator(video, kp, kp)
        single = discriminator(frame, {k: v[:, :1] for k, v in kp.items()}, {k: v[:, :1] for k, v in kp.items()})
        for a, b in zip(maps[1:], single[1:]):
            assert max_err(a[:, :, 1], b[:, :, 0]) < TOL
        mixed = torch.cat([frame, images(2, 32, frames=1, seed=5)], dim=2)
        kp_mixed = kp_detector(mixed)
        joint = discriminator(mixed, kp_mixed, kp_mixed)[2]
        alone = discriminator(mixed[:, :, :1], {k: v[:, :1] for k, v in kp_mixed.items()},
                              {k: v[:, :1] for k, v in kp_mixed.items()})[2]
        assert max_err(joint[:, :, :1], alone) > 1e-3


def test_bad_inputs_name_the_argument(models):
    kp_detector, generator, discriminator = models
    x = images(2, 32)
    kp = kp_detector(x)
    with pytest.raises(ValueError, match="x must be a video"):
        kp_detector(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="3 channels"):
        kp_detector(torch.rand(2, 1, 32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        kp_detector(torch.zeros(2, 3, 32, 32, dtype=torch.long))
    with pytest.raises(TypeError, match="kp_driving must be a dict"):
        generator(x, kp["mean"], kp)
    with pytest.raises(ValueError, match=r"kp_driving\['mean'\] must be \(B, D, K, 2\)"):
        generator(x.unsqueeze(2), kp, kp)
    with pytest.raises(ValueError, match="batch 1, the images have batch 2"):
        generator(x, kp, {k: v[:1] for k, v in kp.items()})
    with pytest.raises(ValueError, match="has 3 keypoints, the module expects 10"):
        generator(x, {k: v[:, :3] for k, v in kp.items()}, kp)
    with pytest.raises(ValueError, match="one frame"):
        generator(images(2, 32, frames=2), {k: v.unsqueeze(1) for k, v in kp.items()},
                  {k: v.unsqueeze(1) for k, v in kp.items()})
    with pytest.raises(ValueError, match=r"kp_driving\['var'\]"):
        generator(x, {"mean": kp["mean"], "var": kp["var"][..., :1]}, kp)
    with pytest.raises(ValueError, match="x has 2 frames"):
        discriminator(images(2, 32, frames=2), {k: v.unsqueeze(1) for k, v in kp.items()},
                      {k: v.unsqueeze(1) for k, v in kp.items()})


def test_constructor_validation():
    with pytest.raises(ValueError, match="heatmap_type"):
        MovementEmbeddingModule(num_kp=3, kp_variance="matrix", num_channels=3, heatmap_type="laplace")
    with pytest.raises(ValueError, match="at least one of"):
        MovementEmbeddingModule(num_kp=3, kp_variance="matrix", num_channels=3, use_heatmap=False)
    with pytest.raises(ValueError, match="backend must be one of"):
        DenseMotionModule(8, 2, 16, {}, 3, 3, "matrix", True, True, backend="gpu")

"""state_dict: the original key names and Conv3d layout, round trips, SyncBatchNorm conversion."""
import pytest
import torch
from torch import nn

import fastmotion

from fastmotion.models import KPDetector, build_models
from fastmotion.models.conv3d_layout import FrameConv2d, spatial_kernel
from tests.models.helpers import build, images, max_err, small_config, tiny_config


def test_conv_weights_are_stored_in_conv3d_layout():
    kp_detector, generator, discriminator = build_models(small_config())
    for module in (kp_detector, generator, discriminator):
        state = module.state_dict()
        for name, sub in module.named_modules():
            if isinstance(sub, FrameConv2d):
                assert sub.weight.dim() == 4
                stored = state[name + ".weight"]
                assert stored.shape == (sub.out_channels, sub.in_channels // sub.groups, 1) + tuple(sub.kernel_size)


def test_original_key_names_and_shapes():
    """Keys and shapes the original modules produce for the shapes config (num_kp 4, 3 channels)."""
    kp_detector, generator, discriminator = build_models(small_config())
    g = {k: tuple(v.shape) for k, v in generator.state_dict().items()}
    assert g["appearance_encoder.down_blocks.0.conv.weight"] == (32, 3, 1, 3, 3)
    assert g["appearance_encoder.down_blocks.0.norm.running_var"] == (32,)
    assert "appearance_encoder.down_blocks.0.norm.num_batches_tracked" in g
    # dense motion: (K+1) * (1 heatmap + 3 deformed source) = 20 input channels, no group blocks
    assert not any(key.startswith("dense_motion_module.group_blocks") for key in g)
    assert g["dense_motion_module.hourglass.decoder.conv.weight"] == (4 + 1 + 2, 16 + 20, 1, 3, 3)
    # video decoder: deepest up block reads 128 features + 4 keypoint heatmaps
    assert g["video_decoder.up_blocks.0.conv.weight"] == (128, 128 + 4, 1, 3, 3)
    assert "video_decoder.conv.weight" not in g  # use_last_conv=False
    assert g["refinement_module.r3.norm2.weight"] == (16 + 3 + 4,)
    assert g["refinement_module.conv-last.weight"] == (3, 23, 1, 1, 1)
    k = {k: tuple(v.shape) for k, v in kp_detector.state_dict().items()}
    assert k["predictor.decoder.conv.weight"] == (4, 16 + 3, 1, 3, 3)
    d = {k: tuple(v.shape) for k, v in discriminator.state_dict().items()}
    assert d["down_blocks.0.conv.weight"] == (64, 3 + 4, 1, 4, 4)
    assert d["down_blocks.1.norm.weight"] == (128,) and "down_blocks.0.norm.weight" not in d
    assert "down_blocks.1.norm.running_mean" not in d  # InstanceNorm(affine=True) keeps no statistics
    assert d["conv.weight"] == (1, 256, 1, 1, 1)
    # taichi: 2 grouped 1x1 blocks over (10 + 1) * (1 + 3) = 44 channels, 11 groups
    taichi = build_models(fastmotion.load_config("taichi"))[1].state_dict()
    assert tuple(taichi["dense_motion_module.group_blocks.1.conv.weight"].shape) == (44, 4, 1, 1, 1)
    assert tuple(taichi["dense_motion_module.group_blocks.1.norm.running_mean"].shape) == (44,)


def test_state_dict_round_trip_reproduces_outputs():
    config = tiny_config("taichi")
    a = build(config, seed=0)
    b = build(config, seed=1)
    for src, dst in zip(a, b):
        state = src.state_dict()
        dst.load_state_dict(state)
        again = dst.state_dict()
        assert state.keys() == again.keys()
        assert all(torch.equal(state[k], again[k]) for k in state)
    for m in a + b:
        m.eval()
    x = images(2, 32, frames=1)
    with torch.no_grad():
        kp_a, kp_b = a[0](x), b[0](x)
        assert torch.equal(kp_a["mean"], kp_b["mean"])
        out_a, out_b = a[1](x, kp_a, kp_a), b[1](x, kp_b, kp_b)
        assert torch.equal(out_a["video_prediction"], out_b["video_prediction"])


def test_loads_two_d_weights_too():
    config = tiny_config()
    a, b = build(config, seed=0)[0], build(config, seed=1)[0]
    state = {k: v.squeeze(2) if v.dim() == 5 else v for k, v in a.state_dict().items()}
    b.load_state_dict(state)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in state)


def test_temporal_conv_weight_is_rejected():
    kp = build_models(tiny_config())[0]
    state = kp.state_dict()
    key = "predictor.encoder.down_blocks.0.conv.weight"
    state[key] = state[key].repeat(1, 1, 3, 1, 1)
    with pytest.raises(RuntimeError, match="temporal kernel size 3"):
        kp.load_state_dict(state)


def test_spatial_kernel_rejects_temporal_kernels():
    assert spatial_kernel((1, 3, 3), (0, 1, 1)) == ((3, 3), (1, 1))
    with pytest.raises(ValueError, match="temporal"):
        spatial_kernel((3, 3, 3), (1, 1, 1))
    with pytest.raises(ValueError, match="Encoder"):
        from fastmotion.models import Encoder
        Encoder(8, 3, temporal=True)


def test_sync_batchnorm_conversion_keeps_keys_and_outputs():
    kp = build(tiny_config())[0].eval()
    keys = set(kp.state_dict())
    x = images(2, 32)
    with torch.no_grad():
        before = kp(x)["mean"]
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(kp).eval()
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
    assert set(synced.state_dict()) == keys
    with torch.no_grad():
        assert max_err(synced(x)["mean"], before) < 1e-6


def test_kp_detector_constructor_matches_original_signature():
    kp = KPDetector(block_expansion=8, num_kp=3, num_channels=1, max_features=16, num_blocks=2, temperature=0.1,
                    kp_variance="single", scale_factor=0.5, clip_variance=None)
    out = kp(torch.rand(2, 1, 3, 16, 16))
    assert out["mean"].shape == (2, 3, 3, 2) and out["var"].shape == (2, 3, 3, 1, 1)
    kp_fixed = KPDetector(8, 3, 1, 16, 2, 0.1, kp_variance=0.01)
    assert set(kp_fixed(torch.rand(2, 1, 16, 16))) == {"mean"}


def test_copy_and_pickle_after_inference():
    """Inference caches (pre-packed oneDNN weights cannot be copied) stay out of copies and pickles."""
    import copy
    import io

    kp, gen, _ = build(tiny_config("taichi"))
    kp.eval()
    gen.eval()
    x = images(1, 32)
    with torch.no_grad():
        kp_x = kp(x)
        expected = gen(x, kp_x, kp_x)["video_prediction"]
        clone = copy.deepcopy(gen)
        buffer = io.BytesIO()
        torch.save(gen, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        for other in (clone, loaded):
            assert torch.equal(other(x, kp_x, kp_x)["video_prediction"], expected)


def test_models_built_in_inference_mode():
    """Parameters created under inference_mode have no version counter: nothing is cached then."""
    x = images(1, 32)
    with torch.inference_mode():
        kp, gen, _ = build(tiny_config("taichi"))
        kp.eval()
        gen.eval()
        out = gen(x, kp(x), kp(x))["video_prediction"]
    ref = build(tiny_config("taichi"), backend="reference")
    with torch.no_grad():
        ref[0].eval()
        ref[1].eval()
        ref[1].load_state_dict(gen.state_dict())
        ref[0].load_state_dict(kp.state_dict())
        assert max_err(out, ref[1](x, ref[0](x), ref[0](x))["video_prediction"]) < 1e-5

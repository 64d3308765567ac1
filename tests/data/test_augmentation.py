"""The training augmentations: each step against an independent computation, and one draw per clip."""
import colorsys

import numpy as np
import pytest
import torch

from fastmotion.data.augmentation import (VideoAugmentation, adjust_brightness, adjust_contrast, adjust_hue,
                                          adjust_saturation, crop, hsv_to_rgb, pad_to, resize, rgb_to_hsv, rotate)

ALL_PARAMS = dict(flip_param={"horizontal_flip": True, "time_flip": True}, rotation_param={"degrees": [-30, 30]},
                  resize_param={"ratio": [0.8, 1.2]}, crop_param={"size": [12, 12]},
                  jitter_param={"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.4})


def _clip(t=3, c=3, h=12, w=12, seed=0):
    return torch.rand((t, c, h, w), generator=torch.Generator().manual_seed(seed))


def test_flips():
    x = _clip()
    aug = VideoAugmentation(flip_param={"horizontal_flip": True, "time_flip": True})
    outcomes = set()
    for seed in range(40):
        y = aug(x, torch.Generator().manual_seed(seed))
        for name, ref in (("none", x), ("time", x[[2, 1, 0]]), ("horizontal", x[..., torch.arange(11, -1, -1)])):
            if torch.equal(y, ref):
                outcomes.add(name)
                break
        else:
            raise AssertionError("the output is not the clip, its time flip or its horizontal flip")
    assert outcomes == {"none", "time", "horizontal"}


@pytest.mark.parametrize("h,w", [(8, 8), (7, 7)])
def test_rotate_quarter_turn_is_rot90(h, w):
    x = _clip(h=h, w=w)
    torch.testing.assert_close(rotate(x, 90), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate(x, -90), torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_rotate_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy (the test extra) not installed")
    x = _clip(t=2, h=9, w=13, seed=1)
    got = rotate(x, 23.0).numpy()
    for t in range(2):
        for c in range(3):
            ref = ndimage.rotate(x[t, c].numpy().astype(np.float64), 23.0, reshape=False, order=1, mode="grid-constant",
                                 cval=0.0)
            np.testing.assert_allclose(got[t, c], ref, atol=1e-5)


def test_resize_nearest_upsampling_repeats_pixels():
    x = _clip(h=4, w=3)
    ref = x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    assert torch.equal(resize(x, (8, 6)), ref)
    assert resize(x, (5, 7), "bilinear").shape == (3, 3, 5, 7)


def test_pad_and_crop_against_numpy():
    x = _clip(h=5, w=4)
    padded = pad_to(x, 8, 9).numpy()
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 2), (2, 3)), mode="edge")
    np.testing.assert_array_equal(padded, ref)
    assert torch.equal(crop(x, 1, 2, 3, 2), x[:, :, 1:4, 2:4])
    # a random crop is one slice, at the same place in every frame
    aug = VideoAugmentation(crop_param={"size": [5, 6]})
    big = _clip(t=4, h=11, w=13, seed=2)
    offsets = set()
    for seed in range(20):
        y = aug(big, torch.Generator().manual_seed(seed))
        assert y.shape == (4, 3, 5, 6)
        found = [(i, j) for i in range(7) for j in range(8) if torch.equal(big[:, :, i:i + 5, j:j + 6], y)]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 5


def _gray(rgb):
    return 0.299 * rgb[..., 0, :, :] + 0.587 * rgb[..., 1, :, :] + 0.114 * rgb[..., 2, :, :]


def test_colour_jitter_against_their_definitions():
    x = _clip(t=2, h=4, w=5, seed=3).double()
    n = x.numpy()
    np.testing.assert_allclose(adjust_brightness(x, 1.4).numpy(), np.clip(n * 1.4, 0, 1), atol=1e-12)
    g = _gray(n)
    mean = g.mean(axis=(-2, -1))[:, None, None, None]
    np.testing.assert_allclose(adjust_contrast(x, 0.6).numpy(), np.clip(0.6 * n + 0.4 * mean, 0, 1), atol=1e-12)
    np.testing.assert_allclose(adjust_saturation(x, 1.7).numpy(), np.clip(1.7 * n - 0.7 * g[:, None], 0, 1), atol=1e-12)
    pixels = n.transpose(0, 2, 3, 1).reshape(-1, 3)
    hsv = rgb_to_hsv(x).numpy().transpose(0, 2, 3, 1).reshape(-1, 3)
    np.testing.assert_allclose(hsv, [colorsys.rgb_to_hsv(*p) for p in pixels], atol=1e-12)
    shifted = adjust_hue(x, 0.3).numpy().transpose(0, 2, 3, 1).reshape(-1, 3)
    ref = [colorsys.hsv_to_rgb((h + 0.3) % 1.0, s, v) for h, s, v in (colorsys.rgb_to_hsv(*p) for p in pixels)]
    np.testing.assert_allclose(shifted, ref, atol=1e-12)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-12, rtol=0)
    # gray pixels have no hue: a hue shift leaves them alone
    gray = torch.full((1, 3, 2, 2), 0.4, dtype=torch.float64)
    torch.testing.assert_close(adjust_hue(gray, 0.25), gray)


def test_every_frame_gets_the_same_parameters():
    frame = _clip(t=1, h=14, w=14, seed=4)
    video = frame.expand(5, 3, 14, 14).clone()
    aug = VideoAugmentation(**ALL_PARAMS)
    outputs = []
    for seed in range(8):
        y = aug(video, torch.Generator().manual_seed(seed))
        assert y.shape == (5, 3, 12, 12)
        assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
        for t in range(1, 5):
            torch.testing.assert_close(y[t], y[0], atol=0, rtol=0)
        outputs.append(y[0])
    assert all(not torch.equal(outputs[0], o) for o in outputs[1:])  # but each clip gets its own draw
    torch.testing.assert_close(aug(video, torch.Generator().manual_seed(3))[0], outputs[3], atol=0, rtol=0)
    # different frames: each output frame is what the same draw does to that frame alone
    params = dict(ALL_PARAMS, flip_param={"horizontal_flip": True})
    aug = VideoAugmentation(**params)
    clip = _clip(t=4, h=14, w=14, seed=5)
    for seed in range(4):
        y = aug(clip, torch.Generator().manual_seed(seed))
        for t in range(4):
            alone = aug(clip[t:t + 1], torch.Generator().manual_seed(seed))[0]
            torch.testing.assert_close(y[t], alone, atol=1e-6, rtol=0)


def test_unknown_or_bad_parameters_name_themselves():
    with pytest.raises(ValueError, match="flip_param.*'vertical_flip'"):
        VideoAugmentation(flip_param={"vertical_flip": True})
    with pytest.raises(ValueError, match="jitter_param"):
        VideoAugmentation(jitter_param={"hue": 0.9})
    with pytest.raises(ValueError, match="crop_param.size"):
        VideoAugmentation(crop_param={"size": [64]})
    with pytest.raises(TypeError):
        VideoAugmentation(shear_param={})

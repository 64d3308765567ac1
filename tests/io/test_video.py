"""fastmotion.io.video: every format round-trips, frames are picked without reading the rest,
and bad files fail with a message that names them."""
import os

import numpy as np
import pytest

from fastmotion.io import VideoError, count_frames, read_image, read_video, write_image, write_video
from tests.shared_data import shared_data



def _clip(t=5, h=32, w=48, seed=0):
    # smooth content survives lossy codecs well enough to compare
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(t):
        base = np.stack([(xx * 5 + i * 9) % 256, (yy * 7 + i * 3) % 256, np.full_like(xx, 40 * i % 256)], -1)
        frames.append(base.astype(np.uint8))
    frames = np.stack(frames)
    frames[:, :2, :2] = rng.integers(0, 255, size=(t, 2, 2, 3), dtype=np.uint8)
    return frames


@pytest.mark.parametrize("ext", [".png", ".gif"])
def test_lossless_round_trip(tmp_path, ext):
    clip = _clip()
    if ext == ".gif":  # a GIF frame holds at most 256 colours: 64 here
        clip = clip // 64 * 64
    path = write_video(tmp_path / f"clip{ext}", clip, fps=10)
    got = read_video(path, frame_shape=clip.shape[1:3])
    assert got.dtype == np.uint8 and got.shape == clip.shape
    np.testing.assert_array_equal(got, clip)
    assert count_frames(path, clip.shape[1:3]) == len(clip)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")], "temporary file left behind"


@pytest.mark.parametrize("ext", [".mp4", ".webm"])
def test_container_round_trip(tmp_path, ext):
    pytest.importorskip("av", reason="PyAV (fastmotion[video]) not installed")
    clip = _clip(t=6, h=31, w=47)  # odd sizes: padded for yuv420p, cropped back on read is not promised
    path = write_video(tmp_path / f"clip{ext}", clip, fps=12)
    got = read_video(path)
    assert got.shape[0] == 6 and got.shape[1] >= 31 and got.shape[2] >= 47
    err = np.abs(got[:, :31, :47].astype(float) - clip.astype(float)).mean()
    assert err < 12, err  # lossy, but the same picture
    assert count_frames(path) == 6
    np.testing.assert_array_equal(read_video(path, frames=[4, 1]), got[[4, 1]])


def test_frame_subset_and_folder(tmp_path):
    clip = _clip(t=4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(clip):
        write_image(folder / f"{i:03d}.png", f)
    (folder / "notes.txt").write_text("not a frame")
    np.testing.assert_array_equal(read_video(folder), clip)
    np.testing.assert_array_equal(read_video(folder, frames=[3, 0, 3]), clip[[3, 0, 3]])
    assert count_frames(folder) == 4


def test_gray_and_alpha_become_rgb(tmp_path):
    from PIL import Image

    gray = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
    Image.fromarray(gray).save(tmp_path / "g.png")
    rgba = np.dstack([_clip(1, 8, 8)[0], np.full((8, 8), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    g = read_image(tmp_path / "g.png")
    assert g.shape == (8, 8, 3) and (g == gray[..., None]).all()
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])


def test_float_frames_are_scaled(tmp_path):
    clip = _clip(t=2)
    path = write_video(tmp_path / "f.png", clip.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(read_video(path, clip.shape[1:3]), clip)


@pytest.mark.parametrize("make, match", [
    (lambda p: p.write_bytes(b"this is not a picture"), "not a readable image"),
    (lambda p: p.write_bytes(b""), "not a readable image"),
    (lambda p: None, "no such file"),
])
def test_bad_files_are_named(tmp_path, make, match):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(VideoError, match=match) as info:
        read_video(path)
    assert str(path) in str(info.value)


def test_truncated_png_is_named(tmp_path):
    path = write_video(tmp_path / "t.png", _clip(t=3, h=64, w=64))
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(VideoError, match="cannot decode") as info:
        read_video(path, (64, 64))
    assert str(path) in str(info.value)


def test_wrong_strip_size_is_named(tmp_path):
    path = write_video(tmp_path / "s.png", _clip(t=3, h=32, w=48))
    with pytest.raises(VideoError, match="cannot be split into 64x64 frames"):
        read_video(path, (64, 64, 3))


def test_unknown_extension_and_missing_frames(tmp_path):
    with pytest.raises(VideoError, match="unknown video format"):
        read_video(tmp_path / "x.txt")
    path = write_video(tmp_path / "c.gif", _clip(t=2))
    with pytest.raises(VideoError, match="frame 5 asked for, but the video has 2 frames"):
        read_video(path, frames=[5])
    with pytest.raises(VideoError, match="no frames"):
        empty = tmp_path / "empty"
        empty.mkdir()
        read_video(empty)


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.gif"
    write_video(path, _clip(t=2))
    before = path.read_bytes()
    with pytest.raises(VideoError):
        write_video(path, np.zeros((0, 4, 4, 3), np.uint8))
    assert path.read_bytes() == before


def test_reads_the_original_strips():
    folder = shared_data("moving-gif", needs="driving.png")
    video = read_video(os.path.join(folder, "source.png"), (128, 128, 3))
    assert video.shape == (11, 128, 128, 3) and video.dtype == np.uint8
    assert count_frames(os.path.join(folder, "driving.png"), (128, 128)) == 26


def test_written_files_are_ordinary_files(tmp_path):
    """The temporary file behind an atomic write is private (0600); the renamed result must have the
    mode a plain open() gives under the umask, or other users cannot read a video or checkpoint."""
    import torch

    from fastmotion.checkpoint import save_checkpoint

    mask = os.umask(0o022)
    try:
        video, ckpt = tmp_path / "clip.gif", tmp_path / "model.pth.tar"
        write_video(video, np.zeros((2, 8, 8, 3), np.uint8))
        save_checkpoint(ckpt, kp_detector=torch.nn.Linear(1, 1))
        for path in (video, ckpt):
            assert os.stat(path).st_mode & 0o777 == 0o644, path
    finally:
        os.umask(mask)

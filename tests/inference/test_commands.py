"""The animate / demo / live commands end to end, as a user runs them, and every bad input giving
one line on stderr, exit code 1 and no output file.

The demo runs on the packaged assets (fastmotion/assets/demo) when they are installed, else on a
stand-in (random weights, tests/inference/standin.py). The shared data's moving-gif strips
(tests/shared_data.py) drive the model with the original's 128x128 strips."""
import os

import numpy as np
import pytest
import torch

from fastmotion import cli
from fastmotion.inference import animator as animator_module
from fastmotion.inference import demo as assets_module
from fastmotion.io import read_image, read_video, write_video
from tests.inference.standin import make_demo_standin, shapes_clip
from tests.shared_data import shared_data

PACKAGED = all(os.path.isfile(os.path.join(assets_module.PACKAGED_DIR, f)) for f in assets_module.FILES.values())


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return make_demo_standin(str(tmp_path_factory.mktemp("demo-standin")))


@pytest.fixture
def demo(standin, monkeypatch):
    """The demo assets: the packaged ones when present, else the stand-in."""
    if PACKAGED:
        monkeypatch.delenv(assets_module.ENV_VAR, raising=False)
        return assets_module.demo_assets()
    monkeypatch.setenv(assets_module.ENV_VAR, standin)
    return assets_module.demo_assets()


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _size(demo) -> int:
    """The demo model's frame size (64 for the stand-in; the packaged model's from its config)."""
    from fastmotion import load_config
    from fastmotion.inference.animator import config_frame_size

    size = config_frame_size(load_config(demo.config)) or read_image(demo.source).shape[:2]
    assert size[0] == size[1], "the tests assume square demo frames"
    return size[0]


def test_demo_writes_the_video_and_the_contact_sheet(demo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "demo")
    assert code == 0, err
    folder = tmp_path / "fastmotion-demo"
    assert str(folder / "contact_sheet.png") in out and "frames/s" in out
    sheet = read_image(folder / "contact_sheet.png")
    video = read_video(folder / "demo.gif")
    h = video.shape[1]
    assert h >= 128 and video.shape[2] == 3 * h + 2 * 2  # source | driving | result
    assert sheet.shape[1] == video.shape[2] and sheet.shape[0] > 3 * h
    assert (folder / "demo.mp4").is_file()
    # the middle panel is the driving clip (enlarged), so consecutive frames differ there
    assert np.abs(video[0, :, h + 2:2 * h + 2].astype(int) - video[-1, :, h + 2:2 * h + 2]).max() > 50


def test_demo_without_assets_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(assets_module.ENV_VAR, str(tmp_path / "nothing"))
    code, _, err = run(capsys, "demo", "--out", tmp_path / "out")
    assert code == 1 and err.count("\n") == 1
    assert "built-in demo model is not installed" in err and "checkpoint.pth.tar" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("ext", [".gif", ".png", ".mp4"])
def test_animate_formats(demo, tmp_path, capsys, ext):
    out = tmp_path / f"out{ext}"
    code, stdout, err = run(capsys, "animate", "--source", demo.source, "--driving", demo.driving, "--out", out,
                            "--quiet")
    assert code == 0, err
    assert "frames/s" in stdout
    size = _size(demo)
    frames = read_video(out, (size, size)) if ext == ".png" else read_video(out)
    assert frames.shape[1:] == (size, size, 3) and len(frames) >= 2


def test_animate_options_and_the_api_agree(demo, tmp_path, capsys):
    import fastmotion

    out = tmp_path / "sbs.png"
    code, _, err = run(capsys, "animate", "--source", demo.source, "--driving", demo.driving, "--out", out,
                       "--side-by-side", "--show-keypoints", "--quiet", "--absolute")
    assert code == 0, err
    strip = read_image(out)
    size = _size(demo)
    width = 3 * size + 2 * 2
    assert strip.shape[0] == size and strip.shape[1] % width == 0
    plain = tmp_path / "plain.png"
    assert run(capsys, "animate", "--source", demo.source, "--driving", demo.driving, "--out", plain, "--quiet",
               "--absolute")[0] == 0
    animator = fastmotion.Animator.from_checkpoint(demo.config, demo.checkpoint, relative=False)
    animator.set_source(read_image(demo.source))
    driving = read_video(demo.driving, (size, size))
    expected = animator.animate(driving)
    got = read_video(plain, (size, size))
    assert np.abs(got.astype(int) - expected).max() <= 1
    # the result panel of the side-by-side row is the plain result with keypoints drawn on it
    row = read_video(out, (size, width))
    differs = np.abs(row[:, :, -size:].astype(int) - got).max(axis=-1) > 1
    assert 0 < differs.mean() < 0.2


def test_animate_best_frame_and_anchor(demo, tmp_path, capsys):
    code, _, err = run(capsys, "animate", "--source", demo.source, "--driving", demo.driving, "--out",
                       tmp_path / "a.gif", "--best-frame", "--quiet")
    assert code == 0, err
    assert "anchor: driving frame" in err
    code, _, err = run(capsys, "animate", "--source", demo.source, "--driving", demo.driving, "--out",
                       tmp_path / "b.gif", "--anchor", "1", "--quiet")
    assert code == 0, err


def test_animate_bf16_on_cpu(demo, tmp_path, capsys):
    args = ["animate", "--source", demo.source, "--driving", demo.driving, "--quiet", "--dtype", "bf16"]
    code, out, err = run(capsys, *args, "--out", tmp_path / "bf16.gif")
    if not animator_module.cpu_has_bf16():
        assert code == 1 and "bf16 on CPU needs" in err
        return
    assert code == 0, err
    assert "cpu bf16" in out


def _moving_gif():
    folder = shared_data("moving-gif", needs="driving.png")
    return os.path.join(folder, "source.png"), os.path.join(folder, "driving.png")


def test_animate_the_moving_gif_strips(demo, tmp_path, capsys):
    source, driving = _moving_gif()
    out = tmp_path / "moving-gif.gif"
    code, stdout, err = run(capsys, "animate", "--source", source, "--source-frame", 3, "--driving", driving,
                            "--out", out, "--side-by-side", "--quiet")
    assert code == 0, err
    frames = read_video(out)
    assert frames.shape[0] == 26  # 128x128 frames of the strip, resized to the model's size
    assert frames.shape[1] == _size(demo) and "26 frames" in stdout


def test_live_with_a_video_file_for_the_camera(demo, tmp_path, capsys):
    pytest.importorskip("cv2", reason="OpenCV (the live / live-headless extra) is not installed")
    camera = tmp_path / "camera.mp4"
    write_video(camera, shapes_clip(8))
    out = tmp_path / "live.gif"
    code, stdout, err = run(capsys, "live", "--driving", camera, "--out", out, "--no-window", "--max-frames", 5,
                            "--side-by-side")
    assert code == 0, err
    assert "5 frames" in stdout and "frames/s" in stdout
    frames = read_video(out)
    size = _size(demo)
    height = max(256, size)  # enlarged for the frames/s text
    assert frames.shape[:2] == (5, height) and abs(frames.shape[2] - (2 * size + 2) * height / size) <= 1


def _garbage(path):
    path.write_bytes(b"not an image at all")
    return path


@pytest.mark.parametrize("case", ["missing source", "missing driving", "unreadable source", "unreadable driving",
                                  "empty video", "checkpoint does not fit", "config without checkpoint",
                                  "missing checkpoint", "bad output extension", "missing output folder",
                                  "anchor out of range", "anchor and best frame", "fp16 on cpu",
                                  "corrupt checkpoint", "strip that does not split", "mp4 without pyav"])
def test_animate_bad_input(demo, tmp_path, capsys, monkeypatch, case):
    out = tmp_path / "out.gif"
    args = {"--source": demo.source, "--driving": demo.driving, "--out": out}
    extra = []
    expect = None
    if case == "missing source":
        args["--source"], expect = tmp_path / "nope.png", "--source"
    elif case == "missing driving":
        args["--driving"], expect = tmp_path / "nope.gif", "--driving"
    elif case == "unreadable source":
        args["--source"], expect = _garbage(tmp_path / "bad.png"), "not a readable image"
    elif case == "unreadable driving":
        args["--driving"], expect = _garbage(tmp_path / "bad.gif"), "not a readable image"
    elif case == "empty video":
        (tmp_path / "frames").mkdir()
        args["--driving"], expect = tmp_path / "frames", "no frames"
    elif case == "checkpoint does not fit":
        extra, expect = ["--config", "vox", "--checkpoint", demo.checkpoint], "does not match the networks"
    elif case == "config without checkpoint":
        extra, expect = ["--config", "vox"], "--config needs --checkpoint"
    elif case == "missing checkpoint":
        extra, expect = ["--config", "shapes", "--checkpoint", tmp_path / "none.pth.tar"], "no such file"
    elif case == "corrupt checkpoint":
        extra, expect = ["--config", "shapes", "--checkpoint", _garbage(tmp_path / "c.pth.tar")], "cannot read"
    elif case == "bad output extension":
        out = args["--out"] = tmp_path / "out.txt"
        expect = "expected a file name ending in"
    elif case == "missing output folder":
        out = args["--out"] = tmp_path / "no" / "out.gif"
        expect = "does not exist"
    elif case == "anchor out of range":
        extra, expect = ["--anchor", "99"], "--anchor 99"
    elif case == "anchor and best frame":
        extra, expect = ["--anchor", "0", "--best-frame"], "pass one"
    elif case == "fp16 on cpu":
        if torch.cuda.is_available():
            pytest.skip("fp16 runs on the CUDA device here")
        extra, expect = ["--dtype", "fp16"], "fp16 needs a CUDA device"
    elif case == "strip that does not split":
        write_video(tmp_path / "odd.png", np.zeros((1, 30, 50, 3), np.uint8))  # 50x30: neither 64 nor square tiles
        args["--driving"], expect = tmp_path / "odd.png", None
    elif case == "mp4 without pyav":
        import builtins

        real_import = builtins.__import__

        def no_av(name, *a, **k):
            if name == "av":
                raise ImportError("no av")
            return real_import(name, *a, **k)

        monkeypatch.setattr(builtins, "__import__", no_av)
        out = args["--out"] = tmp_path / "out.mp4"
        expect = "fastmotion[video]"
    argv = ["animate", "--quiet"] + [x for kv in args.items() for x in kv] + extra
    code, stdout, err = run(capsys, *argv)
    if case == "strip that does not split":  # one frame of the whole image: animated, resized
        assert code == 0, err
        return
    assert code == 1, (case, stdout, err)
    assert err.count("\n") == 1 and err.startswith("fastmotion animate: error: "), err
    assert expect in err, err
    assert not os.path.exists(out)
    assert not [p for p in os.listdir(os.path.dirname(out)) if p.startswith(".")] if os.path.isdir(
        os.path.dirname(out)) else True

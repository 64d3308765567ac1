"""``fastmotion train`` and ``fastmotion reconstruct`` as a user runs them; bad input is one line and exit 1.
The reconstruction protocol against a frame-by-frame loop written from the original's description."""
import csv
import os

import pytest
import torch
import yaml

from fastmotion import cli
from fastmotion.checkpoint import load_checkpoint
from fastmotion.data import FramesDataset
from fastmotion.io import read_video
from fastmotion.models import build_models
from fastmotion.train.package import inference_checkpoint
from fastmotion.train.reconstruction import evaluate_reconstruction
from tests.models.helpers import randomize
from tests.train.helpers import SIZE, synthetic_root, train_config


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(train_config()))
    return path


def test_train_then_reconstruct_end_to_end(tmp_path, capsys, config_file):
    root = synthetic_root(tmp_path, train=4, test=2)
    log_dir = tmp_path / "log"
    code, out, err = run(capsys, "train", "--config", config_file, "--data", root, "--log-dir", log_dir, "--epochs", 2,
                         "--batch-size", 2, "--workers", 0, "--no-progress", "--threads", 1)
    assert code == 0, err
    assert "finished: 4 iterations, epoch 2" in out
    ckpt = log_dir / "checkpoint.pth.tar"
    assert ckpt.is_file() and (log_dir / "log.txt").is_file() and (log_dir / "config.yaml").is_file()
    assert load_checkpoint(ckpt).resume["iteration"] == 4

    # Resuming a finished run trains nothing more and says so.
    code, out, err = run(capsys, "train", "--config", config_file, "--data", root, "--checkpoint", ckpt, "--epochs", 2,
                         "--batch-size", 2, "--workers", 0, "--no-progress")
    assert code == 0, err and "from epoch 2 iteration 4" in out

    out_dir = tmp_path / "rec"
    code, out, err = run(capsys, "reconstruct", "--config", config_file, "--checkpoint", ckpt, "--data", root,
                         "--out", out_dir)
    assert code == 0, err
    assert out.startswith("reconstruction L1 ") and "over 2 test videos" in out
    rows = list(csv.DictReader(open(out_dir / "reconstruction.csv")))
    assert [r["video"] for r in rows] == ["00000.png", "00001.png"] and all(0 < float(r["l1"]) < 1 for r in rows)
    mean = float(out.split()[2])
    assert mean == pytest.approx(sum(float(r["l1"]) for r in rows) / 2, abs=1e-5)
    side = read_video(out_dir / "00000.gif")
    assert side.shape[0] == 4 and side.shape[1] == SIZE and side.shape[2] > 2 * SIZE  # real | reconstruction

    # The packaged form: kp_detector + generator only, float16 storage, same reconstruction.
    small = inference_checkpoint(ckpt, tmp_path / "small.pth.tar")
    data = torch.load(small, weights_only=True)
    assert set(data) >= {"kp_detector", "generator"} and "discriminator" not in data
    assert all(v.dtype == torch.float16 for v in data["generator"].values() if v.is_floating_point())
    assert os.path.getsize(small) < os.path.getsize(ckpt) / 4
    code, out2, err = run(capsys, "reconstruct", "--config", config_file, "--checkpoint", small, "--data", root,
                          "--out", tmp_path / "rec2", "--no-videos")
    assert code == 0, err
    assert float(out2.split()[2]) == pytest.approx(mean, abs=2e-3)


def test_reconstruction_follows_the_original_protocol(tmp_path):
    """Every frame generated from the first one with that frame's own keypoints, one frame at a
    time as the original's loop; L1 per video = mean |generated - real| over all pixels."""
    config = train_config()
    root = synthetic_root(tmp_path, train=1, test=2, frames=3)
    torch.manual_seed(0)
    kp_detector, generator, _ = build_models(config)
    randomize(kp_detector, generator)
    dataset = FramesDataset(root, image_shape=(SIZE, SIZE, 3), is_train=False)
    scores = evaluate_reconstruction(kp_detector, generator, dataset, chunk=2)
    with torch.no_grad():
        for score, index in zip(scores, range(len(dataset))):
            video = dataset[index]["video"].unsqueeze(0)
            kp_source = kp_detector(video[:, :, :1])
            frames = []
            for t in range(video.shape[2]):
                kp_t = kp_detector(video[:, :, t:t + 1])
                frames.append(generator(video[:, :, :1], kp_driving=kp_t, kp_source=kp_source)["video_prediction"])
            expected = (torch.cat(frames, dim=2) - video).abs().mean().item()
            assert score.l1 == pytest.approx(expected, rel=1e-5)
            assert score.frames == 3


def test_untrained_baseline(tmp_path, capsys, config_file):
    root = synthetic_root(tmp_path, train=1, test=2)
    code, out, err = run(capsys, "reconstruct", "--config", config_file, "--data", root, "--out", tmp_path / "r",
                         "--num-videos", 1, "--no-videos")
    assert code == 0, err
    assert "over 1 test videos (untrained model (seed 0))" in out


@pytest.mark.parametrize("case", ["no-data-folder", "empty-folder", "batch-too-big", "bad-config", "bad-checkpoint",
                                  "missing-checkpoint", "bad-epochs", "corrupt-video"])
def test_train_bad_input_is_one_line(tmp_path, capsys, config_file, case):
    root = synthetic_root(tmp_path, train=4, test=1)
    args = ["train", "--config", config_file, "--data", root, "--log-dir", tmp_path / "log", "--workers", 0,
            "--no-progress", "--batch-size", 2, "--epochs", 1]
    expect = None
    if case == "no-data-folder":
        args[4] = tmp_path / "nowhere"
        expect = "no such folder"
    elif case == "empty-folder":
        os.makedirs(tmp_path / "empty")
        args[4] = tmp_path / "empty"
        expect = "has no videos"
    elif case == "batch-too-big":
        args[-3] = 8
        expect = "fewer than one batch"
    elif case == "bad-config":
        args[2] = "no-such-config"
        expect = "unknown config name"
    elif case == "bad-checkpoint":
        (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint")
        args += ["--checkpoint", tmp_path / "junk.pth.tar"]
        expect = "cannot read"
    elif case == "missing-checkpoint":
        args += ["--checkpoint", tmp_path / "missing.pth.tar"]
        expect = "no such file"
    elif case == "bad-epochs":
        args[-1] = 0
        expect = "--epochs must be >= 1"
    elif case == "corrupt-video":
        with open(os.path.join(root, "train", "00001.png"), "wb") as f:
            f.write(b"\x89PNG truncated")
        expect = "00001.png"
    code, out, err = run(capsys, *args)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in err, err
    if case != "corrupt-video":
        assert not (tmp_path / "log" / "checkpoint.pth.tar").exists()


def test_skip_bad_trains_past_a_corrupt_video(tmp_path, capsys, config_file):
    root = synthetic_root(tmp_path, train=4, test=1)
    with open(os.path.join(root, "train", "00001.png"), "wb") as f:
        f.write(b"\x89PNG truncated")
    with pytest.warns(RuntimeWarning, match="skipping a bad video.*00001.png"):
        code, out, err = run(capsys, "train", "--config", config_file, "--data", root, "--log-dir", tmp_path / "log",
                             "--workers", 0, "--no-progress", "--batch-size", 2, "--epochs", 1, "--skip-bad")
    assert code == 0, err
    assert "skipped 1 unreadable video load(s)" in out


def test_reconstruct_bad_input_is_one_line(tmp_path, capsys, config_file):
    root = synthetic_root(tmp_path, train=1, test=1)
    other = tmp_path / "other.pth.tar"
    kp, gen, disc = build_models(train_config(num_blocks=2))
    torch.save({"kp_detector": kp.state_dict(), "generator": gen.state_dict()}, other)
    for argv, expect in [(["--checkpoint", tmp_path / "missing.pth.tar", "--data", root], "no such file"),
                         (["--data", tmp_path / "nowhere"], "no such folder"),
                         (["--checkpoint", other, "--data", root], "does not match the networks")]:
        code, out, err = run(capsys, "reconstruct", "--config", config_file, "--out", tmp_path / "r", *argv)
        assert code == 1 and len(err.strip().splitlines()) == 1 and expect in err, err


def test_sigterm_saves_and_exits_zero(tmp_path, config_file):
    """A scheduler's SIGTERM (or Ctrl-C) stops `fastmotion train` after the current iteration, with a
    checkpoint of that iteration and exit code 0."""
    import signal
    import subprocess
    import sys
    import time

    root = synthetic_root(tmp_path, train=4, test=1)
    log_dir = tmp_path / "log"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "fastmotion", "train", "--config", str(config_file), "--data", root,
                             "--log-dir", str(log_dir), "--epochs", "1000", "--batch-size", "2", "--workers", "0",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        log = log_dir / "log.txt"
        deadline = time.time() + 120
        while not (log.is_file() and log.read_text().strip()):  # the first iteration is done
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no iteration within 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "received SIGTERM" in out + err
    state = load_checkpoint(log_dir / "checkpoint.pth.tar").resume
    assert state["iteration"] >= 1 and state["epoch"] < 1000

"""The synthetic moving-shapes videos: seeded, deterministic, moving, readable as strips."""
import numpy as np
import pytest

from fastmotion.cli import main
from fastmotion.data import write_synthetic_videos
from fastmotion.data.synthetic import render_video, video_rng
from fastmotion.io.video import read_video


def test_same_seed_same_videos_and_more_videos_keep_the_first(tmp_path):
    a_train, a_test = write_synthetic_videos(tmp_path / "a", 2, 1, frames=8, size=32, seed=3)
    b_train, _ = write_synthetic_videos(tmp_path / "b", 3, 0, frames=8, size=32, seed=3)
    c_train, _ = write_synthetic_videos(tmp_path / "c", 1, 0, frames=8, size=32, seed=4)
    assert len(a_train) == 2 and len(a_test) == 1 and len(b_train) == 3
    for x, y in zip(a_train, b_train):
        np.testing.assert_array_equal(read_video(x, (32, 32)), read_video(y, (32, 32)))
    assert not np.array_equal(read_video(a_train[0], (32, 32)), read_video(c_train[0], (32, 32)))
    # train and test draw from different streams
    assert not np.array_equal(read_video(a_train[0], (32, 32)), read_video(a_test[0], (32, 32)))


def test_strip_layout_and_motion(tmp_path):
    train, _ = write_synthetic_videos(tmp_path, 1, 0, frames=12, size=48, seed=0)
    video = read_video(train[0], (48, 48))
    assert video.shape == (12, 48, 48, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video, render_video(video_rng(0, "train", 0), frames=12, size=48))
    # something moves between consecutive frames, and the shapes cover part of (not all of) each frame
    diffs = np.abs(np.diff(video.astype(np.int16), axis=0)).reshape(11, -1).max(axis=1)
    assert (diffs > 50).all()
    background = video[0, 0, 0]
    covered = (np.abs(video.astype(np.int16) - background).sum(-1) > 60).mean(axis=(1, 2))
    assert ((covered > 0.03) & (covered < 0.6)).all(), covered


def test_bad_arguments_name_themselves(tmp_path):
    with pytest.raises(ValueError, match="num_train"):
        write_synthetic_videos(tmp_path, -1, 0)
    with pytest.raises(ValueError, match="size"):
        write_synthetic_videos(tmp_path, 1, 0, size=4)


def test_cli_writes_the_same_videos(tmp_path, capsys):
    code = main(["synthetic", "--out", str(tmp_path / "cli"), "--train", "2", "--test", "1", "--frames", "4",
                 "--size", "32", "--seed", "5", "--quiet"])
    assert code == 0
    assert "wrote 2 training and 1 test videos" in capsys.readouterr().out
    train, test = write_synthetic_videos(tmp_path / "api", 2, 1, frames=4, size=32, seed=5)
    for path in train + test:
        rel = path.split("api", 1)[1]
        np.testing.assert_array_equal(read_video(path, (32, 32)), read_video(str(tmp_path / "cli") + rel, (32, 32)))
    assert main(["synthetic", "--out", str(tmp_path / "x"), "--size", "2"]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "--size must be >= 8" in err

"""FramesDataset reads every format as the original did, splits as the original did, and fails on bad data
with an error that names the file (or folder)."""

import numpy as np
import pytest
import torch
from PIL import Image

from fastmotion.data import DataError, DatasetRepeater, FramesDataset, PairedDataset, seeded_split
from fastmotion.io.video import write_video

from tests.data.helpers import as_video_tensor_numpy, clip, smooth_clip, write_frames_folder


def _test_item(root, name, image_shape):
    ds = FramesDataset(root, image_shape=image_shape, is_train=False)
    item = ds[ds.images.index(name)]
    assert item["name"] == name and item["video"].dtype == torch.float32
    return item["video"].numpy()


def _split_dirs(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    return tmp_path / "train", tmp_path / "test"


def test_lossless_formats_read_exactly(tmp_path):
    train, test = _split_dirs(tmp_path)
    frames = clip(t=3, h=16, w=20)
    few_colours = clip(t=3, h=16, w=20, seed=1, levels=4)
    write_video(test / "strip.png", frames)
    write_video(test / "anim.gif", few_colours)
    write_frames_folder(test / "folder", frames)
    write_video(train / "x.png", frames)
    expected = as_video_tensor_numpy(frames)
    np.testing.assert_array_equal(_test_item(tmp_path, "strip.png", (16, 20, 3)), expected)
    np.testing.assert_array_equal(_test_item(tmp_path, "folder", (16, 20, 3)), expected)
    np.testing.assert_array_equal(_test_item(tmp_path, "anim.gif", (16, 20, 3)), as_video_tensor_numpy(few_colours))


def test_jpg_strip_is_split_by_image_shape(tmp_path):
    _, test = _split_dirs(tmp_path)
    frames = smooth_clip(t=5, h=16, w=16)
    Image.fromarray(np.concatenate(list(frames), axis=1)).save(test / "v.jpg", quality=98)
    got = _test_item(tmp_path, "v.jpg", (16, 16, 3))
    assert got.shape == (3, 5, 16, 16)
    assert np.abs(got - as_video_tensor_numpy(frames)).mean() < 0.02  # JPEG is lossy, the frames are the same


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".mov"])
def test_containers(tmp_path, ext):
    pytest.importorskip("av", reason="PyAV (fastmotion[video]) not installed")
    train, test = _split_dirs(tmp_path)
    frames = smooth_clip(t=6, h=16, w=16)
    write_video(test / f"v{ext}", frames, fps=10)
    write_video(train / f"v{ext}", frames, fps=10)
    got = _test_item(tmp_path, f"v{ext}", (16, 16, 3))
    assert got.shape == (3, 6, 16, 16)
    assert np.abs(got - as_video_tensor_numpy(frames)).mean() < 0.05  # lossy codec, the same picture
    # train mode picks sorted frames of the same video
    ds = FramesDataset(tmp_path, image_shape=(16, 16), is_train=True, num_frames=3)
    torch.manual_seed(0)
    item = ds[0]["video"].numpy()
    assert item.shape == (3, 3, 16, 16)
    picked = [int(np.abs(got - f[:, None]).mean(axis=(0, 2, 3)).argmin()) for f in np.moveaxis(item, 1, 0)]
    assert picked == sorted(picked) and all(np.abs(item[:, i] - got[:, p]).max() < 1e-6 for i, p in enumerate(picked))
    # drawn while decoding once: uniform over the frames, with replacement
    counts = np.zeros(6)
    for _ in range(100):
        item = ds[0]["video"].numpy()
        for f in np.moveaxis(item, 1, 0):
            counts[int(np.abs(got - f[:, None]).mean(axis=(0, 2, 3)).argmin())] += 1
    assert counts.sum() == 300 and counts.min() > 25 and counts.max() < 75, counts


def test_gray_becomes_rgb_and_alpha_is_dropped(tmp_path):
    _, test = _split_dirs(tmp_path)
    frames = clip(t=2, h=8, w=8)
    gray = frames[..., 0]
    Image.fromarray(np.concatenate(list(gray), axis=1), mode="L").save(test / "gray.png")
    rgba = np.concatenate([frames, np.full(frames.shape[:-1] + (1,), 7, np.uint8)], axis=-1)
    Image.fromarray(np.concatenate(list(rgba), axis=1), mode="RGBA").save(test / "rgba.png")
    got_gray = _test_item(tmp_path, "gray.png", (8, 8, 3))
    assert got_gray.shape == (3, 2, 8, 8)
    for c in range(3):
        np.testing.assert_array_equal(got_gray[c], gray.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(_test_item(tmp_path, "rgba.png", (8, 8, 3)), as_video_tensor_numpy(frames))


def test_train_items_are_sorted_random_frames_with_augmentation(tmp_path):
    train, _ = _split_dirs(tmp_path)
    # every frame a distinct constant gray level, so each output frame tells which frame it came from
    frames = np.stack([np.full((8, 8, 3), 10 * i, np.uint8) for i in range(20)])
    write_video(train / "v.png", frames)
    ds = FramesDataset(tmp_path, image_shape=(8, 8, 3), is_train=True, num_frames=4,
                       augmentation_params={"crop_param": {"size": [6, 6]}})
    torch.manual_seed(1)
    seen = set()
    for _ in range(10):
        video = ds[0]["video"]
        assert video.shape == (3, 4, 6, 6)
        levels = [round(float(v) * 255 / 10) for v in video[0, :, 0, 0]]
        assert levels == sorted(levels)
        assert all(torch.all(video[:, i] == video[0, i, 0, 0]) for i in range(4))
        seen.update(levels)
    assert len(seen) > 10  # random frames of the whole video, not always the same ones


def test_seeded_split_is_the_originals():
    names = [f"v{i:02d}" for i in range(10)]
    # recorded with scikit-learn 1.9.1: train_test_split(names, random_state=seed, test_size=0.2)
    assert seeded_split(names, 0) == (["v04", "v09", "v01", "v06", "v07", "v03", "v00", "v05"], ["v02", "v08"])
    names13 = [f"v{i:02d}" for i in range(13)]
    assert seeded_split(names13, 3) == (["v02", "v12", "v05", "v07", "v00", "v11", "v03", "v09", "v08", "v10"],
                                        ["v06", "v04", "v01"])


def test_flat_folder_uses_the_seeded_split(tmp_path):
    frames = clip(t=2, h=8, w=8)
    for i in range(10):
        write_video(tmp_path / f"v{i:02d}.png", frames)
    (tmp_path / "notes.txt").write_text("not a video")
    train = FramesDataset(tmp_path, image_shape=(8, 8), is_train=True, random_seed=0)
    test = FramesDataset(tmp_path, image_shape=(8, 8), is_train=False, random_seed=0)
    assert sorted(train.images + test.images) == [f"v{i:02d}.png" for i in range(10)]
    assert test.images == ["v02.png", "v08.png"]
    other = FramesDataset(tmp_path, image_shape=(8, 8), is_train=False, random_seed=1)
    assert len(other.images) == 2 and other.images != test.images


def test_repeater_and_pairs(tmp_path):
    _, test = _split_dirs(tmp_path)
    for i in range(4):
        write_video(test / f"v{i}.png", clip(t=2, h=8, w=8, seed=i))
    ds = FramesDataset(tmp_path, image_shape=(8, 8), is_train=False)
    rep = DatasetRepeater(ds, 3)
    assert len(rep) == 12 and rep[9]["name"] == ds[1]["name"]
    # random pairs: distinct (driving, source) index pairs among the first number_of_pairs videos
    pairs = PairedDataset(ds, number_of_pairs=3, seed=0)
    assert len(pairs) == 3 and len(set(pairs.pairs)) == 3
    assert all(0 <= a < 3 and 0 <= b < 3 for a, b in pairs.pairs)
    rng = np.random.RandomState(0)  # the original: np.random.seed(seed); np.random.choice(9, 3, replace=False)
    expected = [(int(k) // 3, int(k) % 3) for k in rng.choice(9, 3, replace=False)]
    assert pairs.pairs == expected
    item = pairs[0]
    assert set(item) == {"driving_video", "driving_name", "source_video", "source_name"}
    # a pairs CSV: rows naming unknown videos are dropped, order kept, (driving, source)
    csv = tmp_path / "pairs.csv"
    csv.write_text("distance,source,driving,frame\n0,v1.png,v3.png,0\n0,gone.png,v0.png,0\n0,v2.png,v0.png,0\n")
    listed = PairedDataset(FramesDataset(tmp_path, image_shape=(8, 8), is_train=False, pairs_list=str(csv)), 10)
    assert listed.pairs == [(3, 1), (0, 2)]
    assert listed[1]["driving_name"] == "v0.png" and listed[1]["source_name"] == "v2.png"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="pairs.csv.*'source' and 'driving'"):
        PairedDataset(FramesDataset(tmp_path, image_shape=(8, 8), is_train=False, pairs_list=str(csv)), 10)


# ---- bad data -------------------------------------------------------------------------------------------------

def _bad_folder(tmp_path, name, write):
    train, test = _split_dirs(tmp_path)
    write_video(train / "good.png", clip(t=4, h=8, w=8))
    write(train / name)
    return FramesDataset(tmp_path, image_shape=(8, 8, 3), is_train=True)


def _truncate(path):
    write_video(path, clip(t=4, h=8, w=8, seed=3))
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


@pytest.mark.parametrize("name,write,match", [
    ("junk.png", lambda p: p.write_bytes(b"this is not an image"), "not a readable image"),
    ("cut.png", _truncate, "cannot decode|truncated"),
    ("wide.png", lambda p: write_video(p, clip(t=3, h=8, w=5)), "cannot be split into 8x8 frames"),
    ("tall.gif", lambda p: write_video(p, clip(t=2, h=10, w=8, levels=4)), "10 \\(WxH\\)|8x10"),
    ("empty", lambda p: p.mkdir(), "has no frames"),
])
def test_bad_video_raises_data_error_naming_the_file(tmp_path, name, write, match):
    ds = _bad_folder(tmp_path, name, write)
    index = ds.images.index(name)
    with pytest.raises(DataError, match=match) as info:
        ds[index]
    assert str(tmp_path / "train" / name) in str(info.value)


def _truncated_mp4(path):
    write_video(path, smooth_clip(t=20, h=16, w=16))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])


@pytest.mark.parametrize("write", [lambda p: p.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64), _truncated_mp4],
                         ids=["garbage", "truncated"])
@pytest.mark.parametrize("is_train", [True, False])
def test_bad_mp4_names_the_file(tmp_path, write, is_train):
    pytest.importorskip("av", reason="PyAV (fastmotion[video]) not installed")
    for folder in _split_dirs(tmp_path):
        write_video(folder / "good.png", clip(t=4, h=8, w=8))
        write(folder / "broken.mp4")
    ds = FramesDataset(tmp_path, image_shape=(8, 8, 3), is_train=is_train)
    with pytest.raises(DataError, match="broken.mp4"):
        ds[ds.images.index("broken.mp4")]


def test_skip_bad_warns_counts_and_returns_another_video(tmp_path):
    train, test = _split_dirs(tmp_path)
    write_video(train / "a.png", clip(t=4, h=8, w=8))
    (train / "b.png").write_bytes(b"broken")
    write_video(train / "c.png", clip(t=4, h=8, w=8, seed=2))
    ds = FramesDataset(tmp_path, image_shape=(8, 8), is_train=True, skip_bad=True)
    with pytest.warns(RuntimeWarning, match="b.png"):
        item = ds[1]
    assert item["name"] == "c.png" and ds.skipped == 1
    assert ds[0]["name"] == "a.png" and ds.skipped == 1
    assert DatasetRepeater(ds, 2).skipped == 1
    (train / "a.png").write_bytes(b"broken")
    (train / "c.png").write_bytes(b"broken")
    with pytest.warns(RuntimeWarning), pytest.raises(DataError, match="none of its 3 videos"):
        ds[0]


def test_missing_empty_or_wrong_root_dir_is_one_sentence(tmp_path):
    with pytest.raises(DataError, match=f"root_dir {tmp_path / 'nope'} does not exist"):
        FramesDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no videos"):
        FramesDataset(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="text.*has no videos"):
        FramesDataset(tmp_path / "text")
    (tmp_path / "only_train" / "train").mkdir(parents=True)
    write_video(tmp_path / "only_train" / "train" / "v.png", clip(t=2, h=8, w=8))
    with pytest.raises(DataError, match="no test/ subfolder"):
        FramesDataset(tmp_path / "only_train", image_shape=(8, 8), is_train=False)
    one = tmp_path / "one"
    one.mkdir()
    write_video(one / "v.png", clip(t=2, h=8, w=8))
    with pytest.raises(DataError, match="training part of the seeded 80/20 split.*has no videos"):
        FramesDataset(one, image_shape=(8, 8), is_train=True)
    with pytest.raises(DataError, match="image_shape"):
        FramesDataset(one, image_shape=(8, 8, 4), is_train=False)
    for err in (DataError,):
        assert "\n" not in str(pytest.raises(err, FramesDataset, tmp_path / "nope").value)


def test_train_clips_of_every_format_are_frames_of_the_video(tmp_path):
    train, test = _split_dirs(tmp_path)
    frames = clip(t=4, h=8, w=8, levels=4)
    strip = np.concatenate(list(frames), axis=1)
    Image.fromarray(strip[..., 0], mode="L").save(train / "gray.png")
    Image.fromarray(np.concatenate([strip, np.full(strip.shape[:2] + (1,), 9, np.uint8)], -1), mode="RGBA").save(
        train / "rgba.png")
    Image.fromarray(strip).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(train / "palette.png")
    Image.fromarray(strip).save(train / "rgb.jpg", quality=100)
    for name in ("gray.png", "rgba.png", "palette.png", "rgb.jpg"):
        (test / name).write_bytes((train / name).read_bytes())
    for folder in (train, test):  # and the other formats' training clips
        write_video(folder / "anim.gif", frames)
        write_frames_folder(folder / "frames", frames)
    train_ds = FramesDataset(tmp_path, image_shape=(8, 8), is_train=True, num_frames=3)
    test_ds = FramesDataset(tmp_path, image_shape=(8, 8), is_train=False)
    torch.manual_seed(0)
    for name in train_ds.images:
        whole = test_ds[test_ds.images.index(name)]["video"]  # read_video's reading of every frame
        for _ in range(3):
            video = train_ds[train_ds.images.index(name)]["video"]
            assert video.shape == (3, 3, 8, 8)
            picked = [min(range(4), key=lambda k: float((whole[:, k] - video[:, i]).abs().max())) for i in range(3)]
            assert picked == sorted(picked)
            for i, k in enumerate(picked):
                assert torch.equal(video[:, i], whole[:, k]), name
    gray = test_ds[test_ds.images.index("gray.png")]["video"]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])

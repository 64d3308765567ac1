"""datasets_from_config and make_loader: the config's datasets, batches in a seeded order, errors before
the loop and one-line errors from worker processes."""
import copy
import os

import numpy as np
import pytest
import torch

import fastmotion
from fastmotion.data import (DataError, DatasetRepeater, EpochSampler, FramesDataset, datasets_from_config,
                             make_loader, write_synthetic_videos)

from tests.data.helpers import shared_shapes_dir


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_videos(root, 12, 4, frames=8, size=64, seed=0)
    return str(root)


def test_datasets_from_the_shapes_config(shapes_dir):
    config = copy.deepcopy(fastmotion.load_config("shapes"))
    config["train_params"]["num_repeats"] = 3
    train, test = datasets_from_config(config, root_dir=shapes_dir)
    assert isinstance(train, DatasetRepeater) and len(train) == 36 and len(test) == 4
    item = train[0]
    assert item["video"].shape == (3, 2, 64, 64) and item["video"].dtype == torch.float32
    assert test[0]["video"].shape == (3, 8, 64, 64)
    del config["train_params"]["num_repeats"]
    assert len(datasets_from_config(config, root_dir=shapes_dir)[0]) == 12
    config["dataset_params"]["frame_shape"] = [64, 64, 3]
    with pytest.raises(DataError, match="unknown key.*frame_shape"):
        datasets_from_config(config, root_dir=shapes_dir)
    with pytest.raises(DataError, match="does not exist"):
        datasets_from_config(fastmotion.load_config("shapes"), root_dir=os.path.join(shapes_dir, "missing"))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_in_a_seeded_epoch_order(shapes_dir, workers):
    ds = FramesDataset(shapes_dir, image_shape=(64, 64, 3), is_train=False)
    loader = make_loader(ds, batch_size=3, shuffle=True, workers=workers, seed=7)
    assert isinstance(loader.sampler, EpochSampler) and loader.persistent_workers == (workers > 0)
    assert loader.pin_memory == torch.cuda.is_available()

    def names(epoch):
        loader.sampler.set_epoch(epoch)
        out = []
        for batch in loader:
            assert batch["video"].shape == (3, 3, 8, 64, 64)
            out += batch["name"]
        return out

    first, again = names(0), names(0)
    assert len(first) == 3 and first == again  # 4 videos, batch 3, drop_last
    assert any(names(epoch) != first for epoch in (1, 2, 3))  # another epoch, another order
    order = torch.randperm(4, generator=torch.Generator().manual_seed(7)).tolist()
    assert first == [ds.images[i] for i in order[:3]]


def test_train_items_follow_the_worker_seed(shapes_dir):
    train, _ = datasets_from_config(fastmotion.load_config("shapes"), root_dir=shapes_dir)
    run = lambda: torch.cat([b["video"] for b in make_loader(train, 4, True, 2, seed=3)])  # noqa: E731
    a, b = run(), run()
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a[:, :, 0], a[:, :, 1])  # two different frames of each clip


def test_loader_errors_before_the_loop(shapes_dir):
    ds = FramesDataset(shapes_dir, image_shape=(64, 64), is_train=False)
    with pytest.raises(DataError, match="4 videos, fewer than one batch of 5"):
        make_loader(ds, batch_size=5, shuffle=False, workers=0, seed=0)
    assert len(make_loader(ds, 5, False, 0, 0, drop_last=False)) == 1
    with pytest.raises(DataError, match="batch_size"):
        make_loader(ds, 0, False, 0, 0)


def test_bad_file_in_a_worker_is_one_line_naming_it(tmp_path):
    write_synthetic_videos(tmp_path, 3, 1, frames=4, size=32)
    (tmp_path / "train" / "00001.png").write_bytes(b"broken")
    ds = FramesDataset(tmp_path, image_shape=(32, 32))
    loader = make_loader(ds, 1, False, 1, 0)
    with pytest.raises(DataError) as info:
        for _ in loader:
            pass
    message = str(info.value)
    assert "\n" not in message and "00001.png: not a readable image" in message and "worker" in message
    del loader, info


def test_shared_shapes_loader():
    root = shared_shapes_dir()
    config = fastmotion.load_config("shapes")
    train, test = datasets_from_config(config, root_dir=root)
    assert len(train) == 6400 and len(test) == 1600
    batch = next(iter(make_loader(train, 8, True, 2, seed=0)))
    video = batch["video"]
    assert video.shape == (8, 3, 2, 64, 64)
    # RGBA strips with the alpha dropped: black background, a coloured shape in every frame
    assert float(video.amin()) == 0.0 and (video.transpose(1, 2).flatten(2).amax(-1) > 0.3).all()
    full = test[0]["video"]
    assert full.shape == (3, 32, 64, 64)
    assert np.isfinite(full.numpy()).all()


def test_distributed_loader_uses_this_ranks_share(shapes_dir, tmp_path):
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ds = FramesDataset(shapes_dir, image_shape=(64, 64), is_train=False)
        loader = make_loader(ds, 2, shuffle=True, workers=0, seed=1, distributed=True)
        assert isinstance(loader.sampler, torch.utils.data.distributed.DistributedSampler)
        loader.sampler.set_epoch(3)
        names = [n for batch in loader for n in batch["name"]]
        order = torch.randperm(4, generator=torch.Generator().manual_seed(1 + 3)).tolist()
        assert names == [ds.images[i] for i in order]  # one rank: every video, in the (seed + epoch) order
    finally:
        dist.destroy_process_group()

"""fastmotion.train.Trainer on tiny configs and synthetic videos (CPU, workers 0, seconds each)."""
import math
import os
import signal

import numpy as np
import pytest
import torch

from fastmotion.checkpoint import load_checkpoint
from fastmotion.data import FramesDataset
from fastmotion.io import read_image
from fastmotion.train.trainer import Trainer, TrainingError
from tests.shared_data import shared_data
from tests.train.helpers import max_difference, parameters, synthetic_root, train_config, train_set


def rec_loss(terms):
    return sum(v for k, v in terms.items() if k.endswith("_rec"))


def test_loss_falls_and_logs(tmp_path):
    config = train_config(lr=2e-3, milestones=(100,), log_freq=2)
    root = synthetic_root(tmp_path, train=8)
    log_dir = str(tmp_path / "log")
    trainer = Trainer(config, train_set(root, config), log_dir, epochs=8, batch_size=4, progress=False,
                      picture_every=8)
    result = trainer.fit()
    assert result.stopped == "finished" and result.iteration == 16 and result.epoch == 8
    rec = [rec_loss(d) for d in result.losses]
    assert np.mean(rec[-4:]) < 0.7 * np.mean(rec[:4]), rec
    # log.txt: the original Logger's lines, the mean of the losses since the previous line.
    lines = open(os.path.join(log_dir, "log.txt")).read().splitlines()
    assert [line.split(")")[0] for line in lines] == [f"{i:08d}" for i in range(0, 16, 2)]
    first = dict(part.split(" - ") for part in lines[1].split(") ")[1].split("; "))
    assert set(first) == set(trainer.names)
    expected = np.mean([result.losses[i]["gen_gan"] for i in (1, 2)])
    assert float(first["gen_gan"]) == pytest.approx(expected, abs=1e-5)
    picture = read_image(os.path.join(log_dir, "train-vis", "00000008-rec.png"))
    assert picture.shape[0] > 4 * 32 and picture.std() > 10
    # Checkpoints: the latest and one per epoch (cpk_freq_epoch 1), in the original's layout.
    names = sorted(os.listdir(log_dir))
    assert "checkpoint.pth.tar" in names and "00000007-checkpoint.pth.tar" in names
    data = torch.load(os.path.join(log_dir, "checkpoint.pth.tar"), weights_only=True)
    assert {"kp_detector", "generator", "discriminator", "optimizer_kp_detector", "optimizer_generator",
            "optimizer_discriminator", "epoch", "it"} <= set(data)
    assert data["epoch"] == 7 and data["it"] == 16
    assert any(v.dim() == 5 for v in data["generator"].values())  # Conv3d layout, as the original reads it
    lr = data["optimizer_generator"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(2e-3)


def test_schedule_follows_config(tmp_path):
    config = train_config(lr=1e-3, milestones=(1, 2))
    root = synthetic_root(tmp_path, train=4)
    trainer = Trainer(config, train_set(root, config), str(tmp_path / "log"), epochs=3, batch_size=4,
                      progress=False, picture_every=0)
    lrs = []
    trainer.gradient_hook = lambda t: lrs.append(t.optimizers["optimizer_kp_detector"].param_groups[0]["lr"])
    trainer.fit()
    assert lrs == pytest.approx([1e-3, 1e-4, 1e-5])
    for opt in trainer.optimizers.values():
        assert opt.param_groups[0]["betas"] == (0.5, 0.999)


class StopAt(torch.utils.data.Dataset):
    """The training set, sending this process SIGINT while an item is loaded (a user's Ctrl-C)."""

    def __init__(self, dataset, item=None):
        self.dataset, self.item, self.calls = dataset, item, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.calls += 1
        if self.calls == self.item:
            os.kill(os.getpid(), signal.SIGINT)
        return self.dataset[index]


def test_resume_after_interrupt_equals_uninterrupted(tmp_path):
    """Ctrl-C in the middle of an epoch saves at the current iteration; resuming from that checkpoint
    (weights, Adam moments, schedulers, position in the epoch, random states) ends exactly where an
    uninterrupted run ends. Epoch boundary, a learning-rate milestone and augmentation included."""
    config = train_config(lr=1e-3, milestones=(1,))
    root = synthetic_root(tmp_path, train=8)
    kw = dict(epochs=2, batch_size=4, progress=False, picture_every=0, seed=3)
    full = Trainer(config, StopAt(train_set(root, config)), str(tmp_path / "full"), **kw)
    full_result = full.fit()
    assert full_result.iteration == 4

    interrupted = Trainer(config, StopAt(train_set(root, config), item=10), str(tmp_path / "run"), **kw)
    first = interrupted.fit()
    assert first.stopped == "received SIGINT" and first.iteration == 3 and first.epoch == 1
    checkpoint = load_checkpoint(first.checkpoint)
    assert checkpoint.resume["batch"] == 1 and checkpoint.resume["iteration"] == 3

    resumed = Trainer(config, StopAt(train_set(root, config)), str(tmp_path / "run"), checkpoint=first.checkpoint, **kw)
    assert (resumed.epoch, resumed.batch_in_epoch, resumed.iteration) == (1, 1, 3)
    second = resumed.fit()
    assert second.iteration == 4
    assert second.losses == full_result.losses[3:]
    assert max_difference(parameters(resumed), parameters(full)) == 0.0
    for name, opt in resumed.optimizers.items():
        assert opt.param_groups[0]["lr"] == full.optimizers[name].param_groups[0]["lr"] == pytest.approx(1e-4)


def test_time_budget_and_max_iterations_stop_with_checkpoint(tmp_path):
    config = train_config()
    root = synthetic_root(tmp_path, train=8)
    result = Trainer(config, train_set(root, config), str(tmp_path / "a"), epochs=5, batch_size=4, progress=False,
                     picture_every=0, max_minutes=1e-6).fit()
    assert result.stopped == "time budget" and result.iteration == 1 and os.path.isfile(result.checkpoint)
    result = Trainer(config, train_set(root, config), str(tmp_path / "b"), epochs=5, batch_size=4, progress=False,
                     picture_every=0, max_iterations=3).fit()
    assert result.stopped == "max iterations" and result.iteration == 3


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_tracks_fp32(tmp_path, amp):
    """Short bf16 / fp16 runs stay finite and their losses follow the fp32 run's from the same start.
    Tolerance: each iteration's reconstruction loss within 10 % of fp32's (bf16 keeps 8 bits of
    mantissa; the loss terms themselves are averaged in float32)."""
    device = "cpu" if amp == "bf16" else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available (fp16 autocast + GradScaler is for CUDA)")
    config = train_config(lr=1e-3, milestones=(100,))
    root = synthetic_root(tmp_path, train=8)
    runs = {}
    for mode in ("off", amp):
        trainer = Trainer(config, train_set(root, config), str(tmp_path / mode), epochs=4, batch_size=4,
                          progress=False, picture_every=0, amp=mode, device=device)
        runs[mode] = trainer.fit().losses
    assert all(math.isfinite(v) for d in runs[amp] for v in d.values())
    fp32 = np.array([rec_loss(d) for d in runs["off"]])
    low = np.array([rec_loss(d) for d in runs[amp]])
    assert np.all(np.abs(low - fp32) <= 0.1 * fp32), (fp32, low)
    assert low[-2:].mean() < low[:2].mean()


def test_bad_setups_are_one_sentence(tmp_path):
    config = train_config()
    root = synthetic_root(tmp_path, train=3)
    with pytest.raises(TrainingError, match="has 3 videos, fewer than one batch"):
        Trainer(config, train_set(root, config), str(tmp_path / "log"), batch_size=4, progress=False)
    with pytest.raises(TrainingError, match="--amp must be one of"):
        Trainer(config, train_set(root, config), str(tmp_path / "log"), batch_size=2, amp="fp8", progress=False)
    broken = train_config()
    broken["train_params"]["loss_weights"]["reconstruction"] = [10, 10]
    with pytest.raises(TrainingError, match="needs 4"):
        Trainer(broken, train_set(root, config), str(tmp_path / "log"), batch_size=2, progress=False)
    with pytest.raises(TrainingError, match="no checkpoint file"):
        Trainer(config, train_set(root, config), str(tmp_path / "log"), batch_size=2, progress=False,
                checkpoint=str(tmp_path / "missing.pth.tar"))


def test_test_split_dataset_item_shape(tmp_path):
    """The trainer's input contract with fastmotion.data: (3, T, H, W) videos, frame 0 the source."""
    config = train_config()
    root = synthetic_root(tmp_path, train=4)
    item = FramesDataset(root, image_shape=(32, 32, 3), is_train=True)[0]
    assert item["video"].shape == (3, 2, 32, 32) and item["video"].dtype == torch.float32


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (the 'tensorboard' extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = train_config()
    root = synthetic_root(tmp_path, train=4)
    result = Trainer(config, train_set(root, config), str(tmp_path / "log"), epochs=1, batch_size=2, progress=False,
                     picture_every=0).fit()
    events = EventAccumulator(str(tmp_path / "log" / "tensorboard"))
    events.Reload()
    assert {"loss/gen_gan", "loss/disc_gan", "videos_per_second", "lr"} <= set(events.Tags()["scalars"])
    assert [e.value for e in events.Scalars("loss/gen_gan")] == pytest.approx([d["gen_gan"] for d in result.losses])


def test_loss_falls_on_the_original_shapes_data(tmp_path):
    """The first 8 training videos of the original's shapes data (64x64 strips), its augmentations."""
    root = shared_data("shapes")
    config = train_config(lr=2e-3, milestones=(100,))
    shapes = FramesDataset(root, image_shape=(64, 64, 3), is_train=True,
                           augmentation_params={"flip_param": {"horizontal_flip": True, "time_flip": True}})
    dataset = torch.utils.data.Subset(shapes, range(8))
    result = Trainer(config, dataset, str(tmp_path / "log"), epochs=8, batch_size=4, progress=False,
                     picture_every=0).fit()
    rec = [rec_loss(d) for d in result.losses]
    assert np.mean(rec[-4:]) < 0.7 * np.mean(rec[:4]), rec

"""Two training processes (gloo, CPU) equal one process with the same global batch.

Each process takes half of every global batch; BatchNorm statistics are reduced over both
(SyncBatchNorm2d) and gradients averaged. The runs are in float64, so that what is compared is the
math and not float32 round-off: in float32 the first convolutions' gradients (inputs straight from
the images, then BatchNorm's mean-subtracting backward) differ by up to 1e-4 of their largest
value between any two summation orders, and Adam turns a round-off-level gradient (the bias of a
convolution followed by BatchNorm, zero in exact arithmetic) into a full step of either sign.
Tolerance: 1e-9 relative to each tensor's largest value, for the losses, the averaged gradients
of every iteration, the BatchNorm running statistics and the parameters after the steps.
"""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from fastmotion.data import FramesDataset
from fastmotion.models import build_models
from fastmotion.train.trainer import Trainer
from tests.train.helpers import SIZE, synthetic_root, train_config

LR = 1e-3
STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Float64(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        item = dict(self.dataset[index])
        item["video"] = item["video"].double()
        return item


def _run(root, log_dir, record):
    """Train STEPS iterations on the (deterministic) test-mode videos: every frame, no augmentation."""
    config = train_config(lr=LR, milestones=(100,))
    dataset = Float64(FramesDataset(root, image_shape=(SIZE, SIZE, 3), is_train=False))
    torch.manual_seed(1)
    models = [m.double() for m in build_models(config)]
    trainer = Trainer(config, dataset, log_dir, epochs=1, batch_size=4, progress=False, picture_every=0,
                      max_iterations=STEPS, device="cpu", seed=1, models=models)
    grads = []
    trainer.gradient_hook = lambda t: grads.append(
        {f"{n}.{k}": p.grad.detach().clone() for n, m in t.models.items() for k, p in m.named_parameters()
         if p.grad is not None})
    result = trainer.fit()
    record.update(losses=result.losses, grads=grads, checkpoint=result.checkpoint,
                  state={f"{n}.{k}": v.detach().clone() for n, m in trainer.models.items()
                         for k, v in m.state_dict().items()},
                  sync_norms=sum(type(m).__name__ == "SyncBatchNorm2d" for net in trainer.models.values()
                                 for m in net.modules()))
    return trainer


def _worker(rank, world, port, root, log_dir, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    record = {}
    _run(root, log_dir, record)
    if rank == 0:
        torch.save(record, out)
    torch.distributed.destroy_process_group()


def _close(a, b, rel=1e-9):
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    return float((a.double() - b.double()).abs().max()) <= rel * scale if a.numel() else True


def test_two_processes_equal_one(tmp_path):
    root = synthetic_root(tmp_path, train=1, test=8, frames=3)  # the test split: no random frames or augmentation
    out = str(tmp_path / "rank0.pt")
    mp.start_processes(_worker, args=(2, _free_port(), root, str(tmp_path / "ddp"), out), nprocs=2, join=True,
                       start_method="spawn")
    ddp = torch.load(out, weights_only=False)
    single = {}
    _run(root, str(tmp_path / "single"), single)

    assert ddp["sync_norms"] > 0 and single["sync_norms"] == 0
    assert len(ddp["losses"]) == len(single["losses"]) == STEPS
    for a, b in zip(ddp["losses"], single["losses"]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-9), k
    for i, (a, b) in enumerate(zip(ddp["grads"], single["grads"])):
        assert a.keys() == b.keys()
        bad = [(k, float((a[k] - b[k]).abs().max()), float(b[k].abs().max())) for k in a if not _close(a[k], b[k])]
        assert not bad, (i, bad[:5])
    assert ddp["state"].keys() == single["state"].keys()  # SyncBatchNorm2d keeps BatchNorm2d's state_dict keys
    stats = [k for k in single["state"] if "running_" in k]
    assert stats and all(_close(ddp["state"][k], single["state"][k]) for k in stats)
    moved = [k for k in single["state"] if ddp["state"][k].is_floating_point()]
    bad = [k for k in moved if not _close(ddp["state"][k], single["state"][k])]
    assert not bad, bad[:5]
    # Rank 0 wrote the checkpoint, with plain BatchNorm keys.
    data = torch.load(ddp["checkpoint"], weights_only=True)
    assert set(data["generator"]) == {k.split(".", 1)[1] for k in single["state"] if k.startswith("generator.")}

"""Checkpoints: the original format (Conv3d weights, DataParallel prefixes, optimizer states),
fastmotion's own, atomic writes and clear errors that leave the models untouched."""
import errno
import os
import re

import pytest
import torch

import fastmotion
from fastmotion import checkpoint as ckpt
from tests.models.helpers import build, tiny_config

CONFIG = tiny_config("taichi")


def original_dict(models, prefix=""):
    """A checkpoint dict as the original Logger.save_cpk writes it (5-D conv weights)."""
    kp, gen, disc = models
    data = {name: {prefix + k: v.clone() for k, v in m.state_dict().items()}
            for name, m in zip(("kp_detector", "generator", "discriminator"), models)}
    data.update(epoch=7, it=700)
    return data


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("prefix", ["", "module."], ids=["plain", "data_parallel"])
def test_loads_original_format(tmp_path, prefix):
    models = build(CONFIG, seed=1)
    path = tmp_path / "00000007-checkpoint.pth.tar"
    data = original_dict(models, prefix)
    assert data["generator"][prefix + "appearance_encoder.down_blocks.0.conv.weight"].dim() == 5
    torch.save(data, path)
    loaded = fastmotion.load_checkpoint(path, CONFIG)
    for a, b in zip(models, (loaded.kp_detector, loaded.generator, loaded.discriminator)):
        assert_same_weights(a, b)
    assert (loaded.epoch, loaded.it) == (7, 700)


def test_original_format_needs_config(tmp_path):
    path = tmp_path / "c.pth.tar"
    torch.save(original_dict(build(CONFIG)), path)
    with pytest.raises(ValueError, match="pass config="):
        fastmotion.load_checkpoint(path)


def test_loads_into_given_models_and_optimizers(tmp_path):
    models = build(CONFIG, seed=1)
    gen = models[1]
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3, betas=(0.5, 0.999))
    out = gen(torch.rand(1, 3, 32, 32), *(2 * [models[0](torch.rand(1, 3, 32, 32))]))
    out["video_prediction"].mean().backward()
    opt.step()
    path = tmp_path / "c.pth.tar"
    ckpt.save_checkpoint(path, kp_detector=models[0], generator=gen, discriminator=models[2],
                         optimizers={"optimizer_generator": opt}, epoch=3, it=30, fmt="original")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"kp_detector", "generator", "discriminator", "optimizer_generator", "epoch", "it"}
    # the optimizer state of a conv weight is stored in the original 5-D layout too
    index = [n for n, _ in gen.named_parameters()].index("appearance_encoder.down_blocks.0.conv.weight")
    assert raw["optimizer_generator"]["state"][index]["exp_avg"].dim() == 5

    target = build(CONFIG, seed=2)
    target_opt = torch.optim.Adam(target[1].parameters(), lr=1e-3, betas=(0.5, 0.999))
    loaded = fastmotion.load_checkpoint(path, CONFIG, kp_detector=target[0], generator=target[1],
                                        discriminator=target[2], optimizers={"optimizer_generator": target_opt})
    assert loaded.generator is target[1]
    assert_same_weights(gen, target[1])
    state_a, state_b = opt.state_dict()["state"], target_opt.state_dict()["state"]
    for i in state_a:
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state_a[i][key], state_b[i][key])
    target_opt.step()  # shapes line up with the 2-D parameters


def test_fastmotion_format_round_trip_without_config(tmp_path):
    models = build(CONFIG, seed=4)
    path = ckpt.save_checkpoint(tmp_path / "sub" / "fm.pth.tar", kp_detector=models[0], generator=models[1],
                                discriminator=models[2], epoch=1, config=CONFIG)
    loaded = fastmotion.load_checkpoint(path)
    assert loaded.config == CONFIG
    for a, b in zip(models, (loaded.kp_detector, loaded.generator, loaded.discriminator)):
        assert_same_weights(a, b)
    # also readable as a plain original checkpoint (extra 'fastmotion' entry aside)
    raw = torch.load(path, weights_only=True)
    assert raw["fastmotion"]["format"] == "fastmotion-monkeynet"


def test_partial_checkpoint(tmp_path):
    models = build(CONFIG)
    path = ckpt.save_checkpoint(tmp_path / "kp.pth.tar", kp_detector=models[0], fmt="original")
    loaded = fastmotion.load_checkpoint(path, CONFIG)
    assert loaded.generator is None and loaded.discriminator is None
    assert_same_weights(models[0], loaded.kp_detector)


def test_mismatch_names_keys_and_leaves_models_untouched(tmp_path):
    source = build(CONFIG, seed=1)
    data = original_dict(source)
    del data["generator"]["refinement_module.r0.conv1.weight"]
    data["generator"]["refinement_module.r9.conv1.weight"] = torch.zeros(1)
    data["discriminator"]["conv.weight"] = torch.zeros(2, 256, 1, 1, 1)
    path = tmp_path / "bad.pth.tar"
    torch.save(data, path)
    target = build(CONFIG, seed=2)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in target]
    with pytest.raises(RuntimeError) as info:
        fastmotion.load_checkpoint(path, CONFIG, kp_detector=target[0], generator=target[1],
                                   discriminator=target[2])
    message = str(info.value)
    assert "bad.pth.tar" in message
    assert "generator: missing keys [refinement_module.r0.conv1.weight]" in message
    assert "unexpected keys [refinement_module.r9.conv1.weight]" in message
    assert "discriminator: shape mismatch" in message and "conv.weight" in message
    for m, state in zip(target, before):  # the kp_detector part was valid but must not be loaded either
        for k, v in m.state_dict().items():
            assert torch.equal(v, state[k]), k


def test_missing_batchnorm_counters_are_tolerated(tmp_path):
    """Checkpoints of PyTorch < 0.4.1 have no num_batches_tracked."""
    source = build(CONFIG, seed=1)
    data = original_dict(source)
    for name in ("kp_detector", "generator"):
        data[name] = {k: v for k, v in data[name].items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth.tar"
    torch.save(data, path)
    loaded = fastmotion.load_checkpoint(path, CONFIG)
    assert torch.equal(loaded.generator.state_dict()["refinement_module.r0.conv1.weight"],
                       source[1].state_dict()["refinement_module.r0.conv1.weight"])


def test_corrupt_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        fastmotion.load_checkpoint(tmp_path / "nope.pth.tar", CONFIG)
    good = tmp_path / "good.pth.tar"
    torch.save(original_dict(build(CONFIG)), good)
    corrupt = tmp_path / "corrupt.pth.tar"
    corrupt.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(RuntimeError, match="corrupt.pth.tar.*cannot read|cannot read.*corrupt.pth.tar"):
        fastmotion.load_checkpoint(corrupt, CONFIG)
    other = tmp_path / "other.pth.tar"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(RuntimeError, match="not a Monkey-Net checkpoint"):
        fastmotion.load_checkpoint(other, CONFIG)


@pytest.mark.parametrize("error, message", [
    (OSError("disk full"), "disk full"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "cannot write '{path}': No space left on device")],
    ids=["any error", "full disk"])
def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch, error, message):
    """A write that fails half-way names the target and the cause and leaves the previous file
    and no temporary."""
    models = build(CONFIG)
    path = tmp_path / "c.pth.tar"
    ckpt.save_checkpoint(path, kp_detector=models[0], epoch=1)
    original = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match=message.format(path=re.escape(str(path)))) as info:
        ckpt.save_checkpoint(path, kp_detector=models[0], epoch=2)
    assert info.value.errno == error.errno
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["c.pth.tar"]  # no temporary left behind


def test_save_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        ckpt.save_checkpoint(tmp_path / "x.pth")
    with pytest.raises(ValueError, match="fmt"):
        ckpt.save_checkpoint(tmp_path / "x.pth", kp_detector=build(CONFIG)[0], fmt="onnx")


def test_config_by_packaged_name(tmp_path):
    from fastmotion.models import build_models

    models = build_models(fastmotion.load_config("shapes"))
    path = ckpt.save_checkpoint(tmp_path / "shapes.pth.tar", generator=models[1], fmt="original")
    loaded = fastmotion.load_checkpoint(path, "shapes")
    assert_same_weights(models[1], loaded.generator)


def test_unreadable_files_name_the_file_and_the_cause(tmp_path):
    """Empty, text, truncated and unsafe files: the path and what is wrong, in one line, without
    torch's advice to turn off safe loading."""
    empty = tmp_path / "empty.pth.tar"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pth.tar"
    text.write_text("epoch 3 loss 0.21\n" * 20)
    good = tmp_path / "good.pth.tar"
    torch.save(original_dict(build(CONFIG)), good)
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(good.read_bytes()[:4096])
    cases = [(empty, "the file is empty"), (text, "it is not a PyTorch checkpoint .*starts with b'epoch 3"),
             (truncated, "the file is truncated or corrupt")]
    for path, cause in cases:
        with pytest.raises(RuntimeError, match=f"cannot read '{re.escape(str(path))}': {cause}") as info:
            fastmotion.load_checkpoint(path, CONFIG)
        message = str(info.value)
        assert "\n" not in message and "Weights only load failed" not in message
        assert info.value.__cause__ is None  # torch's own error (and advice) is not chained on
        assert info.value.__context__ is None or info.value.__suppress_context__


class NotATensor:
    pass


def test_unsafe_object_is_named(tmp_path):
    path = tmp_path / "objects.pth.tar"
    torch.save({"kp_detector": NotATensor()}, path)
    with pytest.raises(RuntimeError, match=f"stores a Python object of type {__name__}.NotATensor") as info:
        fastmotion.load_checkpoint(path, CONFIG)
    assert "Weights only load failed" not in str(info.value)


def test_unwritable_folder_names_the_target(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    target = blocker / "c.pth.tar"
    with pytest.raises(OSError, match=f"cannot write '{re.escape(str(target))}'"):
        ckpt.save_checkpoint(target, kp_detector=build(CONFIG)[0])

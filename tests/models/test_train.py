"""The original losses and training iteration (fastmotion.train)."""
import pytest
import torch

from fastmotion.train import losses
from fastmotion.train.step import split_kp, train_step
from tests.models.helpers import build, copy_weights, images, max_err, tiny_config

WEIGHTS = {"reconstruction": [10, 10, 0, 10, 1], "reconstruction_deformed": 10, "generator_gan": 1,
           "discriminator_gan": 1}


def maps(seed, batch=2):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand((batch, c, 1, s, s), generator=gen, dtype=torch.float64) for c, s in
            ((3, 8), (4, 4), (4, 2), (2, 2), (1, 1), (1, 1))]


def test_losses_by_hand():
    fake, real = maps(0), maps(1)
    deformed = torch.rand_like(real[0])
    values = losses.generator_loss(fake, real, deformed, WEIGHTS)
    assert losses.generator_loss_names(WEIGHTS) == ["rec_def", "layer-0_rec", "layer-1_rec", "layer-3_rec",
                                                      "layer-4_rec", "gen_gan"]
    expected = [10 * (real[0] - deformed).abs().flatten(1).mean(1)]
    for i, w in enumerate(WEIGHTS["reconstruction"]):
        if w:
            expected.append(w * (fake[i] - real[i]).abs().flatten(1).mean(1))
    expected.append(((1 - fake[-1]) ** 2).flatten(1).mean(1))
    assert len(values) == len(expected)
    for v, e in zip(values, expected):
        assert v.shape == (2,) and torch.allclose(v, e)
    (disc,) = losses.discriminator_loss(fake, real, WEIGHTS)
    assert torch.allclose(disc, ((1 - real[-1]) ** 2 + fake[-1] ** 2).flatten(1).mean(1))
    assert losses.reconstruction_loss(fake[0], real[0], 0) == 0


def test_losses_match_original():
    from tests.models.original_monkeynet import load_original

    original = load_original()["losses"]
    fake, real = maps(2), maps(3)
    deformed = torch.rand_like(real[0])
    for a, b in zip(losses.generator_loss(fake, real, deformed, WEIGHTS),
                    original.generator_loss(fake, real, deformed, WEIGHTS)):
        assert torch.equal(a, b)
    assert torch.equal(losses.discriminator_loss(fake, real, WEIGHTS)[0],
                       original.discriminator_loss(fake, real, WEIGHTS)[0])
    assert losses.generator_loss_names(WEIGHTS) == original.generator_loss_names(WEIGHTS)


def test_split_kp():
    kp = {"mean": torch.rand(2, 3, 4, 2, requires_grad=True)}
    parts = split_kp(kp, detach=True)
    assert parts["kp_source"]["mean"].shape == (2, 1, 4, 2) and parts["kp_driving"]["mean"].shape == (2, 2, 4, 2)
    assert not parts["kp_driving"]["mean"].requires_grad


def grads_after_step(models, detach_kp_discriminator, seed=0):
    train_params = {"detach_kp_generator": False, "detach_kp_discriminator": detach_kp_discriminator,
                    "loss_weights": dict(WEIGHTS)}
    for m in models:
        m.train()
        m.zero_grad(set_to_none=True)
    source, video = images(2, 32, frames=1, seed=seed, dtype=torch.float64), \
        images(2, 32, frames=1, seed=seed + 1, dtype=torch.float64)
    result = train_step(*models, source, video, train_params)
    grads = {}
    for name, m in zip(("kp", "gen", "disc"), models):
        grads.update({f"{name}.{k}": p.grad for k, p in m.named_parameters() if p.grad is not None})
    return result, grads


@pytest.mark.parametrize("detach", [True, False], ids=["detach_kp_disc", "kp_through_disc"])
def test_train_step_fast_equals_reference(detach):
    """The fast step (no discriminator weight gradients in the generator step, fused ops,
    model rewrites) leaves the same gradients as the original iteration."""
    config = tiny_config("taichi")
    ref = build(config, backend="reference", dtype=torch.float64)
    fast = build(config, dtype=torch.float64)
    copy_weights(ref, fast)
    res_ref, grads_ref = grads_after_step(ref, detach)
    res_fast, grads_fast = grads_after_step(fast, detach)
    assert res_fast["generator"] == pytest.approx(res_ref["generator"], rel=1e-10)
    assert res_fast["discriminator"] == pytest.approx(res_ref["discriminator"], rel=1e-10)
    assert grads_ref.keys() == grads_fast.keys()
    assert any(k.startswith("disc.") for k in grads_ref)
    for key in grads_ref:
        assert max_err(grads_fast[key], grads_ref[key]) <= 1e-8 * max(1.0, grads_ref[key].abs().max().item()), key
    for m in fast:  # parameters are trainable again after the step
        assert all(p.requires_grad for p in m.parameters())


def test_train_step_with_optimizers_updates_all_networks():
    config = tiny_config("taichi")
    models = build(config)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    optimizers = {f"optimizer_{n}": torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.5, 0.999))
                  for n, m in zip(("kp_detector", "generator", "discriminator"), models)}
    train_params = {"detach_kp_generator": False, "detach_kp_discriminator": True, "loss_weights": dict(WEIGHTS)}
    result = train_step(*models, images(2, 32, frames=1), images(2, 32, frames=1, seed=1), train_params, optimizers)
    assert set(result) == {"generator", "discriminator"}
    for m, state in zip(models, before):
        changed = [k for k, v in m.state_dict().items() if k.endswith("weight") and not torch.equal(v, state[k])]
        assert changed, type(m).__name__
        assert all(p.grad is None or not p.grad.abs().sum() for p in m.parameters())  # zeroed after stepping

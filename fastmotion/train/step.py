"""One Monkey-Net training iteration, as the original ``train.py`` runs it.

Generator step: keypoints of ``cat([source, video], frames)``, generator, discriminator on the
generated and the real video, :func:`generator_loss`, backward. Discriminator step:
discriminator on the detached prediction and the real video, :func:`discriminator_loss`,
backward. The original zeroes the discriminator's gradients between the two steps, so the
gradients the generator loss sends into the discriminator's weights are never used; the fast
path does not compute them, and scores the generated and the real video in one discriminator
call (per-sample layers only: the same maps). Same resulting gradients, less work.

When the keypoints are detached for the discriminator (every original config), the fast path
also reuses the generator step's discriminator forward for the discriminator step: the
discriminator's weights have not changed in between (the original steps only the generator and
the keypoint detector there) and its layers are per-sample, so the original's second forward
computes the same maps. The discriminator loss is back-propagated into the discriminator's
weights only (``backward(inputs=...)``: nothing flows into the generator, exactly as the
original's ``detach()`` ensures), the generator loss into the generator and detector only.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Dict, Mapping, Optional

import torch
from torch import nn

from fastmotion.train.losses import (discriminator_loss, discriminator_loss_names, generator_loss,
                                     generator_loss_names)


def split_kp(kp_joined: Dict[str, torch.Tensor], detach: bool = False):
    """Keypoints of ``cat([source, video], dim=2)`` -> ``{'kp_driving': frames 1.., 'kp_source': frame 0}``."""
    def take(v, sl):
        v = v[:, sl]
        return v.detach() if detach else v

    return {"kp_driving": {k: take(v, slice(1, None)) for k, v in kp_joined.items()},
            "kp_source": {k: take(v, slice(0, 1)) for k, v in kp_joined.items()}}


@contextlib.contextmanager
def frozen(module: nn.Module, enabled: bool = True):
    """Parameters of ``module`` do not require grad inside the block (restored after)."""
    if not enabled:
        yield
        return
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def discriminate_pair(discriminator, generated, real, kp_dict, fused: bool = False):
    """``(discriminator(generated), discriminator(real))`` with the same keypoints. ``fused``: one
    call on both batches (per-sample layers only, so the same maps; larger, faster convolutions)."""
    if not fused:
        return discriminator(generated, **kp_dict), discriminator(real, **kp_dict)
    b = generated.shape[0]
    kp_twice = {name: {k: torch.cat([v, v], dim=0) for k, v in kp.items()} for name, kp in kp_dict.items()}
    maps = discriminator(torch.cat([generated, real], dim=0), **kp_twice)
    return [generated] + [m[:b] for m in maps[1:]], [real] + [m[b:] for m in maps[1:]]


def _fused(discriminator) -> bool:
    return bool(getattr(discriminator, "fast_path", lambda: False)())


def generator_losses(kp_detector, generator, discriminator, source, video, train_params: Mapping,
                     return_maps: bool = False):
    """The original ``GeneratorFullModel.forward``: ``(loss terms, generated, kp_joined)``
    (and the discriminator's ``(maps_generated, maps_real)`` with ``return_maps``)."""
    kp_joined = kp_detector(torch.cat([source, video], dim=2))
    generated = generator(source, **split_kp(kp_joined, train_params["detach_kp_generator"]))
    kp_dict = split_kp(kp_joined, False)
    maps_generated, maps_real = discriminate_pair(discriminator, generated["video_prediction"], video, kp_dict,
                                                  _fused(discriminator))
    generated.update(kp_dict)
    losses = generator_loss(maps_generated, maps_real, generated["video_deformed"], train_params["loss_weights"])
    if return_maps:
        return losses, generated, kp_joined, (maps_generated, maps_real)
    return losses, generated, kp_joined


def discriminator_losses(discriminator, video, kp_joined, generated, train_params: Mapping):
    """The original ``DiscriminatorFullModel.forward``: the discriminator's loss terms."""
    kp_dict = split_kp(kp_joined, train_params["detach_kp_discriminator"])
    maps_generated, maps_real = discriminate_pair(discriminator, generated["video_prediction"].detach(), video,
                                                  kp_dict, _fused(discriminator))
    return discriminator_loss(maps_generated, maps_real, train_params["loss_weights"])


def train_step(kp_detector, generator, discriminator, source, video, train_params: Mapping,
               optimizers: Optional[Mapping[str, torch.optim.Optimizer]] = None, *,
               forward_context: Callable[[], ContextManager] = contextlib.nullcontext,
               scaler=None, return_terms: bool = False, return_generated: bool = False) -> Dict:
    """One iteration of the original training loop; returns the summed generator and
    discriminator losses. ``source (B, C, 1, H, W)``, ``video (B, C, D, H, W)``.

    ``optimizers`` (``optimizer_generator``, ``optimizer_discriminator``, ``optimizer_kp_detector``)
    are stepped and zeroed as in the original; without them only the gradients are computed,
    left on the parameters as the original's would be just before each optimizer step (the
    discriminator's gradients cleared after the generator step). The trainer steps the optimizers
    itself (after averaging gradients across processes, through a GradScaler): nothing of the
    original's order is lost, as no forward pass reads a weight that an earlier step changed.

    ``forward_context``: a context manager factory around the forward passes (autocast), the
    backward passes run outside it. ``scaler``: a ``torch.amp.GradScaler`` whose ``scale`` is
    applied to both losses before their backward (the caller unscales and steps).
    ``return_terms``: also the mean of every loss term, under :func:`generator_loss_names` /
    :func:`discriminator_loss_names`; ``return_generated``: also ``'generated'`` (the generator's
    output with the keypoints, detached), for pictures.
    """
    optimizers = dict(optimizers or {})
    detach_disc = train_params["detach_kp_discriminator"]
    fast = discriminator.fast_path() if hasattr(discriminator, "fast_path") else False
    scale = scaler.scale if scaler is not None else (lambda loss: loss)
    if fast and detach_disc:
        return _train_step_shared_discriminator(kp_detector, generator, discriminator, source, video, train_params,
                                                optimizers, forward_context, scale, return_terms, return_generated)
    with frozen(discriminator, fast), forward_context():
        losses, generated, kp_joined = generator_losses(kp_detector, generator, discriminator, source, video,
                                                        train_params)
        losses = [_mean(v) for v in losses]
        loss_g = sum(losses)
    scale(loss_g).backward(retain_graph=not detach_disc)
    if "optimizer_generator" in optimizers:
        optimizers["optimizer_generator"].step()
        optimizers["optimizer_generator"].zero_grad()
    if "optimizer_discriminator" in optimizers:
        optimizers["optimizer_discriminator"].zero_grad()
    else:
        discriminator.zero_grad(set_to_none=True)
    if detach_disc and "optimizer_kp_detector" in optimizers:
        optimizers["optimizer_kp_detector"].step()
        optimizers["optimizer_kp_detector"].zero_grad()

    with forward_context():
        losses_d = [_mean(v) for v in discriminator_losses(discriminator, video, kp_joined, generated,
                                                                   train_params)]
        loss_d = sum(losses_d)
    scale(loss_d).backward()
    if "optimizer_discriminator" in optimizers:
        optimizers["optimizer_discriminator"].step()
        optimizers["optimizer_discriminator"].zero_grad()
    if not detach_disc and "optimizer_kp_detector" in optimizers:
        optimizers["optimizer_kp_detector"].step()
        optimizers["optimizer_kp_detector"].zero_grad()
    return _result(loss_g, loss_d, losses, losses_d, generated, train_params, return_terms, return_generated)


def _result(loss_g, loss_d, losses_g, losses_d, generated, train_params, return_terms, return_generated) -> Dict:
    out = {"generator": float(loss_g.detach()), "discriminator": float(loss_d.detach())}
    if return_terms:
        names = generator_loss_names(train_params["loss_weights"]) + discriminator_loss_names()
        out["terms"] = dict(zip(names, [float(v.detach()) for v in list(losses_g) + list(losses_d)]))
    if return_generated:
        out["generated"] = {k: (v.detach() if isinstance(v, torch.Tensor) else {n: t.detach() for n, t in v.items()})
                            for k, v in generated.items()}
    return out


def _mean(loss: torch.Tensor) -> torch.Tensor:
    """Mean of a per-sample loss term; half-precision terms (autocast) are averaged in float32."""
    return loss.float().mean() if loss.dtype in (torch.float16, torch.bfloat16) else loss.mean()


def _trainable(*modules):
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def _train_step_shared_discriminator(kp_detector, generator, discriminator, source, video, train_params, optimizers,
                                     forward_context, scale, return_terms, return_generated):
    """The fast iteration with one discriminator forward for both steps (see the module doc)."""
    with forward_context():
        losses, generated, kp_joined, maps = generator_losses(kp_detector, generator, discriminator, source, video,
                                                              train_params, return_maps=True)
        losses = [_mean(v) for v in losses]
        losses_d = [_mean(v) for v in discriminator_loss(*maps, train_params["loss_weights"])]
        loss_g, loss_d = sum(losses), sum(losses_d)
    disc_params = _trainable(discriminator)
    if "optimizer_discriminator" in optimizers:
        optimizers["optimizer_discriminator"].zero_grad()
    else:
        discriminator.zero_grad(set_to_none=True)
    # Discriminator first, keeping the graph: its buffers are all still needed by the generator's
    # backward, so the peak is the forward's, as in the original's generator step.
    if disc_params:
        scale(loss_d).backward(inputs=disc_params, retain_graph=True)
    gen_params = _trainable(kp_detector, generator)
    if gen_params:
        scale(loss_g).backward(inputs=gen_params)
    for name in ("optimizer_generator", "optimizer_kp_detector", "optimizer_discriminator"):
        if name in optimizers:
            optimizers[name].step()
            optimizers[name].zero_grad()
    return _result(loss_g, loss_d, losses, losses_d, generated, train_params, return_terms, return_generated)

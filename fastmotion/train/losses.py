"""The original Monkey-Net losses (``modules/losses.py``), one value per batch element.

- reconstruction: weighted mean absolute difference, per batch element, between the
  discriminator feature maps of the real and the generated video (feature matching), one
  weight per map in ``loss_weights['reconstruction']``; plus, with
  ``reconstruction_deformed``, between the real video and the deformed source;
- LSGAN: generator ``(1 - D(fake))^2``, discriminator ``(1 - D(real))^2 + D(fake)^2``.
"""
from __future__ import annotations

from typing import List, Mapping, Sequence

import torch


def mean_batch(value: torch.Tensor) -> torch.Tensor:
    """Mean over everything but the batch dimension: ``(B,)``."""
    return value.reshape(value.shape[0], -1).mean(-1)


def reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor, weight):
    if weight == 0:
        return 0
    return weight * mean_batch(torch.abs(prediction - target))


def generator_gan_loss(discriminator_maps_generated: Sequence[torch.Tensor], weight) -> torch.Tensor:
    return weight * mean_batch((1 - discriminator_maps_generated[-1]) ** 2)


def discriminator_gan_loss(discriminator_maps_generated: Sequence[torch.Tensor],
                           discriminator_maps_real: Sequence[torch.Tensor], weight) -> torch.Tensor:
    score = (1 - discriminator_maps_real[-1]) ** 2 + discriminator_maps_generated[-1] ** 2
    return weight * mean_batch(score)


def generator_loss_names(loss_weights: Mapping) -> List[str]:
    names = []
    if loss_weights["reconstruction_deformed"] != 0:
        names.append("rec_def")
    if loss_weights["reconstruction"] is not None:
        for i, weight in enumerate(loss_weights["reconstruction"]):
            if weight != 0:
                names.append(f"layer-{i}_rec")
    names.append("gen_gan")
    return names


def discriminator_loss_names() -> List[str]:
    return ["disc_gan"]


def generator_loss(discriminator_maps_generated, discriminator_maps_real, video_deformed,
                   loss_weights: Mapping) -> List[torch.Tensor]:
    """Loss terms of the generator step, in the order of :func:`generator_loss_names`."""
    values = []
    if loss_weights["reconstruction_deformed"] != 0:
        values.append(reconstruction_loss(discriminator_maps_real[0], video_deformed,
                                          loss_weights["reconstruction_deformed"]))
    if loss_weights["reconstruction"] != 0:
        pairs = zip(discriminator_maps_real[:-1], discriminator_maps_generated[:-1])
        for weight, (real, generated) in zip(loss_weights["reconstruction"], pairs):
            if weight == 0:
                continue
            values.append(reconstruction_loss(generated, real, weight=weight))
    values.append(generator_gan_loss(discriminator_maps_generated, weight=loss_weights["generator_gan"]))
    return values


def discriminator_loss(discriminator_maps_generated, discriminator_maps_real, loss_weights: Mapping):
    """Loss terms of the discriminator step: ``[disc_gan]``."""
    return [discriminator_gan_loss(discriminator_maps_generated, discriminator_maps_real,
                                   loss_weights["discriminator_gan"])]

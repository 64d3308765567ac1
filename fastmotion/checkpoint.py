"""Monkey-Net checkpoints: the original ``*.pth.tar`` format and fastmotion's own.

The original format is a dict ``{'kp_detector', 'generator', 'discriminator'`` (state_dicts),
``'optimizer_kp_detector', 'optimizer_generator', 'optimizer_discriminator'`` (optimizer
state_dicts), ``'epoch', 'it'}``, possibly with ``module.`` key prefixes from DataParallel.
fastmotion's own format is the same dict plus a ``'fastmotion'`` entry (format version and the
config), so the original code can read it too. Conv weights are stored in the original Conv3d
layout ``(out, in, 1, kh, kw)`` (see :mod:`fastmotion.models.conv3d_layout`).

Loading validates every state_dict against its network before touching any module, so a
mismatched file raises an error naming the missing / unexpected keys and leaves the models as
they were; writing goes to a temporary file that is renamed over the target at the end.
"""
from __future__ import annotations

import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

from fastmotion.io.permissions import make_ordinary

NETWORKS = ("kp_detector", "generator", "discriminator")
FORMAT = "fastmotion-monkeynet"
FORMAT_VERSION = 1
META_KEY = "fastmotion"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read: the networks (with the weights loaded), the optimizer
    state_dicts converted to the networks' parameter shapes, and the counters."""

    kp_detector: Optional[nn.Module]
    generator: Optional[nn.Module]
    discriminator: Optional[nn.Module]
    epoch: Optional[int] = None
    it: Optional[int] = None
    optimizer_states: Dict[str, dict] = field(default_factory=dict)
    config: Optional[dict] = None
    resume: Optional[dict] = None  # the trainer's resume state (fastmotion checkpoints written by it)


def _strip_data_parallel(state: Mapping[str, Any]) -> Dict[str, Any]:
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _short(keys, limit=8):
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + "]" + more


def _problems(name: str, module: nn.Module, state: Dict[str, Any]) -> list:
    """Differences between a stored state_dict and ``module``'s (compared in the stored layout)."""
    expected = module.state_dict()
    # BatchNorm counters are absent from checkpoints of PyTorch < 0.4.1; keep the module's.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    out = []
    if missing:
        out.append(f"{name}: missing keys {_short(missing)}")
    if unexpected:
        out.append(f"{name}: unexpected keys {_short(unexpected)}")
    bad_shapes = []
    for key in set(expected) & set(state):
        value = state[key]
        if not isinstance(value, torch.Tensor):
            bad_shapes.append(f"{key} (not a tensor: {type(value).__name__})")
            continue
        want = tuple(expected[key].shape)
        got = tuple(value.shape)
        if got != want and not (len(want) == 5 and want[2] == 1 and got == want[:2] + want[3:]):
            bad_shapes.append(f"{key} {got} != {want}")
    if bad_shapes:
        out.append(f"{name}: shape mismatch {_short(bad_shapes, 5)}")
    return out


def _unreadable_cause(path: str, exc: BaseException) -> str:
    """Why ``torch.load`` could not read ``path``, in words (not torch's advice to turn off safe
    loading, which does not help a file that is truncated or not a checkpoint at all)."""
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if unsafe:
        return (f"it stores a Python object of type {unsafe.group(1)}, which safe loading does not run; "
                "weights_only=False loads it, if you trust where the file came from")
    with open(path, "rb") as f:
        head = f.read(16)
    if zipfile.is_zipfile(path) or head.startswith(b"PK"):
        return "the file is truncated or corrupt (its zip archive cannot be read)"
    if not head.startswith(b"\x80"):  # a pickle (torch's legacy format) starts with its protocol opcode
        return f"it is not a PyTorch checkpoint (neither a zip archive nor a pickle; it starts with {head[:12]!r})"
    return "the file is truncated or corrupt (its pickle cannot be read)"


def _read(path, map_location, weights_only: bool) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint file at {path!r}")
    if os.path.getsize(path) == 0:
        raise RuntimeError(f"load_checkpoint: cannot read {path!r}: the file is empty (0 bytes)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=weights_only)
    except OSError as exc:
        raise RuntimeError(f"load_checkpoint: cannot read {path!r}: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a bad file
        raise RuntimeError(f"load_checkpoint: cannot read {path!r}: {_unreadable_cause(path, exc)}") from None
    if not isinstance(data, dict) or not any(k in data for k in NETWORKS):
        found = sorted(data)[:10] if isinstance(data, dict) else type(data).__name__
        raise RuntimeError(f"load_checkpoint: {path!r} is not a Monkey-Net checkpoint: expected keys {NETWORKS}, "
                           f"found {found}")
    return data


def _resolve_config(config):
    if config is None or isinstance(config, Mapping):
        return None if config is None else dict(config)
    from fastmotion.config import load_config

    return load_config(config)


def _convert_optimizer_state(state: dict, params) -> dict:
    """Original optimizer state tensors of Conv3d weights are 5-D; squeeze them to the 2-D params."""
    state = dict(state)
    per_param = dict(state.get("state", {}))
    for index, param in enumerate(params):
        if index not in per_param:
            continue
        entry = dict(per_param[index])
        for key, value in entry.items():
            if (isinstance(value, torch.Tensor) and value.dim() == param.dim() + 1 and value.dim() == 5
                    and value.shape[2] == 1 and value.squeeze(2).shape == param.shape):
                entry[key] = value.squeeze(2)
        per_param[index] = entry
    state["state"] = per_param
    return state


def load_checkpoint(path, config=None, *, kp_detector: Optional[nn.Module] = None,
                    generator: Optional[nn.Module] = None, discriminator: Optional[nn.Module] = None,
                    optimizers: Optional[Mapping[str, torch.optim.Optimizer]] = None, map_location="cpu",
                    backend=None, weights_only: bool = True) -> Checkpoint:
    """Read an original or fastmotion checkpoint into Monkey-Net networks.

    Args:
        path: the ``.pth.tar`` file.
        config: the config the checkpoint was trained with (a dict, a packaged name such as
            ``"vox"`` or a YAML path). Optional for fastmotion checkpoints (they store it).
        kp_detector, generator, discriminator: networks to load into; the missing ones are built
            from the config. A network absent from the file is returned as None.
        optimizers: ``{'optimizer_generator': opt, ...}`` to load the stored optimizer states into.
        map_location: where tensors go (``torch.load``'s argument).
        backend: backend of the networks that are built here.
        weights_only: ``torch.load``'s safe unpickler; set False only for trusted files that
            store other Python objects.

    Raises:
        FileNotFoundError: no file at ``path``.
        RuntimeError: unreadable file, or state_dicts that do not match the networks (the
            message names the missing / unexpected keys); no network is modified then.
        ValueError: no config for an original-format checkpoint.
    """
    data = _read(path, map_location, weights_only)
    meta = data.get(META_KEY) if isinstance(data.get(META_KEY), dict) else None
    config = _resolve_config(config)
    if config is None and meta is not None:
        config = meta.get("config")
    given = {"kp_detector": kp_detector, "generator": generator, "discriminator": discriminator}
    present = [name for name in NETWORKS if name in data]
    if any(given[name] is None for name in present) and config is None:
        raise ValueError(f"load_checkpoint: {os.fspath(path)!r} is an original-format checkpoint; pass config= "
                         "(a config dict, a packaged name such as 'vox', or a YAML path) to build its networks")

    states, problems = {}, []
    for name in present:
        state = data[name]
        if not isinstance(state, Mapping):
            problems.append(f"{name}: not a state_dict ({type(state).__name__})")
            continue
        states[name] = _strip_data_parallel(state)
    if any(given[name] is None for name in present):
        from fastmotion.models.build import build_models

        built = build_models(config, backend=backend)
        for name in present:
            if given[name] is None:
                given[name] = getattr(built, name)
    for name, state in states.items():
        problems.extend(_problems(name, given[name], state))
    if problems:
        raise RuntimeError(f"load_checkpoint: {os.fspath(path)!r} does not match the networks: " + "; ".join(problems))

    optimizer_states = {}
    for key, value in data.items():
        if key.startswith("optimizer_") and isinstance(value, dict):
            optimizer_states[key] = value
    optimizers = dict(optimizers or {})
    for key in optimizers:
        if key not in optimizer_states:
            raise RuntimeError(f"load_checkpoint: {os.fspath(path)!r} has no {key!r} "
                               f"(found {sorted(optimizer_states)})")
        saved_groups = optimizer_states[key].get("param_groups", [])
        sizes = [len(g.get("params", [])) for g in saved_groups]
        want = [len(g["params"]) for g in optimizers[key].param_groups]
        if sizes != want:
            raise RuntimeError(f"load_checkpoint: {os.fspath(path)!r}: {key} has parameter groups of sizes {sizes}, "
                               f"the optimizer has {want}")
    converted = {}
    for key, state in optimizer_states.items():
        network = given.get(key[len("optimizer_"):])
        converted[key] = _convert_optimizer_state(state, list(network.parameters())) if network is not None else state

    # Everything is validated: now load.
    for name, state in states.items():
        given[name].load_state_dict(state)
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(converted[key])
    return Checkpoint(kp_detector=given["kp_detector"] if "kp_detector" in present else None,
                      generator=given["generator"] if "generator" in present else None,
                      discriminator=given["discriminator"] if "discriminator" in present else None,
                      epoch=data.get("epoch"), it=data.get("it"), optimizer_states=converted, config=config,
                      resume=meta.get("resume") if meta is not None else None)


def _original_optimizer_state(optimizer: torch.optim.Optimizer, network: Optional[nn.Module]) -> dict:
    """An optimizer state_dict with the state of 2-D conv weights written back as 5-D."""
    from fastmotion.models.conv3d_layout import FrameConv2d

    state = optimizer.state_dict()
    if network is None:
        return state
    conv_weights = {id(m.weight) for m in network.modules() if isinstance(m, FrameConv2d)}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    per_param = {}
    for index, entry in state["state"].items():
        param = params[index] if index < len(params) else None
        if param is not None and id(param) in conv_weights:
            entry = {k: v.unsqueeze(2) if isinstance(v, torch.Tensor) and v.shape == param.shape else v
                     for k, v in entry.items()}
        per_param[index] = entry
    state["state"] = per_param
    return state


def save_checkpoint(path, *, kp_detector: Optional[nn.Module] = None, generator: Optional[nn.Module] = None,
                    discriminator: Optional[nn.Module] = None,
                    optimizers: Optional[Mapping[str, torch.optim.Optimizer]] = None, epoch: Optional[int] = None,
                    it: Optional[int] = None, config: Optional[Mapping] = None, fmt: str = "fastmotion",
                    resume: Optional[Mapping] = None) -> str:
    """Write a checkpoint atomically (temporary file + rename); returns the path.

    ``fmt="original"`` writes exactly the original's keys (readable by the original code);
    ``fmt="fastmotion"`` adds the ``'fastmotion'`` entry with the config, so
    :func:`load_checkpoint` needs no config. ``optimizers``: ``{'optimizer_generator': opt, ...}``.
    ``resume``: the trainer's extra state (schedulers, GradScaler, position, RNG), kept in the
    ``'fastmotion'`` entry and returned as ``Checkpoint.resume``.
    """
    if fmt not in ("original", "fastmotion"):
        raise ValueError(f"save_checkpoint: fmt must be 'original' or 'fastmotion', got {fmt!r}")
    networks = {"kp_detector": kp_detector, "generator": generator, "discriminator": discriminator}
    if all(v is None for v in networks.values()):
        raise ValueError("save_checkpoint: pass at least one of kp_detector, generator, discriminator")
    data: Dict[str, Any] = {name: net.state_dict() for name, net in networks.items() if net is not None}
    for key, optimizer in (optimizers or {}).items():
        if not key.startswith("optimizer_"):
            raise ValueError(f"save_checkpoint: optimizer keys must be 'optimizer_<network>', got {key!r}")
        data[key] = _original_optimizer_state(optimizer, networks.get(key[len("optimizer_"):]))
    if epoch is not None:
        data["epoch"] = epoch
    if it is not None:
        data["it"] = it
    if fmt == "fastmotion":
        from fastmotion import __version__

        data[META_KEY] = {"format": FORMAT, "version": FORMAT_VERSION, "fastmotion_version": __version__,
                          "config": None if config is None else dict(config)}
        if resume is not None:
            data[META_KEY]["resume"] = dict(resume)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        make_ordinary(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError):  # full disk, read-only or missing folder: name the target, not the temp file
            message = (f"save_checkpoint: cannot write {path!r}: {exc.strerror or exc} "
                       "(the previous file, if any, is unchanged)")
            raise (OSError(exc.errno, message) if exc.errno is not None else OSError(message)) from None
        raise
    return path

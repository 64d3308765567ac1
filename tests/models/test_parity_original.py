"""Parity with the original Monkey-Net code (github.com/AliaksandrSiarohin/monkey-net).

Runs only when MONKEYNET_SRC points at a checkout of the original code. Both models are built
from the same config; the original's state_dict (Conv3d weights) is loaded into ours; keypoints,
the dense-motion deformation, the generator's outputs, the discriminator's feature maps and the
BatchNorm running statistics are compared, in eval and train mode, for backend="reference" and
the fast path:

- float64: the same math, to rounding (relative 1e-9);
- float32: error against the float64 original at most twice the original's own float32 error
  (DESIGN.md's rule; floor 1e-5 relative). Max errors are printed (``pytest -s``).
"""
import copy

import pytest
import torch

import fastmotion
from fastmotion.models import build_models
from tests.models.helpers import images, max_err, randomize, tiny_config
from tests.models.original_monkeynet import load_original, original_semantics
from tests.tolerance import FLOOR

# name -> (config, image size): the real shapes config, and small versions of configs whose
# structure differs (vox: scale_factor 0.25 + trilinear skip resizing + 7-block generator;
# moving-gif: use_difference in the mask embedding, scale 0.5; bair: norm_const 'sum').
CASES = {
    "shapes": (lambda: fastmotion.load_config("shapes"), 64),
    "vox": (lambda: tiny_config("vox", num_blocks=4), 64),
    "moving-gif": (lambda: tiny_config("moving-gif"), 32),
    "bair": (lambda: tiny_config("bair"), 32),
}


def build_original(original, config):
    mp = config["model_params"]
    common = mp["common_params"]
    torch.manual_seed(0)
    kp = original["keypoint_detector"].KPDetector(**mp["kp_detector_params"], **common)
    gen = original["generator"].MotionTransferGenerator(**mp["generator_params"], **common)
    disc = original["discriminator"].Discriminator(**mp["discriminator_params"], **common)
    randomize(kp, gen, disc, seed=1)
    return [kp, gen, disc]


def build_ours(original_models, config, backend, dtype):
    ours = build_models(config, backend=backend)
    for mine, theirs in zip(ours, original_models):
        mine.load_state_dict(theirs.state_dict())  # strict: same key names, Conv3d layout
    return [m.to(dtype) for m in ours]


def forward(models, source, driving, train, is_original):
    kp_detector, generator, discriminator = models
    for m in models:
        m.train(train)
    context = original_semantics() if is_original else torch.no_grad()
    with context, torch.no_grad():
        kp_source, kp_driving = kp_detector(source), kp_detector(driving)
        grid = generator.dense_motion_module(source, kp_driving, kp_source)
        out = generator(source, kp_driving, kp_source)
        maps = discriminator(out["video_prediction"], kp_driving, kp_source)
        maps_real = discriminator(driving, kp_driving, kp_source)
    result = {"kp_mean": kp_driving["mean"], "kp_var": kp_driving["var"], "kp_source_mean": kp_source["mean"],
              "deformation": grid, "video_prediction": out["video_prediction"],
              "video_deformed": out["video_deformed"]}
    result.update({f"disc_fake{i}": m for i, m in enumerate(maps[1:], 1)})
    result.update({f"disc_real{i}": m for i, m in enumerate(maps_real[1:], 1)})
    if train:  # BatchNorm running statistics after the train-mode passes
        for name, m in zip(("kp", "gen"), models[:2]):
            for key, value in m.state_dict().items():
                if key.endswith("running_mean") or key.endswith("running_var"):
                    result[f"{name}.{key}"] = value
    return result


def inputs(size, dtype, batch=2):
    return images(batch, size, frames=1, seed=10, dtype=dtype), images(batch, size, frames=1, seed=11, dtype=dtype)


@pytest.fixture(scope="module")
def original():
    return load_original()


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("backend", ["reference", None], ids=["reference", "fast"])
@pytest.mark.parametrize("case", list(CASES))
def test_parity_float64(original, case, backend, train):
    make_config, size = CASES[case]
    config = make_config()
    theirs = [m.double() for m in build_original(original, config)]
    ours = build_ours(theirs, config, backend, torch.float64)
    source, driving = inputs(size, torch.float64)
    expected = forward(theirs, source, driving, train, True)
    got = forward(ours, source, driving, train, False)
    assert expected.keys() == got.keys()
    worst = 0.0
    for key in expected:
        assert got[key].shape == expected[key].shape, key
        scale = max(1.0, expected[key].abs().max().item())
        err = max_err(got[key], expected[key])
        worst = max(worst, err / scale)
        assert err <= 1e-9 * scale, key
    print(f"\n[{case} {backend or 'fast'} {'train' if train else 'eval'} float64] max relative error {worst:.3g}")


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("backend", ["reference", None], ids=["reference", "fast"])
@pytest.mark.parametrize("case", ["shapes", "vox"])
def test_parity_float32(original, case, backend, train):
    make_config, size = CASES[case]
    config = make_config()
    theirs32 = build_original(original, config)
    theirs64 = [copy.deepcopy(m).double() for m in theirs32]
    ours = build_ours(theirs32, config, backend, torch.float32)
    source, driving = inputs(size, torch.float32)
    exact = forward(theirs64, source.double(), driving.double(), train, True)
    baseline = forward(theirs32, source, driving, train, True)
    got = forward(ours, source, driving, train, False)
    report = {}
    for key in exact:
        if key.startswith("disc_fake"):
            # The discriminator on an untrained generator's nearly constant output: its
            # InstanceNorm divides by tiny deviations, so float32 rounding of the input is
            # amplified for every implementation; checked in float64 above, and on real frames here.
            continue
        scale = max(1.0, exact[key].abs().max().item())
        budget = 2 * max(max_err(baseline[key], exact[key]), FLOOR[torch.float32] * scale)
        report[key] = (max_err(got[key], exact[key]), budget)
    worst = max(report, key=lambda k: report[k][0])
    direct = {k: max_err(got[k], baseline[k]) for k in report}
    worst_direct = max(direct, key=direct.get)
    print(f"\n[{case} {backend or 'fast'} {'train' if train else 'eval'} float32] vs float64 original: max error "
          f"{report[worst][0]:.3g} ({worst}); kp {report['kp_mean'][0]:.3g}, deformation "
          f"{report['deformation'][0]:.3g}, prediction {report['video_prediction'][0]:.3g} | vs float32 original: "
          f"max {direct[worst_direct]:.3g} ({worst_direct})")
    failed = {k: v for k, v in report.items() if v[0] > v[1]}
    assert not failed, f"error > budget: {failed}"


def test_original_loads_our_state_dict(original):
    """The other direction: our state_dict (Conv3d layout) loads strictly into the original."""
    config = tiny_config("taichi")
    ours = build_models(config)
    randomize(*ours, seed=3)
    theirs = build_original(original, config)
    for mine, their in zip(ours, theirs):
        their.load_state_dict(mine.state_dict())
        for key, value in their.state_dict().items():
            assert torch.equal(value, mine.state_dict()[key]), key


def test_discriminator_video_parity(original):
    """Several frames per video: the original's InstanceNorm3d normalises over all of them."""
    config = tiny_config("taichi")
    theirs = build_original(original, config)
    ours = build_ours(theirs, config, None, torch.float32)
    video = images(2, 32, frames=3, seed=4)
    with torch.no_grad():
        with original_semantics():
            kp = theirs[0].eval()(video)
            expected = theirs[2].eval()(video, kp, kp)
        got = ours[2].eval()(video, kp, kp)
    for a, b in zip(got[1:], expected[1:]):
        assert max_err(a, b) < 1e-5

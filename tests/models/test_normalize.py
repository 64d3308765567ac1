"""normalize_kp (the original transfer.py's test-time keypoint normalisation) and the hull area."""
import ast
import os

import numpy as np
import pytest
import torch

from fastmotion.models import convex_hull_area, normalize_kp


def random_kp(batch, frames, k=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    mean = torch.rand((batch, frames, k, 2), generator=gen, dtype=dtype) * 1.6 - 0.8
    a = torch.randn((batch, frames, k, 2, 2), generator=gen, dtype=dtype) * 0.1
    var = a @ a.transpose(-1, -2) + 0.01 * torch.eye(2, dtype=dtype)
    return {"mean": mean, "var": var}


def test_convex_hull_area_known_shapes():
    square = [[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5], [0.2, 0.9]]
    assert convex_hull_area(square) == pytest.approx(1.0)
    assert convex_hull_area([[0, 0], [2, 0], [0, 3]]) == pytest.approx(3.0)
    assert convex_hull_area([[0, 0], [1, 1], [2, 2]]) == 0.0  # collinear
    assert convex_hull_area([[0, 0], [0, 0], [1, 0], [1, 0], [0, 1]]) == pytest.approx(0.5)  # duplicates


def test_convex_hull_area_matches_scipy():
    spatial = pytest.importorskip("scipy.spatial", reason="scipy not installed: cross-check of the hull area")
    rng = np.random.default_rng(0)
    for n in (3, 4, 10, 50):
        points = rng.uniform(-1, 1, size=(n, 2))
        assert convex_hull_area(points) == pytest.approx(spatial.ConvexHull(points).volume, rel=1e-12)


def test_move_location_and_movement_mult():
    kp_video, kp_source = random_kp(2, 4, seed=1), random_kp(2, 1, seed=2)
    out = normalize_kp(kp_video, kp_source, move_location=True)
    expected = kp_video["mean"] - kp_video["mean"][:, :1] + kp_source["mean"]
    assert torch.allclose(out["mean"], expected)
    assert out["var"] is kp_video["var"]
    scaled = normalize_kp(kp_video, kp_source, move_location=True, movement_mult=True)
    for b in range(2):
        mult = np.sqrt(convex_hull_area(kp_source["mean"][b, 0]) / convex_hull_area(kp_video["mean"][b, 0]))
        expected_b = (kp_video["mean"][b] - kp_video["mean"][b, :1]) * mult + kp_source["mean"][b]
        assert torch.allclose(scaled["mean"][b], expected_b)
    clipped = normalize_kp({"mean": kp_video["mean"] * 3}, kp_source, move_location=True, clip_mean=True)
    assert clipped["mean"].abs().max() <= 1


def test_adapt_variance():
    kp_video, kp_source = random_kp(1, 3, seed=3), random_kp(1, 1, seed=4)
    out = normalize_kp(kp_video, kp_source, adapt_variance=True)
    raw = kp_video["var"] @ torch.linalg.inv(kp_video["var"][:, :1]) @ kp_source["var"]
    sym = (raw + raw.transpose(-1, -2)) / 2
    eig = torch.linalg.eigvalsh(sym)
    assert torch.allclose(out["var"], out["var"].transpose(-1, -2))
    if (eig > 0).all():
        assert torch.allclose(out["var"], sym, atol=1e-12)
    assert (torch.linalg.eigvalsh(out["var"]) > 0).all()
    # the first frame maps onto the source covariance
    assert torch.allclose(out["var"][:, 0], kp_source["var"][:, 0], atol=1e-12)


def test_frames_with_kp_initial_equal_video():
    kp_video, kp_source = random_kp(2, 3, seed=5), random_kp(2, 1, seed=6)
    params = dict(move_location=True, movement_mult=True, adapt_variance=True)
    video = normalize_kp(kp_video, kp_source, **params)
    initial = {k: v[:, 0] for k, v in kp_video.items()}
    for i in range(3):
        frame = normalize_kp({k: v[:, i] for k, v in kp_video.items()}, {k: v[:, 0] for k, v in kp_source.items()},
                             kp_initial=initial, **params)
        for key in ("mean", "var"):
            assert torch.allclose(frame[key], video[key][:, i], atol=1e-12)


def test_errors():
    kp_video, kp_source = random_kp(1, 2), random_kp(1, 1)
    with pytest.raises(ValueError, match="kp_initial"):
        normalize_kp({k: v[:, 0] for k, v in kp_video.items()}, kp_source, move_location=True)
    with pytest.raises(TypeError, match="kp_video"):
        normalize_kp(kp_video["mean"], kp_source)
    flat = {"mean": torch.zeros(1, 2, 3, 2)}
    flat["mean"][..., 0] = torch.tensor([0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="collinear"):
        normalize_kp(flat, flat, move_location=True, movement_mult=True)


def original_normalize_kp():
    """The original transfer.py's normalize_kp, compiled from its source with its imports
    (transfer.py itself imports data-loading packages the tests do not need)."""
    from tests.models.original_monkeynet import load_original

    modules = load_original()
    spatial = pytest.importorskip("scipy.spatial", reason="the original normalize_kp uses scipy's ConvexHull")
    path = os.path.join(os.environ["MONKEYNET_SRC"], "transfer.py")
    tree = ast.parse(open(path).read())
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef)
              and node.name in ("make_symetric_matrix", "normalize_kp")]
    namespace = {"torch": torch, "np": np, "ConvexHull": spatial.ConvexHull,
                 "matrix_inverse": modules["util"].matrix_inverse}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), path, "exec"), namespace)
    return namespace["normalize_kp"]


@pytest.mark.parametrize("params", [dict(move_location=True), dict(move_location=True, movement_mult=True),
                                    dict(move_location=True, clip_mean=True), dict(adapt_variance=True),
                                    dict(move_location=True, movement_mult=True, adapt_variance=True)],
                         ids=["move", "mult", "clip", "variance", "all"])
def test_matches_original(params):
    original = original_normalize_kp()
    from tests.models.original_monkeynet import original_semantics

    kp_video, kp_source = random_kp(1, 4, seed=7, dtype=torch.float32), random_kp(1, 1, seed=8, dtype=torch.float32)
    with original_semantics():
        expected = original(kp_video, kp_source, **params)
    got = normalize_kp(kp_video, kp_source, **params)
    for key in expected:
        assert torch.allclose(got[key], expected[key], atol=1e-5), key

"""AOTInductor packages: one small graph compiled and loaded here (C++ compilation is slow on a
couple of cores); the whole chain against the Animator is slow and opt-in (FASTMOTION_SLOW_TESTS=1;
passed on the 2-core development VM)."""
import os

import pytest
import torch

import fastmotion.export as fx
from fastmotion.inference import Animator
from tests.export.helpers import narrow_config, networks, smallest_size


def _max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def test_aoti_package_of_the_source_encoder_matches_pytorch(tmp_path):
    config = narrow_config("shapes", width=4, max_features=16)
    kp_detector, generator = networks(config)
    out = tmp_path / "aoti"
    manifest = fx.export(out, "aoti", config=config, kp_detector=kp_detector, generator=generator,
                         frame_size=smallest_size(kp_detector, generator), graphs=("source_encoder",))
    entry = manifest["graphs"]["source_encoder"]
    assert entry["file"] == "source_encoder.pt2" and os.path.isfile(out / entry["file"])
    runner = torch._inductor.aoti_load_package(str(out / entry["file"]))
    source = torch.rand(1, 3, *manifest["frame_size"], generator=torch.Generator().manual_seed(0))
    got = runner(source)
    with torch.no_grad():
        expected = generator.encode_source(source)[1:]  # the fast path: fused kernels, oneDNN convolutions
    assert len(got) == len(expected) == len(entry["outputs"])
    for g, e, info in zip(got, expected, entry["outputs"]):
        assert list(g.shape) == info["shape"] and _max_err(g, e) <= 1e-4


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FASTMOTION_SLOW_TESTS") != "1",
                    reason="compiles three AOTInductor packages (minutes on 2 cores); set FASTMOTION_SLOW_TESTS=1")
def test_aoti_chain_reproduces_the_animator(tmp_path):
    config = narrow_config("shapes")
    kp_detector, generator = networks(config)
    size = smallest_size(kp_detector, generator)
    fx.export(tmp_path / "aoti", "aoti", config=config, kp_detector=kp_detector, generator=generator,
              frame_size=size)
    gen = torch.Generator().manual_seed(1)
    source, driving = torch.rand(1, 3, *size, generator=gen), torch.rand(3, 3, *size, generator=gen)
    chain = fx.AOTIAnimator(tmp_path / "aoti")
    chain.set_source(source)
    got = torch.cat([chain(driving[i:i + 1]) for i in range(3)])
    animator = Animator(kp_detector, generator, config, device="cpu", frame_size=size)
    animator.set_source(source[0])
    assert _max_err(got, animator.animate(driving)) <= 1e-4

"""TensorRT engines from the ONNX graphs, run by TensorRTAnimator: needs the tensorrt package and a
CUDA GPU (skipped otherwise, with the reason; bench/gpu_export_check.sh runs them on a GPU machine).
The error path without them is tested in test_errors.py."""
import pytest
import torch

import fastmotion.export as fx
from tests.export.helpers import narrow_config, networks, smallest_size

trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed (pip install fastmotion[tensorrt]; needs a CUDA GPU)")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install fastmotion[export])")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT needs a CUDA GPU; none here")]


@pytest.fixture(scope="module")
def model():
    config = narrow_config("shapes")
    kp_detector, generator = networks(config)
    return config, kp_detector, generator, smallest_size(kp_detector, generator)


@pytest.mark.parametrize("dtype, tol", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_tensorrt_engines_match_onnxruntime(tmp_path, model, dtype, tol):
    """fp32 engines (TF32 off) to 1e-4 of onnxruntime; FP16-flag engines to 2e-2 on frames in [0, 1]."""
    config, kp_detector, generator, size = model
    manifest = fx.export(tmp_path / "trt", "tensorrt", config=config, kp_detector=kp_detector, generator=generator,
                         frame_size=size, dtype=dtype, dynamic_batch=True)
    assert all("engine" in g for g in manifest["graphs"].values())
    gen = torch.Generator().manual_seed(0)
    source, driving = torch.rand(4, 3, *size, generator=gen), torch.rand(3, 4, 3, *size, generator=gen)
    for batch in (1, 4):
        src, drv = source[:batch], driving[:, :batch]
        ort_chain = fx.OnnxRuntimeAnimator(tmp_path / "trt")
        trt_chain = fx.TensorRTAnimator(tmp_path / "trt")
        ort_chain.set_source(src)
        trt_chain.set_source(src.cuda())
        for frame in drv:
            expected = ort_chain(frame)
            got = trt_chain(frame.cuda()).float().cpu()
            assert got.shape == expected.shape
            assert (got - expected).abs().max().item() <= tol

"""warp_features on CPU with the vox source skips (8 maps, 3 to 1024 channels, 256 to 2 pixels) in
either layout: the generator's encoder makes channels_last maps, and for inference it hands
warp_features contiguous copies, which its CPU kernel reads faster
(fastmotion/models/generator.py, encode_source). Copying the skips happens once per source;
warping happens every frame.

Bytes that must move: read each map's sampled pixels (at most the map) and write the warped maps.
"""
import pytest
import torch

from bench import harness
from fastmotion import ops
from fastmotion.ops.registry import smooth_flow_grid
from fastmotion.ops.warp_features import WARP_CONFIGS


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_warp_features_vox_skips(benchmark, layout):
    gen = torch.Generator().manual_seed(0)
    config = WARP_CONFIGS["vox"]
    skips = [torch.randn((1, c, config["top"] >> i, config["top"] >> i), generator=gen)
             for i, c in enumerate(config["channels"])]
    if layout == "channels_last":
        skips = [s.contiguous(memory_format=torch.channels_last) for s in skips]
    grid = smooth_flow_grid(1, config["grid"], config["grid"])
    benchmark.group = "warp_features vox skips, batch 1, cpu"
    nbytes = 2 * sum(s.numel() * s.element_size() for s in skips) + grid.numel() * grid.element_size()
    harness.run(benchmark, lambda: ops.warp_features(skips, grid, config["mode"], backend="cpu"), "cpu", nbytes,
                layout=layout, threads=torch.get_num_threads())

"""The original configs: packaged copies equal the originals, and every config builds the networks."""
import os
import re
from pathlib import Path

import pytest
import yaml

import fastmotion
from fastmotion.config import config_names
from fastmotion.models import Discriminator, KPDetector, MotionTransferGenerator, build_models
from tests.models.helpers import original_configs_dir

NAMES = ["actions", "bair", "moving-gif", "nemo", "shapes", "taichi", "vox", "vox-full"]


def test_packaged_config_names():
    assert config_names() == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_packaged_config_equals_original(name):
    folder = original_configs_dir()
    with open(os.path.join(folder, name + ".yaml")) as f:
        original = yaml.safe_load(f)
    assert fastmotion.load_config(name) == original


@pytest.mark.parametrize("name", NAMES)
def test_original_config_file_builds_all_networks(name):
    path = os.path.join(original_configs_dir(), name + ".yaml")
    config = fastmotion.load_config(path)  # by path, unchanged
    kp_detector, generator, discriminator = build_models(config)
    assert isinstance(kp_detector, KPDetector) and isinstance(generator, MotionTransferGenerator)
    assert isinstance(discriminator, Discriminator)
    common = config["model_params"]["common_params"]
    assert kp_detector.predictor.decoder.conv.out_channels == common["num_kp"]
    # The generator's decoder reads its skips plus the keypoint embedding (K heatmaps, no background).
    gp = config["model_params"]["generator_params"]
    assert generator.kp_embedding_module.out_channels == common["num_kp"]
    assert generator.refinement_module[0].conv1.in_channels == gp["block_expansion"] + common["num_channels"] + \
        common["num_kp"]
    # The dense motion's mask embedding: K+1 blocks of heatmap (+2 difference) + deformed source.
    mask_params = gp["dense_motion_params"]["mask_embedding_params"]
    per_kp = 1 + 2 * bool(mask_params.get("use_difference")) + common["num_channels"]
    assert generator.dense_motion_module.mask_embedding.out_channels == per_kp * (common["num_kp"] + 1)
    assert discriminator.kp_embedding.out_channels == common["num_kp"]


def test_packaged_configs_build_same_state_keys_as_original_files():
    folder = original_configs_dir()
    for name in ("taichi", "moving-gif"):
        ours = build_models(fastmotion.load_config(name))
        theirs = build_models(fastmotion.load_config(os.path.join(folder, name + ".yaml")))
        for a, b in zip(ours, theirs):
            assert {k: tuple(v.shape) for k, v in a.state_dict().items()} == \
                {k: tuple(v.shape) for k, v in b.state_dict().items()}


def test_load_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown config name 'taichii'"):
        fastmotion.load_config("taichii")
    with pytest.raises(FileNotFoundError, match="no config file"):
        fastmotion.load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset_params: {root_dir: x}\n")
    with pytest.raises(ValueError, match="model_params"):
        fastmotion.load_config(str(bad))
    with pytest.raises(TypeError, match="name_or_path"):
        fastmotion.load_config(3)


def test_build_models_rejects_unknown_keyword():
    config = fastmotion.load_config("shapes")
    config["model_params"]["kp_detector_params"]["num_blockz"] = 3
    with pytest.raises(ValueError, match="num_blockz"):
        build_models(config)


# (key path under model_params, bad value, what the message must say is expected)
BAD_VALUES = [
    ("common_params.num_kp", "ten", "a positive integer"),
    ("common_params.num_kp", 0, "a positive integer"),
    ("common_params.num_kp", True, "a positive integer"),
    ("common_params.kp_variance", "bogus", "'matrix', 'single' or a positive number"),
    ("common_params.num_channels", 3.5, "a positive integer"),
    ("kp_detector_params.num_blocks", 0, "a positive integer"),
    ("kp_detector_params.temperature", 0, "a positive number"),
    ("kp_detector_params.clip_variance", -0.1, "a non-negative number or null"),
    ("generator_params.num_blocks", 0, "a positive integer"),
    ("generator_params.num_refinement_blocks", -1, "a non-negative integer"),
    ("generator_params.interpolation_mode", "cubic", "one of 'nearest', 'trilinear', 'bilinear'"),
    ("generator_params.dense_motion_params.scale_factor", "half", "a positive number"),
    ("generator_params.dense_motion_params.mask_embedding_params.norm_const", -5, "'sum' or a positive number"),
    ("generator_params.kp_embedding_params.heatmap_type", "gauss", "'gaussian' or 'difference'"),
    ("discriminator_params.num_blocks", 0, "a positive integer"),
    ("discriminator_params.block_expansion", "64", "a positive integer"),
]


def _set(config, dotted, value):
    *parents, key = dotted.split(".")
    node = config["model_params"]
    for p in parents:
        node = node[p]
    node[key] = value


@pytest.mark.parametrize("key, value, expected", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_config_values_fail_on_loading_naming_key_and_expectation(tmp_path, key, value, expected):
    config = fastmotion.load_config("taichi")
    _set(config, key, value)
    message = f"model_params.{key} must be {expected}"
    with pytest.raises(ValueError, match=re.escape(message) + r".*, got " + re.escape(repr(value))):
        build_models(config)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=re.escape(f"load_config: {str(path)!r}: {message}")):
        fastmotion.load_config(str(path))


def test_num_kp_written_as_a_word_in_yaml(tmp_path):
    text = (Path(fastmotion.config.CONFIG_DIR) / "taichi.yaml").read_text()
    path = tmp_path / "taichi.yaml"
    path.write_text(text.replace("num_kp: 10", "num_kp: ten"))
    with pytest.raises(ValueError, match=r"model_params\.common_params\.num_kp must be a positive integer .*got 'ten'"):
        fastmotion.load_config(str(path))


@pytest.mark.parametrize("name", NAMES)
def test_every_original_config_passes_validation(name):
    from fastmotion.config.validate import validate_model_params

    validate_model_params(fastmotion.load_config(name))
    validate_model_params(fastmotion.load_config(os.path.join(original_configs_dir(), name + ".yaml")))

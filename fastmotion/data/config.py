"""Datasets from a config's ``dataset_params`` (the original YAML keys), as the trainer builds them."""
from __future__ import annotations

from fastmotion.data.errors import DataError
from fastmotion.data.frames_dataset import FramesDataset
from fastmotion.data.wrappers import DatasetRepeater

DATASET_KEYS = ("root_dir", "image_shape", "pairs_list", "augmentation_params", "random_seed")


def datasets_from_config(config: dict, root_dir=None, skip_bad: bool = False):
    """``(train_dataset, test_dataset)`` from ``config["dataset_params"]`` (``root_dir`` overrides the
    config's); the training set is wrapped in ``DatasetRepeater(num_repeats)`` from ``train_params``
    (default 1). Relative paths in the config are relative to the current folder, as in the original."""
    params = dict((config or {}).get("dataset_params") or {})
    unknown = sorted(set(params) - set(DATASET_KEYS))
    if unknown:
        raise DataError(f"dataset_params: unknown key(s) {unknown}; expected some of {list(DATASET_KEYS)}")
    if root_dir is not None:
        params["root_dir"] = root_dir
    if params.get("root_dir") is None:
        raise DataError("dataset_params.root_dir is not set; give the data folder (fastmotion train --data DIR)")
    num_repeats = int(((config or {}).get("train_params") or {}).get("num_repeats", 1))
    train = FramesDataset(is_train=True, skip_bad=skip_bad, **params)
    test = FramesDataset(is_train=False, skip_bad=skip_bad, **params)
    return DatasetRepeater(train, num_repeats), test

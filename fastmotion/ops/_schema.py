"""The integer codes that the compiled ops' schemas take for string options, written once.

The C++ and CUDA kernels read the same numbers from ``csrc/include/fastmotion/var_mode.h``
(``VarMode``) and ``csrc/include/fastmotion/sampling.h`` (``GridSampleMode``,
``GridSamplePadding``); the Triton kernels take them from ``fastmotion.kernels._common``, which
imports them from here. ``tests/ops/test_schema_codes.py`` checks that the headers agree.
"""

# How a keypoint's variance is given: heatmap_moments' ``var_mode`` and the Gaussian heatmaps'.
VAR_MATRIX, VAR_SINGLE, VAR_FIXED = 0, 1, 2
VAR_MODES = {"matrix": VAR_MATRIX, "single": VAR_SINGLE}  # kp_variance given as a number: VAR_FIXED

# Interpolation ``mode`` of grid_sample and warp_features (whose grid resize is 'nearest' or linear).
MODE_BILINEAR, MODE_NEAREST = 0, 1
MODE_CODES = {"bilinear": MODE_BILINEAR, "nearest": MODE_NEAREST}

PADDING_CODES = {"zeros": 0, "border": 1, "reflection": 2}

"""Where the tests find the shared data (the original configs and Monkey-Net data, the shapes set):
``$FASTMOTION_SHARED_DATA``, else ``<repo>/../shared/data`` beside the repository. It is never
committed; tests that need it skip, saying where they looked."""
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV_VAR = "FASTMOTION_SHARED_DATA"
SHARED_DATA = os.path.normpath(os.environ.get(ENV_VAR) or os.path.join(REPO, "..", "shared", "data"))


def shared_data(*parts, needs=None):
    """``SHARED_DATA/<parts>``, or skip when it (or ``needs``, a path inside it) is absent."""
    path = os.path.join(SHARED_DATA, *parts)
    probe = os.path.join(path, needs) if needs else path
    if not os.path.exists(probe):
        pytest.skip(f"{probe} is not there: the shared data lives beside the repository (set {ENV_VAR})")
    return path

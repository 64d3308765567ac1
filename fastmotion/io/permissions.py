"""Temporary files made by ``tempfile`` are private (0600 / 0700); what fastmotion writes through
them (videos, pictures, checkpoints, exports) is an ordinary file once renamed into place."""
from __future__ import annotations

import os


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_ordinary(path: str) -> None:
    """Give ``path`` the mode a plain ``open()`` / ``mkdir()`` would have given it under the umask."""
    mode = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, mode & ~_umask())

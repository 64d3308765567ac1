"""Writing an export folder atomically: everything goes into a temporary folder beside the target,
which is renamed into place at the end, so a failed export leaves no half-written folder and an
earlier export in the same place stays intact until the new one is complete."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

from fastmotion.io.permissions import make_ordinary

MANIFEST = "manifest.json"


def check_out_dir(out) -> str:
    """The output folder as an absolute path; an error when it exists and is not empty or an earlier export."""
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise ValueError(f"out must be a folder path, got {out!r}")
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise ValueError(f"out {out}: exists and is not a folder")
        entries = os.listdir(out)
        if entries and MANIFEST not in entries:
            raise ValueError(f"out {out}: folder is not empty and holds no fastmotion export ({MANIFEST}); "
                             "choose a new or empty folder")
    return out


@contextlib.contextmanager
def atomic_dir(out: str):
    """Yield a temporary folder; on success it replaces ``out`` (an empty folder or an earlier export)."""
    out = check_out_dir(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    make_ordinary(tmp)
    try:
        yield tmp
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
            os.rename(out, os.path.join(old, "export"))
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def read_manifest(folder) -> dict:
    """The manifest of an export folder."""
    path = os.path.join(os.fspath(folder), MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder}: no {MANIFEST} (not a fastmotion export folder)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)

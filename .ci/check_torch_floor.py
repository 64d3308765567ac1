"""Check tests/test_torch_floor.py's SINCE table against released torch wheels.

For each young torch name fastmotion uses, finds the first of the given releases whose Python
sources and stubs define it, and fails when SINCE records a release older than that one or when
the floor release lacks the name. The wheels are read, never installed; their Python files are
the same on every platform, so the small CPU-only macOS wheel is downloaded from PyPI
(`pip download --no-deps`, into a temporary folder or --wheels DIR).

    python .ci/check_torch_floor.py [--versions 2.3.1 2.4.1 2.5.1 2.6.0] [--wheels DIR]
"""
from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_torch_floor import SINCE, torch_floor, young_names_used  # noqa: E402

PLATFORM = ("--platform", "macosx_11_0_arm64", "--python-version", "3.11", "--only-binary=:all:")


def wheel_for(version: str, folder: Path) -> Path:
    found = sorted(folder.glob(f"torch-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PLATFORM, "-d", str(folder),
                        f"torch=={version}"], check=True)
        found = sorted(folder.glob(f"torch-{version}-*.whl"))
    return found[0]


class Release:
    """The module-level names a torch release's Python files and stubs bind."""

    def __init__(self, wheel: Path):
        self.zip = zipfile.ZipFile(wheel)
        self.files = set(self.zip.namelist())

    def _sources(self, module: str) -> list[str]:
        base = module.replace(".", "/")
        return [self.zip.read(f).decode() for f in (f"{base}.py", f"{base}.pyi", f"{base}/__init__.py",
                                                    f"{base}/__init__.pyi") if f in self.files]

    def is_module(self, module: str) -> bool:
        return bool(self._sources(module))

    def binds(self, module: str, name: str, seen: frozenset = frozenset()) -> bool:
        for source in self._sources(module):
            for statement in _top_level(ast.parse(source)):
                if name in _bound_names(statement):
                    return True
                if (isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module
                        and any(a.name == "*" for a in statement.names) and statement.module not in seen
                        and self.binds(statement.module, name, seen | {module})):
                    return True
        return False

    def defines(self, dotted: str) -> bool:
        parts = dotted.split(".")
        for i in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module binds the next part
            module = ".".join(parts[:i])
            if self.is_module(module):
                return self.is_module(f"{module}.{parts[i]}") or self.binds(module, parts[i])
        return False


def _top_level(tree: ast.Module):
    stack = list(tree.body)
    while stack:
        statement = stack.pop()
        yield statement
        if isinstance(statement, (ast.If, ast.Try)):
            stack += statement.body + statement.orelse + getattr(statement, "finalbody", [])
            stack += [s for handler in getattr(statement, "handlers", []) for s in handler.body]


def _bound_names(statement: ast.stmt) -> set[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in statement.names}
    targets = statement.targets if isinstance(statement, ast.Assign) else (
        [statement.target] if isinstance(statement, ast.AnnAssign) else [])
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", nargs="+", default=["2.3.1", "2.4.1", "2.5.1", "2.6.0"])
    parser.add_argument("--wheels", type=Path, help="folder holding (or receiving) the torch wheels")
    args = parser.parse_args()
    folder = args.wheels or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    releases = {tuple(int(p) for p in v.split(".")[:2]): Release(wheel_for(v, folder)) for v in args.versions}
    floor = torch_floor()
    if floor not in releases:
        print(f"the floor {floor} is not among --versions {args.versions}")
        return 1
    failures = 0
    for name, where in sorted(young_names_used().items()):
        first = next((v for v, release in sorted(releases.items()) if release.defines(name)), None)
        recorded = SINCE.get(name)
        ok = first is not None and recorded is not None and recorded >= first and releases[floor].defines(name)
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:48s} first in {first}  SINCE {recorded}  (used at {where})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

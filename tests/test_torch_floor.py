"""pyproject.toml's ``torch>=`` floor is the oldest torch that has every young torch API fastmotion uses.

The package (``fastmotion/`` and ``kernels/``) is scanned for the names it takes from torch
(attribute chains ``torch.a.b`` and ``from torch.a import b``). Names in the namespaces that
still grow from one release to the next must be listed in SINCE with the first release that has
them, and the floor must be the newest of those releases. SINCE itself is checked against the
released wheels' sources by ``python .ci/check_torch_floor.py`` (run it when you add a name).
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("fastmotion", "kernels")

# Where torch adds API between releases; a name fastmotion takes from here needs a SINCE entry.
YOUNG_NAMESPACES = ("torch.library.", "torch._library.", "torch.compiler.", "torch.export.", "torch._dynamo.",
                    "torch._inductor.", "torch._higher_order_ops.", "torch.amp.", "torch.nn.attention.")

# First torch release with each young name fastmotion uses (minor versions; (2, 3): 2.3 or older,
# the oldest release .ci/check_torch_floor.py reads).
SINCE = {
    "torch.library.register_fake": (2, 4),
    "torch.library.register_autograd": (2, 4),
    "torch.library.triton_op": (2, 6),
    "torch.library.wrap_triton": (2, 6),  # 2.5 had it as the private torch._library.triton.capture_triton
    "torch._library.triton.set_wrap_triton_enabled": (2, 6),  # optional: fastmotion/ops/_eager.py falls back
    "torch.compiler.is_compiling": (2, 3),
    "torch.get_autocast_dtype": (2, 4),
    # the name is old; the device_type argument fastmotion passes came in 2.4
    "torch.is_autocast_enabled": (2, 4),
    "torch.amp.GradScaler": (2, 3),
    "torch.export.export": (2, 3),
    "torch.export.Dim": (2, 3),
    "torch._inductor.aoti_compile_and_package": (2, 6),
    "torch._inductor.aoti_load_package": (2, 6),
}


def torch_floor() -> tuple[int, int]:
    """The (major, minor) of the ``torch>=`` requirement in pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    found = re.findall(r'"torch>=(\d+)\.(\d+)[^"]*"', text)
    assert len(found) == 1, f"expected one torch>= requirement in pyproject.toml, found {found}"
    return int(found[0][0]), int(found[0][1])


def _attribute_chain(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "torch":
        return ".".join(["torch", *reversed(parts)])
    return None


def torch_names_used() -> dict[str, str]:
    """Every ``torch.*`` name the package refers to -> one file:line that does."""
    used: dict[str, str] = {}
    for package in PACKAGE_DIRS:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            where = os.path.relpath(path, REPO)
            inner = {id(child) for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                     for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "torch":
                    names = [f"{node.module}.{alias.name}" for alias in node.names]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names if alias.name.startswith("torch.")]
                elif isinstance(node, ast.Attribute) and id(node) not in inner:
                    chain = _attribute_chain(node)
                    names = [chain] if chain else []
                for name in names:
                    used.setdefault(name, f"{where}:{node.lineno}")
    return used


def young_names_used() -> dict[str, str]:
    return {name: where for name, where in torch_names_used().items()
            if name.startswith(YOUNG_NAMESPACES) or name in SINCE}


def test_scan_sees_the_known_uses():
    used = torch_names_used()
    assert "torch.library.wrap_triton" in used  # `from torch.library import wrap_triton` in kernels/
    assert "torch.library.triton_op" in used     # decorator chains in fastmotion/ops/
    assert "torch.compiler.is_compiling" in used


def test_every_young_torch_name_has_a_known_first_release():
    used = young_names_used()
    unknown = {name: where for name, where in used.items() if name not in SINCE}
    assert not unknown, (f"fastmotion uses torch names whose first release is not recorded: {unknown}; "
                         "find it with `python .ci/check_torch_floor.py` and add it to SINCE")
    assert not set(SINCE) - set(used), f"SINCE lists names fastmotion no longer uses: {set(SINCE) - set(used)}"


def test_floor_is_the_newest_release_the_package_needs():
    needed = {name: SINCE[name] for name in young_names_used() if name in SINCE}
    newest = max(needed.values())
    assert torch_floor() == newest, (
        f"pyproject.toml says torch>={'.'.join(map(str, torch_floor()))} but the newest API fastmotion uses "
        f"needs {'.'.join(map(str, newest))}: {sorted(n for n, v in needed.items() if v == newest)}")

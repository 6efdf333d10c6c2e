"""Identity in two layers: the auth primitives below mfa, users and rbac; the login flow on top.

Until import-linter guards the whole tree, this reads the imports of these packages and fails
on an edge that points upwards (which is also what an import cycle needs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import wakedock

ROOT = Path(wakedock.__file__).parent
# Lowest first: a package may import only the packages before it.
LAYERS = ["auth", "rbac", "mfa", "users", "login"]


def _imported_packages(package: str) -> dict[str, set[str]]:
    """For each identity package `package` imports: the modules that import it."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = [*name.split("."), ""]
                if parts[0] == "wakedock" and parts[1] in LAYERS and parts[1] != package:
                    found.setdefault(parts[1], set()).add(path.name)
    return found


def test_each_identity_package_imports_only_the_layers_below_it() -> None:
    upward = {
        f"{package} -> {target} ({', '.join(sorted(modules))})"
        for index, package in enumerate(LAYERS)
        for target, modules in _imported_packages(package).items()
        if LAYERS.index(target) > index
    }
    assert not upward

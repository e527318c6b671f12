"""The package's folders are layers: a module imports only from its own layer or the ones below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nf"
LAYERS = ["validation", "flows", "models", "runs", "experiments", "report", "book"]  # bottom to top


def layer(module: str) -> int | None:
    """The layer of ``nf.<part>...``, or None for the top-level package files (``nf``, ``nf.__main__``)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    found |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return {name for name in found if name == "nf" or name.startswith("nf.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_imports_from_a_layer_above_its_own(path):
    own = layer(".".join(("nf", *path.relative_to(PACKAGE).with_suffix("").parts)))
    if own is None:
        return
    above = {name for name in imports(path) if (layer(name) or 0) > own}
    assert not above, f"{path.relative_to(PACKAGE)} imports from a higher layer: {sorted(above)}"


def test_every_module_belongs_to_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__", *LAYERS)]
    assert not loose, f"modules outside the layers: {loose}"

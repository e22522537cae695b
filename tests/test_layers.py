"""The package's layers (src/ibdiv/__init__.py): every import goes down or sideways within a layer,
never up; a family module imports no other family module and a backend no other backend.

Imports are read with ast, function-level ones included (they run when the function does).
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ibdiv"
LAYERS = ("core", "data", "families", "backends", "measure", "verdict", "report", "pipeline")
# Within a layer, modules that stand side by side: none of them imports another of its group.
# What they share lives in the layer's shared modules (families: backbone, masking, sampling).
SIBLINGS = {
    "families": {"ar", "mim", "diffusion", "independent", "oracle"},
    "backends": {"llamagen", "amused", "vq_diffusion"},
}
# A backend may be split over several files; they count as one backend.
BACKEND_OF_MODULE = {"llamagen_vq": "llamagen", "llamagen_sizes": "llamagen"}
# Who may import whom beyond the plain order: measure reaches backends only through the registry,
# by name (tested below), so `measure` sits above `backends` without importing them.


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("ibdiv.")}


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def module_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[2] if len(parts) > 2 else None


def test_every_module_lives_in_a_layer():
    stray = [name for name, _ in modules() if name != "ibdiv" and layer_of(name) is None]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def upward_imports(name: str, path: Path) -> list[str]:
    own = layer_of(name)
    return sorted(n for n in imported(path)
                  if layer_of(n) is not None and LAYERS.index(layer_of(n)) > LAYERS.index(own))


@pytest.mark.parametrize("name, path", [m for m in modules() if layer_of(m[0])], ids=lambda x: x if isinstance(x, str) else "")
def test_imports_go_down_or_sideways(name, path):
    upward = upward_imports(name, path)
    assert not upward, f"{name} ({layer_of(name)}) imports from a higher layer: {upward}"


@pytest.mark.parametrize("layer", sorted(SIBLINGS))
def test_siblings_do_not_import_each_other(layer):
    group = SIBLINGS[layer]
    crossing = []
    for name, path in modules():
        own = module_of(name)
        own = BACKEND_OF_MODULE.get(own, own)
        if layer_of(name) != layer or own not in group:
            continue
        for other in imported(path):
            target = BACKEND_OF_MODULE.get(module_of(other), module_of(other))
            if layer_of(other) == layer and target in group and target != own:
                crossing.append(f"{name} -> {other}")
    assert not crossing, f"{layer}: sibling modules import each other: {crossing}"


def test_the_rule_can_fail(tmp_path):
    """The checks above see an upward import when there is one (a test that cannot fail proves nothing)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ibdiv.report import tables\n")
    assert upward_imports("ibdiv.families.bad", bad) == ["ibdiv.report", "ibdiv.report.tables"]
    assert upward_imports("ibdiv.pipeline.bad", bad) == []

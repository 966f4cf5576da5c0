"""The floors of DESIGN.md, checked on the import graph: imports only point down, numba only in the shim,
cores and layers compose ops (never kernels)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "refmann"
#: Each floor may import the floors listed after it (lower), never one before it.
FLOORS = ["cli", "bench", "train", "viz", "tasks", "models", "layers", "cores", "memory", "grads", "ops", "kernels"]
TOOLS = {"gradcheck", "golden", "testing", "course"}  # beside the floors: they use ops and models, nothing uses them


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    module = ".".join(("refmann",) + path.relative_to(ROOT).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module


MODULES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_numba_is_imported_only_by_the_jit_shim(path):
    if path.name == "_jit.py":
        return
    assert not [m for m in _imports(path) if m and m.split(".")[0] == "numba"], path


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_point_down(path):
    me = _floor(".".join(("refmann",) + path.relative_to(ROOT).with_suffix("").parts))
    if me not in FLOORS:
        return  # tools, private helpers, the package itself
    mine = FLOORS.index(me)
    for target in _imports(path):
        if not target or not target.startswith("refmann."):
            continue
        other = _floor(target)
        if other in FLOORS and other != me:
            assert FLOORS.index(other) > mine, f"{path.relative_to(ROOT)} imports {target} (a higher floor)"
        assert other not in TOOLS or me in ("cli", "bench", "train"), f"{path.relative_to(ROOT)} imports {target}"


@pytest.mark.parametrize("floor", ["cores", "layers", "models"])
def test_cores_layers_and_models_compose_ops_never_kernels(floor):
    for path in sorted((ROOT / floor).rglob("*.py")):
        assert not [m for m in _imports(path) if m and m.startswith("refmann.kernels")], path

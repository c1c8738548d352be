"""What the engine imports when it is imported is installed by ``pip install .``.

The README's first command installs the project without extras (and Slicer's own Python has only what Slicer ships
plus what the extension declares): a module-level import of a package that is not in ``[project] dependencies``
breaks ``breasttumorseg demo`` and the Slicer module on a fresh machine, while the test extra (which pulls in more,
e.g. scikit-image through nnunetv2) hides it here. Imports inside functions (optional features that say what to
install) and imports guarded by ``try``/``except ImportError`` are not counted; ``slicer/`` and ``web/`` import the
application's own modules (test_architecture.APP_MODULES), which are not pip dependencies.
"""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "BreastTumorSeg" / "BreastTumorSegLib"
APP_CORNERS = {"slicer", "web"}  # run inside Slicer / behind the `web` extra (checked by test_architecture)
# import name -> distribution name, where they differ
DISTRIBUTION = {"deepali": "hf-deepali", "skimage": "scikit-image", "sklearn": "scikit-learn", "yaml": "pyyaml",
                "PIL": "pillow"}


def declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].strip().lower() for d in deps}


def module_level_imports(source: str) -> list[tuple[int, str]]:
    """(line, top-level name) of the absolute imports a module runs when it is imported."""
    out = []
    for node in ast.parse(source).body:  # module level only: not functions, not try/except ImportError
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def undeclared(source: str, where: str, deps: set[str]) -> list[str]:
    found = []
    for line, name in module_level_imports(source):
        if name in sys.stdlib_module_names or name in ("__future__", "BreastTumorSegLib"):
            continue
        if DISTRIBUTION.get(name, name).lower() not in deps:
            found.append(f"{where}:{line} imports {name}: not in pyproject's [project] dependencies")
    return found


def _core_modules():
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB)
        if rel.parts[0] not in APP_CORNERS:
            yield path, str(rel)


def test_the_engine_imports_only_declared_packages():
    deps = declared()
    found = []
    for path, rel in _core_modules():
        found += undeclared(path.read_text(), rel, deps)
    assert found == []


@pytest.mark.parametrize("line", ["from skimage.morphology import convex_hull_image", "import sklearn.ensemble"])
def test_an_undeclared_import_is_reported(line):
    path = LIB / "engine" / "kept_grow.py"
    source = path.read_text()
    deps = declared()
    assert undeclared(source, "engine/kept_grow.py", deps) == []
    assert undeclared(line + "\n" + source, "engine/kept_grow.py", deps)
    # inside a function it is an optional feature's lazy import: not counted
    assert undeclared(source + f"\n\ndef _probe():\n    {line}\n", "engine/kept_grow.py", deps) == []

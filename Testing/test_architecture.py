"""The package's dependency direction (see BreastTumorSegLib/__init__.py), checked on the source.

Every ``import`` of every module counts, including imports inside functions: a lazy import is
still a dependency. The checker is tested too: a forbidden import added to a module is reported.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "BreastTumorSeg" / "BreastTumorSegLib"
PACKAGE = "BreastTumorSegLib"

# Subpackage -> the subpackages it may import (itself included). The root package itself
# (``__version__``) may be imported by anyone.
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "io": {"core", "io"},
    "preprocess": {"core", "io", "preprocess"},
    "kinetics": {"core", "io", "preprocess", "kinetics"},
    "models": {"core", "io", "preprocess", "kinetics", "models"},
    "engine": {"core", "io", "preprocess", "kinetics", "models", "engine"},
    "followup": {"core", "io", "preprocess", "kinetics", "models", "engine", "followup"},
    "batch": {"core", "io", "preprocess", "kinetics", "models", "engine", "followup", "batch"},
    "evaluation": {"core", "io", "evaluation"},
    "study": {"core", "io", "preprocess", "kinetics", "models", "engine", "study"},
    "training": {"core", "io", "preprocess", "kinetics", "models", "engine", "evaluation", "training"},
    "slicer": {"core", "io", "preprocess", "kinetics", "models", "engine", "evaluation", "study", "batch", "followup",
               "slicer"},
    "slicer.gui": {"core", "io", "preprocess", "kinetics", "models", "engine", "evaluation", "study", "batch",
                   "followup", "slicer", "slicer.gui"},
    "web": {"core", "io", "preprocess", "kinetics", "models", "engine", "study", "slicer", "web"},
    "cli": {"core", "io", "preprocess", "kinetics", "models", "engine", "evaluation", "study", "batch", "training",
            "followup", "slicer", "web", "cli"},
}
# Third-party modules that belong to one corner of the package only.
APP_MODULES = {"slicer": "slicer", "vtk": "slicer", "vtkmodules": "slicer", "qt": "slicer.gui",
               "ctk": "slicer.gui", "PySide2": "slicer.gui", "PySide6": "slicer.gui", "PyQt5": "slicer.gui",
                "aiohttp": "web", "trame": "web", "trame_slicer": "web", "trame_server": "web"}


def _layer(module: str) -> str:
    """'BreastTumorSegLib.slicer.gui.widget' -> 'slicer.gui'; 'BreastTumorSegLib.io.dicom.seg' -> 'io'."""
    parts = module.split(".")[1:]
    if not parts or parts[0] == "__init__":
        return ""
    if parts[0] == "slicer" and len(parts) > 1 and parts[1] == "gui":
        return "slicer.gui"
    return parts[0]


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(LIB).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_module(name: str) -> bool:
    if not name.startswith(PACKAGE + "."):
        return False
    path = LIB.parent / name.replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").exists()


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in *source*, relative ones resolved."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([node.module] if node.module else []))
            out.append((node.lineno, base))
            # "from . import x" may name a submodule: count it as imported.
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if _is_module(f"{base}.{a.name}")]
    return out


def violations(source: str, module: str, is_package: bool) -> list[str]:
    layer = _layer(module)
    found = []
    for line, target in imports_of(source, module, is_package):
        top = target.split(".")[0]
        if top == PACKAGE:
            other = _layer(target)
            if other and layer and other not in ALLOWED[layer]:
                found.append(f"{module}:{line} ({layer}) imports {target} ({other})")
            if other and not layer:
                found.append(f"{module}:{line}: the root package imports {target}")
        elif top in APP_MODULES:
            home = APP_MODULES[top]
            if not (layer == home or layer.startswith(home + ".") or (home == "slicer" and layer == "slicer.gui")):
                found.append(f"{module}:{line} ({layer or 'root'}) imports {target}: only {home}/ may")
    return found


def _all_modules():
    for path in sorted(LIB.rglob("*.py")):
        name, is_pkg = _module_name(path)
        yield path, name, is_pkg


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted({_layer(name) for _, name, _ in _all_modules()} - set(ALLOWED) - {""})
    assert unknown == [], f"new subpackage(s) {unknown}: add them to ALLOWED and to the package docstring"


def test_dependency_direction_is_respected():
    found = []
    for path, name, is_pkg in _all_modules():
        found += violations(path.read_text(), name, is_pkg)
    assert found == []


def test_the_root_package_docstring_states_the_direction():
    doc = ast.get_docstring(ast.parse((LIB / "__init__.py").read_text()))
    for layer in ALLOWED:
        assert layer.split(".")[-1] in doc, layer


@pytest.mark.parametrize("module,line", [
    ("BreastTumorSegLib.engine.pipeline", "from ...slicer import mrml_bridge"),       # engine -> Slicer bridge
    ("BreastTumorSegLib.engine.pipeline", "import slicer"),                           # engine -> Slicer itself
    ("BreastTumorSegLib.models.network", "from ..training.trainer import main"),      # inference -> trainer
    ("BreastTumorSegLib.core.exam", "from ..io.files import load_exam"),              # core -> io
    ("BreastTumorSegLib.evaluation.metrics", "from ..models import registry"),         # evaluation -> models
    ("BreastTumorSegLib.slicer.logic", "from .gui import widget"),                    # logic -> Slicer-app code
    ("BreastTumorSegLib.engine.pipeline", "from BreastTumorSegLib.cli import main"),  # anyone -> cli
    ("BreastTumorSegLib.preprocess.registration", "import qt"),                      # Qt outside the GUI
    ("BreastTumorSegLib.study.session", "from ..evaluation import readerstudy"),      # study -> evaluation
    ("BreastTumorSegLib.study.session", "import slicer"),                             # study -> Slicer
    ("BreastTumorSegLib.engine.pipeline", "from ..study import session"),             # engine -> study
    ("BreastTumorSegLib.study.session", "from ..web import app"),                     # study -> web
    ("BreastTumorSegLib.slicer.logic", "from aiohttp import web"),                    # web server outside web/
    ("BreastTumorSegLib.web.workspace", "import vtk"),                                # VTK outside slicer/
    ("BreastTumorSegLib.followup.run", "from ..batch import runner"),                 # followup -> batch
    ("BreastTumorSegLib.engine.pipeline", "from ..followup import run"),              # engine -> followup
])
def test_a_forbidden_import_is_reported(module, line):
    path = LIB.parent / (module.replace(".", "/") + ".py")
    source = path.read_text()
    assert violations(source, module, False) == []
    # Inside a function too: a lazy import is still a dependency.
    added = source + f"\n\ndef _probe():\n    {line}\n"
    assert violations(added, module, False), line


def module_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (lazy imports included; a package's ``__init__``
    is not a node: importing through it names no one module)."""
    graph = {}
    for name, (source, is_pkg) in sources.items():
        deps = set()
        for _, target in imports_of(source, name, is_pkg):
            while target and target not in sources:
                target = target.rpartition(".")[0]
            if target and target != name and not sources[target][1]:
                deps.add(target)
        graph[name] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a loop (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _sources() -> dict[str, tuple[str, bool]]:
    return {name: (path.read_text(), is_pkg) for path, name, is_pkg in _all_modules()}


def test_no_two_modules_import_each_other():
    assert import_cycles(module_graph(_sources())) == []


def test_an_import_cycle_is_reported():
    sources = _sources()
    cards, trust = "BreastTumorSegLib.models.cards", "BreastTumorSegLib.models.byom.trust"
    text, is_pkg = sources[trust]
    sources[trust] = (text + "\n\ndef _probe():\n    from ..cards import read_card\n", is_pkg)  # cards imports trust
    assert sorted([cards, trust]) in import_cycles(module_graph(sources))

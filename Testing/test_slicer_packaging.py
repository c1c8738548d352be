"""One source of truth for the dependencies: pyproject.toml; Slicer's requirements.txt is derived from it.

Inside Slicer the module installs ``Resources/requirements.txt`` (``slicer.packaging.pip_ensure``);
pip installs pyproject's ``[project] dependencies``. The two must name the same packages with the
same bounds, except what Slicer already ships (numpy, SimpleITK) and PyTorch (installed by the
PyTorch extension). ``slicer-core`` is not an engine dependency: only the bridge and its tests use it.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_requirements_txt_equals_the_pyproject_dependencies_slicer_does_not_ship():
    from BreastTumorSegLib.slicer.gui.install import read_requirements, requirements_for_slicer

    expected = requirements_for_slicer(_project()["dependencies"])
    got = read_requirements()
    assert got == expected, ("BreastTumorSeg/Resources/requirements.txt disagrees with pyproject.toml; "
                             f"fix: make its requirement lines exactly {expected}")
    assert not any(r.lower().startswith(("torch", "numpy", "simpleitk")) for r in got)


def test_slicer_core_is_an_extra_pulled_by_the_tests_not_an_engine_dependency():
    project = _project()
    assert not any(r.lower().startswith("slicer-core") for r in project["dependencies"])
    extras = project["optional-dependencies"]
    assert any(r.startswith("slicer-core") for r in extras["slicer"])
    assert any(r.startswith("slicer-core") for r in extras["test"])  # CI installs ".[test]"


def test_ensure_dependencies_with_everything_installed_asks_nothing():
    """Real slicer-core has no ``slicer.packaging`` (Slicer >= 5.12 has it): the older path is taken,
    and with every requirement satisfied it returns without a dialog (which would need Qt here)."""
    pytest.importorskip("slicer", reason="slicer-core not installed")
    from BreastTumorSegLib.slicer.gui.install import ensure_dependencies, missing_requirements

    assert missing_requirements() == []
    ensure_dependencies(need_torch=False)

"""One source of truth for the dependencies: pyproject.toml; Slicer's requirements.txt is derived from it.

Inside Slicer the module installs ``Resources/requirements.txt`` (``slicer.packaging.pip_ensure``);
pip installs pyproject's ``[project] dependencies``. The two must name the same packages with the
same bounds, except what Slicer already ships (numpy, SimpleITK, pydicom), PyTorch (installed by the
PyTorch extension), what needs PyTorch (hf-deepali, installed after it on demand), highdicom (pydicom 3
only; Slicer writes DICOM SEG itself) and the optional isal. ``slicer-core`` is not an engine
dependency: only the bridge and its tests use it.

The install order inside Slicer (PyTorch first through the PyTorch extension, then the requirements
with torch skipped and Slicer's packages pinned, then hf-deepali only for deformable motion) is
recorded with stand-ins for ``slicer.packaging`` / ``slicer.util`` and ``PyTorchUtils``: those two
APIs exist only in the Slicer application.
"""
from __future__ import annotations

import subprocess
import tomllib
import types
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
    assert not any(r.lower().startswith(("torch", "numpy", "simpleitk", "pydicom", "highdicom", "hf-deepali"))
                   for r in got)


def test_deformable_requirement_equals_pyproject():
    from BreastTumorSegLib.slicer.gui.install import DEFORMABLE_REQUIREMENTS

    assert DEFORMABLE_REQUIREMENTS == [r for r in _project()["dependencies"] if r.startswith("hf-deepali")]


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


# ============================================================================ install order, with stand-ins
class FakeEnvironment:
    """What is installed, what the user answers, and every call in order."""

    def __init__(self, installed=(), answer=True, fail=None):
        self.installed = set(installed)
        self.answer = answer
        self.fail = fail  # name of the call that raises
        self.calls = []

    def satisfied(self, requirement: str) -> bool:
        from packaging.requirements import Requirement

        return Requirement(requirement).name in self.installed

    def install(self, names):
        from packaging.requirements import Requirement

        self.installed |= {Requirement(n).name for n in names}

    # slicer.util / slicer.app
    def slicer(self):
        env = self

        def confirm(text, windowTitle=""):
            env.calls.append(("confirm", text))
            return env.answer

        def pip_install(args):
            constraints = Path(args[args.index("--constraint") + 1]).read_text()
            env.calls.append(("pip_install", [a for a in args if not a.endswith(".txt")], constraints))
            if env.fail == "pip":
                raise subprocess.CalledProcessError(1, ["python", "-m", "pip", "install"])
            env.install([a for a in args[2:]])

        return types.SimpleNamespace(util=types.SimpleNamespace(confirmOkCancelDisplay=confirm, pip_install=pip_install),
                                     app=types.SimpleNamespace(processEvents=lambda: None))

    # slicer.packaging (Slicer >= 5.12)
    def packaging(self):
        env = self

        def pip_ensure(requirements, constraints=None, skip_packages=None, requester=None, **kw):
            env.calls.append(("pip_ensure", list(requirements), tuple(skip_packages or ()),
                              Path(constraints).read_text()))
            if env.fail == "decline":
                raise RuntimeError("the user declined")
            if env.fail == "pip":
                raise subprocess.CalledProcessError(1, ["pip"])
            env.install(requirements)
            return []

        return types.SimpleNamespace(pip_ensure=pip_ensure)

    # the PyTorch extension
    def torch_utils(self):
        env = self

        class PyTorchUtilsLogic:
            def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                             torchvisionVersionRequirement=None):
                env.calls.append(("installTorch", askConfirmation, torchVersionRequirement))
                if env.fail == "torch":
                    raise OSError("no space left on device")
                if not env.answer:
                    return None
                env.installed.add("torch")
                return types.SimpleNamespace(__version__="2.5.1")

        return types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic)


@pytest.fixture
def fake(monkeypatch):
    from BreastTumorSegLib.slicer.gui import install

    def make(**kw):
        env = FakeEnvironment(**kw)
        monkeypatch.setattr(install, "requirement_satisfied", env.satisfied)
        monkeypatch.setattr(install, "torch_available", lambda: "torch" in env.installed)
        return env
    return make


def _installer(env, slicer_512=True, pytorch_extension=True):
    from BreastTumorSegLib.slicer.gui.install import Installer

    return Installer(env.slicer(), env.packaging() if slicer_512 else None,
                     env.torch_utils() if pytorch_extension else None)


def test_pytorch_first_through_the_extension_then_the_rest_with_torch_skipped(fake):
    from BreastTumorSegLib.slicer.gui.install import read_requirements

    env = fake()
    _installer(env).ensure(need_torch=True)
    assert [c[0] for c in env.calls] == ["installTorch", "pip_ensure"]
    assert env.calls[0] == ("installTorch", True, ">=2.2")
    _, requirements, skipped, constraints = env.calls[1]
    assert requirements == read_requirements() and skipped == ("torch",)
    assert not any(r.startswith(("torch", "hf-deepali")) for r in requirements)  # deepali only on demand
    import numpy
    assert f"numpy=={numpy.__version__}" in constraints.splitlines()  # what Slicer ships is pinned


def test_deformable_motion_adds_deepali_after_pytorch_with_torch_pinned(fake):
    env = fake()
    _installer(env).ensure(need_torch=False, need_deformable=True)
    assert [c[0] for c in env.calls] == ["installTorch", "pip_ensure", "pip_ensure"]
    assert env.calls[2][1] == ["hf-deepali>=0.6"] and env.calls[2][2] == ("torch",)


def test_ftv_installs_no_pytorch(fake):
    env = fake()
    _installer(env).ensure(need_torch=False)
    assert [c[0] for c in env.calls] == ["pip_ensure"]
    env.calls.clear()
    _installer(env).ensure(need_torch=False)  # everything there now: nothing asked
    assert env.calls == []


def test_slicer_5_8_and_5_10_confirm_then_pip_install_with_constraints(fake):
    from BreastTumorSegLib.slicer.gui.install import read_requirements

    env = fake(installed={"scipy"})
    _installer(env, slicer_512=False).ensure(need_torch=True)
    assert [c[0] for c in env.calls] == ["installTorch", "confirm", "pip_install"]
    args, constraints = env.calls[2][1], env.calls[2][2]
    assert args[0] == "--constraint" and args[1:] == [r for r in read_requirements() if not r.startswith("scipy")]
    import numpy
    assert f"numpy=={numpy.__version__}" in constraints.splitlines()


@pytest.mark.parametrize("case", ["pip-5.12", "pip-5.10", "declined-5.12", "declined-5.10", "torch-error",
                                  "torch-declined", "no-pytorch-extension"])
def test_every_install_failure_is_one_message_with_the_fix(fake, case):
    from BreastTumorSegLib.slicer.gui.install import DependencyError

    fail = {"pip-5.12": "pip", "pip-5.10": "pip", "declined-5.12": "decline", "torch-error": "torch"}.get(case)
    env = fake(answer=case not in ("declined-5.10", "torch-declined"), fail=fail)
    installer = _installer(env, slicer_512=case.endswith("5.12") or case.startswith("torch"),
                           pytorch_extension=case != "no-pytorch-extension")
    with pytest.raises(DependencyError) as info:
        installer.ensure(need_torch=True)
    text = str(info.value)
    assert "Fix:" in text and "\n" not in text and "Traceback" not in text
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    if case == "no-pytorch-extension":
        assert "Extensions Manager" in text and env.calls == []

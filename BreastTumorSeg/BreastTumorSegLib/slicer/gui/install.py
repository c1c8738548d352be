"""Python dependencies of the engine inside Slicer: checked, and installed only after the user agrees.

Nothing here runs at import time or in the module constructor. The panel calls
:func:`ensure_dependencies` when the user presses Apply (or the Install button), because that
is when the packages are needed. The order is fixed (README "Into Slicer"):

1. **PyTorch**, only for a model that is a network, through the PyTorch extension
   (``PyTorchUtils.PyTorchUtilsLogic().installTorch``), which picks the build for the user's GPU and
   OS; plain pip would often give a CPU-only or mismatched CUDA build. FTV and the kinetics need no
   PyTorch at all.
2. ``Resources/requirements.txt``, none of which depends on PyTorch, with every package Slicer ships
   (numpy, scipy, pydicom, pillow, SimpleITK, vtk) and an installed torch pinned to its installed
   version in a constraints file, so pip can add packages but never replace Slicer's: Slicer 5.12+
   through ``slicer.packaging.pip_ensure(..., constraints=..., skip_packages=["torch"])`` (asks,
   shows progress, skips in testing mode); Slicer 5.8 and 5.10, which have no ``slicer.packaging``,
   after an explicit confirmation with ``slicer.util.pip_install(["--constraint", FILE, ...])``.
3. ``hf-deepali`` (the deformable motion level), only when deformable motion is asked for, after
   PyTorch and with it pinned, so pip never fetches another torch for it.

Every failure (declined, no network, pip's error) becomes one :class:`DependencyError` whose message
ends with the fix, never a traceback. :func:`missing_requirements` is plain Python
(``importlib.metadata``) and tested outside Slicer; the two Slicer-only APIs come in as arguments
so that the order of the calls is tested too.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import tempfile
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[3] / "Resources" / "requirements.txt"
TORCH_REQUIREMENT = ">=2.2"
# The deformable motion level (PyTorch): installed on demand, after PyTorch (equal to pyproject's line).
DEFORMABLE_REQUIREMENTS = ["hf-deepali>=0.6"]
# What Slicer ships in its own Python: never upgraded or downgraded by this extension.
SLICER_BUNDLED = ("numpy", "scipy", "pydicom", "pillow", "SimpleITK", "vtk")
# Distributions of pyproject's dependencies that are not in requirements.txt, and why:
NOT_FROM_PIP_IN_SLICER = {
    "numpy", "simpleitk",  # Slicer ships them (scipy too, but scipy>=1.10 is met by every supported Slicer)
    "pydicom",  # Slicer ships 2.4.4; the engine uses only what pydicom 2.4 and 3 have in common
    "highdicom",  # needs pydicom 3; DICOM SEG inside Slicer is written by Slicer's own DICOM module
    "torch",  # from the PyTorch extension (the build that matches the GPU)
    "hf-deepali",  # needs torch: installed after it, and only for deformable motion (DEFORMABLE_REQUIREMENTS)
    "isal",  # optional gzip speed-up (zlib without it); no wheel for Python 3.9 on macOS arm64 (Slicer 5.8)
}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower()


def requirements_for_slicer(project_dependencies: list[str]) -> list[str]:
    """The requirement lines ``Resources/requirements.txt`` must hold for pyproject's dependencies."""
    return [r for r in project_dependencies if _name(r) not in NOT_FROM_PIP_IN_SLICER]


class DependencyError(RuntimeError):
    """A needed package is missing and was not installed; the message says how to install it."""


def read_requirements(path: str | Path = REQUIREMENTS) -> list[str]:
    """Requirement lines of a requirements file (comments and blank lines dropped)."""
    lines = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def requirement_satisfied(requirement: str) -> bool:
    """Whether an installed distribution meets *requirement* (``packaging`` ships with every Slicer)."""
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    try:
        installed = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return req.specifier.contains(installed, prereleases=True)


def missing_requirements(path: str | Path = REQUIREMENTS) -> list[str]:
    """Requirements of *path* that the running Python does not satisfy."""
    return [r for r in read_requirements(path) if not requirement_satisfied(r)]


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def pinned_constraints(names=SLICER_BUNDLED + ("torch",)) -> list[str]:
    """``name==version`` for every installed distribution of *names*: what pip may not replace."""
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return pins


def _slicer_packaging():
    """``slicer.packaging`` (Slicer >= 5.12), or None in Slicer 5.8 and 5.10."""
    try:  # a submodule: getattr(slicer, "packaging") works only once something imported it
        module = importlib.import_module("slicer.packaging")
    except ImportError:
        return None
    return module if hasattr(module, "pip_ensure") else None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


class Installer:
    """Installs in the fixed order (module docstring). *slicer_module* is the ``slicer`` package
    (``util.confirmOkCancelDisplay``, ``util.pip_install``, ``app.processEvents``); *packaging* is
    ``slicer.packaging`` or None; *torch_utils* the PyTorch extension's ``PyTorchUtils`` module
    or None when that extension is not installed."""

    def __init__(self, slicer_module, packaging=None, torch_utils=None, requester: str = "BreastTumorSeg"):
        self.slicer = slicer_module
        self.packaging = packaging
        self.torch_utils = torch_utils
        self.requester = requester

    def ensure(self, need_torch: bool, need_deformable: bool = False, path: str | Path = REQUIREMENTS) -> None:
        if (need_torch or need_deformable) and not torch_available():
            self.install_torch()
        self.pip(read_requirements(path), "the engine's Python packages")
        if need_deformable:
            self.pip(DEFORMABLE_REQUIREMENTS, "the deformable motion correction (hf-deepali)")

    def install_torch(self) -> None:
        who = self.requester
        if self.torch_utils is None:
            raise DependencyError(
                f"{who} needs PyTorch for this model. Fix: install the 'PyTorch' extension from the Extensions "
                "Manager, restart Slicer, then press Apply again (it installs the right build for your GPU); "
                "or choose the ftv model, which needs no PyTorch.")
        try:
            torch = self.torch_utils.PyTorchUtilsLogic().installTorch(
                askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT)
        except Exception as exc:  # noqa: BLE001 - network, pip or driver trouble: one message
            raise DependencyError(
                f"{who} could not install PyTorch ({_one_line(exc)}). Fix: open the PyTorch Utils module, install "
                "PyTorch there (it shows the details), restart Slicer, then press Apply again.") from None
        if torch is None:
            raise DependencyError(f"{who} needs PyTorch for this model and it was not installed. Fix: press Apply "
                                  "again and accept the installation, or choose the ftv model (no PyTorch).")
        self.slicer.app.processEvents()

    def pip(self, requirements: list[str], what: str) -> None:
        """Install the unmet *requirements* with Slicer's packages and an installed torch pinned."""
        missing = [r for r in requirements if not requirement_satisfied(r)]
        if not missing:
            return
        who = self.requester
        fd, constraints = tempfile.mkstemp(prefix="breasttumorseg-constraints-", suffix=".txt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("\n".join(pinned_constraints()) + "\n")
            if self.packaging is not None:  # Slicer >= 5.12: asks, shows progress
                try:
                    self.packaging.pip_ensure(missing, constraints=constraints, skip_packages=["torch"],
                                              requester=who)
                except RuntimeError as exc:  # the user declined
                    raise DependencyError(f"{who} cannot run without {', '.join(missing)} ({_one_line(exc)}). "
                                          "Fix: press Apply again and accept the installation.") from None
            else:  # Slicer 5.8 and 5.10
                if not self.slicer.util.confirmOkCancelDisplay(
                        f"{who} needs {what}, which are not installed yet:\n\n" + "\n".join(missing)
                        + "\n\nInstall them now? This can take a few minutes. Packages Slicer ships are "
                        "not changed.", windowTitle=f"{who}: install dependencies"):
                    raise DependencyError(f"{who} cannot run without {', '.join(missing)}. "
                                          "Fix: press Apply again and accept the installation.")
                self.slicer.util.pip_install(["--constraint", constraints, *missing])
        except DependencyError:
            raise
        except Exception as exc:  # noqa: BLE001 - CalledProcessError, OSError, ...: one message with the fix
            raise DependencyError(
                f"{who} could not install {', '.join(missing)} ({_one_line(exc)}). Fix: check the internet "
                "connection (or the proxy settings), then press 'Install dependencies' again; pip's output is in "
                "the Python console.") from None
        finally:
            Path(constraints).unlink(missing_ok=True)
        importlib.invalidate_caches()
        still = [r for r in missing if not requirement_satisfied(r)]
        if still:
            raise DependencyError(f"{who}: {', '.join(still)} could not be installed next to the packages Slicer "
                                  "ships. Fix: restart Slicer and press Apply again; if it persists, report the "
                                  "Python console's pip output.")


def ensure_dependencies(need_torch: bool = True, need_deformable: bool = False,
                        requester: str = "BreastTumorSeg", path: str | Path = REQUIREMENTS) -> None:
    """Make the engine's packages importable in Slicer (PyTorch first, then requirements.txt, then
    hf-deepali when deformable motion is asked for), asking the user before installing anything.

    Raises :class:`DependencyError` (one line ending with the fix) when the user declines or an
    install fails."""
    import slicer

    try:
        import PyTorchUtils  # the PyTorch extension's module
    except ImportError:
        PyTorchUtils = None
    Installer(slicer, _slicer_packaging(), PyTorchUtils, requester).ensure(need_torch, need_deformable, path)

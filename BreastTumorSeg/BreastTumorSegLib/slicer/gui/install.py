"""Python dependencies of the engine inside Slicer: checked, and installed only after the user agrees.

Nothing here runs at import time or in the module constructor. The panel calls
:func:`ensure_dependencies` when the user presses Apply (or the Install button), because that
is when the packages are needed. Slicer ≥ 5.12 has ``slicer.packaging.pip_ensure`` (asks,
shows progress, skips in testing mode); older versions get an explicit confirmation and
``slicer.util.pip_install``. PyTorch is installed through the PyTorch extension
(``PyTorchUtils``), which picks the CUDA build that matches the GPU driver; plain pip would
often give a CPU-only or mismatched build.

:func:`missing_requirements` is plain Python (``importlib.metadata``) and tested outside Slicer.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[3] / "Resources" / "requirements.txt"
TORCH_REQUIREMENT = ">=2.2"
# Distributions of pyproject's dependencies that are not in requirements.txt: Slicer ships numpy and
# SimpleITK, and PyTorch comes from the PyTorch extension (the build that matches the GPU).
NOT_FROM_PIP_IN_SLICER = {"numpy", "simpleitk", "torch"}


def requirements_for_slicer(project_dependencies: list[str]) -> list[str]:
    """The requirement lines ``Resources/requirements.txt`` must hold for pyproject's dependencies."""
    return [r for r in project_dependencies
            if re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower() not in NOT_FROM_PIP_IN_SLICER]


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


_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def _version_tuple(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in re.findall(r"\d+", text)[:4])


def requirement_satisfied(requirement: str) -> bool:
    """Whether an installed distribution meets *requirement* (name plus ``>=``/``==`` bounds)."""
    try:
        from packaging.requirements import Requirement  # present in Slicer and most environments
    except ImportError:  # pragma: no cover - fallback for bare environments
        Requirement = None
    if Requirement is not None:
        req = Requirement(requirement)
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            return False
        return req.specifier.contains(installed, prereleases=True)
    m = _REQ_RE.match(requirement)
    name, spec = m.group(1), m.group(2)
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    for op, ver in re.findall(r"(>=|==|>|<=|<)\s*([\w.]+)", spec):
        a, b = _version_tuple(installed), _version_tuple(ver)
        if not {">=": a >= b, "==": a == b, ">": a > b, "<=": a <= b, "<": a < b}[op]:
            return False
    return True


def missing_requirements(path: str | Path = REQUIREMENTS) -> list[str]:
    """Requirements of *path* that the running Python does not satisfy."""
    return [r for r in read_requirements(path) if not requirement_satisfied(r)]


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def ensure_dependencies(need_torch: bool = True, requester: str = "BreastTumorSeg",
                        path: str | Path = REQUIREMENTS) -> None:
    """Make the engine's packages importable in Slicer, asking the user before installing anything.

    Raises :class:`DependencyError` when the user declines or an install fails.
    """
    import slicer

    try:  # a submodule: getattr(slicer, "packaging") works only once something imported it
        packaging = importlib.import_module("slicer.packaging")
    except ImportError:  # Slicer < 5.12
        packaging = None
    if packaging is not None and hasattr(packaging, "pip_ensure"):  # Slicer >= 5.12
        try:
            packaging.pip_ensure(packaging.load_requirements(str(path)), requester=requester)
        except RuntimeError as exc:  # raised when the user declines
            raise DependencyError(f"{requester} needs {', '.join(missing_requirements(path))}: {exc}") from None
    else:
        missing = missing_requirements(path)
        if missing:
            if not slicer.util.confirmOkCancelDisplay(
                    f"{requester} needs these Python packages, which are not installed yet:\n\n"
                    + "\n".join(missing) + "\n\nInstall them now? This can take a few minutes.",
                    windowTitle=f"{requester}: install dependencies"):
                raise DependencyError(f"{requester} cannot run without {', '.join(missing)}. "
                                      "Fix: press Apply again and accept the installation.")
            slicer.util.pip_install(missing)
    if need_torch and not torch_available():
        _install_torch(requester)


def _install_torch(requester: str) -> None:
    import slicer

    try:
        import PyTorchUtils  # the PyTorch extension's module
    except ImportError:
        raise DependencyError(
            f"{requester} needs PyTorch. Fix: install the 'PyTorch' extension from the Extensions "
            "Manager, restart Slicer, then press Apply again (it installs the right build for your GPU)."
        ) from None
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True,
                                                          torchVersionRequirement=TORCH_REQUIREMENT)
    if torch is None:
        raise DependencyError(f"{requester} needs PyTorch and it was not installed. "
                              "Fix: press Apply again and accept the installation.")
    slicer.app.processEvents()

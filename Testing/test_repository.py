"""Promises the repository makes: README commands, CI entry point, a Qt-free core."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "BreastTumorSeg" / "BreastTumorSegLib"


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up: the two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert "breasttumorseg demo" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    commands = [ln for ln in lines if not ln.startswith(("set ", "cd "))]
    # Besides the README's test command, .ci/run may only install system packages the tests need,
    # through .ci/install-test-browser, which must not install Python packages or run tests.
    setup = [ln for ln in commands if ln == ".ci/install-test-browser"]
    assert [ln for ln in commands if ln not in setup] == [_readme_commands()[1]]
    for name in setup:
        body = [ln for ln in (ROOT / name).read_text().splitlines() if not ln.lstrip().startswith("#")]
        assert not any(("pytest" in ln or "pip install" in ln) for ln in body), name


def test_core_package_never_imports_qt():
    pattern = re.compile(r"^\s*(import|from)\s+(qt|ctk|PySide\d?|PyQt\d?|shiboken\d?)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in CORE.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_only_the_slicer_subpackage_imports_slicer():
    pattern = re.compile(r"^\s*(import slicer|from slicer\b)", re.M)
    users = sorted(str(p.relative_to(CORE)) for p in CORE.rglob("*.py") if pattern.search(p.read_text()))
    assert users and all(u.startswith("slicer/") for u in users), users

"""The Slicer the radiologists have (5.8 and later, Windows, macOS, Linux), emulated in CI.

* The engine code Slicer imports runs on the oldest supported Slicer's Python (3.9, ``vermin``).
* ``Resources/requirements.txt`` resolves against what each supported Slicer ships
  (``Resources/slicer-constraints/<version>.txt``, pins from Slicer's SuperBuild files) for Windows,
  macOS arm64 and Linux, with pip's own resolver and wheels from PyPI, without replacing any of it;
  and the check fails when a requirement would replace a bundled package.
* Nothing imports a POSIX-only module at top level; ``--model ftv`` runs with PyTorch absent.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "BreastTumorSeg"
LIB = MODULE_DIR / "BreastTumorSegLib"
REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"
CONSTRAINTS = MODULE_DIR / "Resources" / "slicer-constraints"

SUPPORTED_SLICERS = ("5.8", "5.10")
OLDEST_PYTHON = (3, 9)  # Slicer 5.8's Python 3.9.10
# pip's platform tags of the installers radiologists use. macOS arm64 wheels of scipy 1.13 are tagged
# macosx_12_0_arm64: a macOS 14 platform accepts them and every older tag.
PLATFORMS = ("win_amd64", "macosx_14_0_arm64", "manylinux2014_x86_64")
# Built by Slicer itself (SimpleITK, VTK) or by the PyTorch extension (torch): pip must never bring them.
NEVER_FROM_PIP = {"simpleitk", "vtk", "torch"}
# Not run by Slicer: the `train` command's TOML configs (tomllib, Python 3.11). Everything else is.
NOT_RUN_IN_SLICER = r"training/(trainer|config)\.py$"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def slicer_constraints(version: str) -> tuple[str, dict[str, str]]:
    """(Python version, {package: pinned version}) of a constraints file."""
    text = (CONSTRAINTS / f"{version}.txt").read_text(encoding="utf-8")
    python = re.search(r"^# python (\d+\.\d+)$", text, re.M).group(1)
    pins = dict(line.split("==") for line in text.splitlines() if line and not line.startswith("#"))
    return python, {_norm(k): v for k, v in pins.items()}


def resolve(requirements: Path, slicer: str, platform: str, target: Path) -> list[str]:
    """Problems of installing *requirements* into Slicer *slicer* on *platform* (empty: fine), by
    ``pip install --dry-run`` for that Python and platform, with Slicer's packages as constraints."""
    python, pins = slicer_constraints(slicer)
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
           "--python-version", python, "--platform", platform, "--target", str(target),
           "-r", str(requirements), "--constraint", str(CONSTRAINTS / f"{slicer}.txt"),
           "--report", "-", "--quiet", "--disable-pip-version-check", "--no-input"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    where = f"Slicer {slicer} (Python {python}) on {platform}"
    if proc.returncode != 0:
        err = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING: Location" not in ln]
        return [f"{where}: nothing resolves: " + " | ".join(err[-6:])]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    installs = {_norm(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    problems = [f"{where}: would replace Slicer's {n} {pins[n]} by {v}"
                for n, v in installs.items() if n in pins and v != pins[n]]
    problems += [f"{where}: would install {n} from pip" for n in installs if n in NEVER_FROM_PIP]
    return problems


PINNED = ("numpy", "scipy", "pydicom", "pillow")
# What pip prints when it cannot reach the index at all (a wrong pin is a failure, not a skip).
OFFLINE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
           "Name or service not known", "Network is unreachable", "ConnectTimeoutError", "ProxyError")


def pinned_venv(slicer: str, venv: Path) -> str:
    """The python of a virtual environment at *venv* over this one with what Slicer *slicer* ships of
    numpy / scipy / pydicom / pillow (from the package index; checked installed and imported from
    there). Skips, saying why, only when the index does not answer."""
    _, pins = slicer_constraints(slicer)
    wanted = {name: pins[name] for name in PINNED}
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = str(venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python"))
    extra = ["pandas<3"] if wanted["numpy"].startswith("1.") else []  # pandas 3 (statsmodels imports it) needs numpy 2
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-input",
                              *(f"{n}=={v}" for n, v in wanted.items()), *extra],
                             capture_output=True, text=True, timeout=600)
    if install.returncode != 0:
        offline = _index_unreachable() or (any(s in install.stderr for s in OFFLINE) and "pip: connection errors")
        if offline:
            pytest.skip(f"pip cannot reach the package index to install Slicer {slicer}'s pins ({offline}): "
                        + install.stderr.strip().splitlines()[-1][:300])
    assert install.returncode == 0, install.stderr[-2000:]
    probe = ("import importlib.metadata as m, json, numpy; print(json.dumps([{n: m.version(n) for n in %r}, "
             "numpy.__file__]))" % (sorted(wanted),))
    versions, numpy_file = json.loads(subprocess.run([python, "-c", probe], capture_output=True, text=True,
                                                     check=True).stdout)
    assert versions == wanted and Path(numpy_file).is_relative_to(venv), (versions, numpy_file)
    return python


def _index_unreachable() -> str:
    """Why the package index pip uses (PIP_INDEX_URL, else PyPI) cannot be reached; empty if it can."""
    import urllib.error
    import urllib.request

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/pydicom/", timeout=20):
            return ""
    except urllib.error.HTTPError:
        return ""  # it answered
    except (OSError, ValueError) as exc:
        return f"{index}: {exc}"


def test_constraint_files_hold_what_slicer_ships():
    for version, python, numpy in (("5.8", "3.9", "1.26.4"), ("5.10", "3.12", "2.0.2")):
        got_python, pins = slicer_constraints(version)
        assert got_python == python and pins["numpy"] == numpy and pins["pydicom"] == "2.4.4"
        assert pins["scipy"] == "1.13.1"
    assert (CONSTRAINTS / "5.8.txt").read_text().count("v5.8.1") and (CONSTRAINTS / "5.10.txt").read_text().count("v5.10.0")
    assert sorted(p.stem for p in CONSTRAINTS.glob("*.txt")) == sorted(SUPPORTED_SLICERS)


def test_requirements_resolve_in_every_supported_slicer_and_platform(tmp_path):
    jobs = [(s, p) for s in SUPPORTED_SLICERS for p in PLATFORMS]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: resolve(REQUIREMENTS, *job, tmp_path / "-".join(job)), jobs))
    problems = [p for r in results for p in r]
    assert not problems, "\n".join(problems)


def test_the_check_fails_when_a_requirement_would_replace_a_bundled_package(tmp_path):
    bad = tmp_path / "requirements.txt"
    bad.write_text(REQUIREMENTS.read_text() + "pydicom>=3\n")
    problems = resolve(bad, "5.10", "manylinux2014_x86_64", tmp_path / "t")
    assert problems and "nothing resolves" in problems[0] and "pydicom" in problems[0]


def test_engine_code_runs_on_the_oldest_supported_slicer_python():
    vermin = "import sys; from vermin.main import main; sys.argv[0] = 'vermin'; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", vermin, "--no-tips", "--violations",
                           "-t=%d.%d-" % OLDEST_PYTHON, "--exclude-regex", NOT_RUN_IN_SLICER,
                           str(LIB), str(MODULE_DIR / "BreastTumorSeg.py"), str(MODULE_DIR / "BreastTumorSegReader.py"),
                           str(MODULE_DIR / "Scripts")], capture_output=True, text=True, timeout=300)
    m = re.search(r"Minimum required versions: 3\.(\d+)", proc.stdout)
    assert proc.returncode == 0 and m and int(m.group(1)) <= OLDEST_PYTHON[1], proc.stdout[-3000:]


POSIX_ONLY = {"fcntl", "resource", "pwd", "grp", "termios", "tty", "pty", "posix", "syslog", "crypt", "spwd"}


def test_nothing_imports_a_posix_only_module_at_top_level():
    bad = []
    for path in sorted(MODULE_DIR.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in POSIX_ONLY]
    assert not bad, bad


def test_ftv_runs_without_pytorch(tmp_path):
    """FTV (and the kinetics) need no PyTorch: the CLI segments with torch and deepali unimportable."""
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    ph = make_phantom(5, n_phases=3, motion_mm=0.0, spacing=4.0)
    write_phantom(ph, tmp_path / "exam")
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("torch", "deepali"):
                    raise ImportError("no " + name)
        sys.meta_path.insert(0, NoTorch())
        sys.path.insert(0, {str(MODULE_DIR)!r})
        from BreastTumorSegLib.cli import main
        rc = main(["segment", {str(tmp_path / "exam")!r}, "-o", {str(tmp_path / "out")!r}, "--model", "ftv",
                   "--device", "cpu", "--quiet"])
        assert "torch" not in sys.modules
        sys.exit(rc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import SimpleITK as sitk

    from BreastTumorSegLib.evaluation.metrics import dice
    label = sitk.ReadImage(str(tmp_path / "out" / "phantom_0005_seg.nii.gz"))
    assert dice(label, ph.tumor_mask) > 0.5


def test_locks_forced_onto_the_windows_branch_signal_no_process(tmp_path, monkeypatch):
    """A reader lock held by a live process is refused and the holder lives on; once it is dead the
    lock is taken over; batch claims exclude each other: all without signalling anyone (on Windows
    ``os.kill(pid, 0)`` would terminate the holder)."""
    import os
    import socket
    import time

    from BreastTumorSegLib.batch.ledger import Ledger
    from BreastTumorSegLib.study import storage

    signalled = []  # (calling module, arguments) of every os.kill / os.killpg
    real_kill = os.kill

    def kill(*args):
        signalled.append((sys._getframe(1).f_globals.get("__name__", ""), args))
        return real_kill(*args)  # psutil's POSIX backend probes with signal 0 (on Windows: OpenProcess)

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(os, "killpg", lambda *a: signalled.append(("killpg", a)), raising=False)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    path = tmp_path / "reader.lock"
    try:
        now = time.time()
        path.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "owner": "the other session",
                                    "acquired": now, "heartbeat": now}))
        with pytest.raises(storage.StudyLockedError, match="in use by the other session"):
            storage.Lock(path, "me").acquire()
        assert holder.poll() is None  # checking the lock did not end its holder
    finally:
        holder.kill()
        holder.wait()
    lock = storage.Lock(path, "me").acquire()  # the holder is gone: stale, taken over
    assert lock.held and lock.recovered["owner"] == "the other session"
    lock.release()
    assert not path.exists()

    ledger = Ledger(tmp_path / "out")
    first = ledger.claim("case1")
    assert first is not None and ledger.claim("case1") is None  # held: a second worker skips it
    ledger.release(first)
    again = ledger.claim("case1")
    assert again is not None
    ledger.release(again)
    ours = [s for s in signalled if s[0] == "killpg" or s[0].startswith("BreastTumorSegLib")]
    assert not ours and any(s[0].startswith("psutil") for s in signalled), signalled


def test_dicom_seg_without_highdicom_is_refused_in_one_line(monkeypatch):
    """In Slicer's Python (pydicom 2.4, no highdicom) `--dicom-seg` is refused before the work, with
    the fix: Slicer's own DICOM module writes the SEG there."""
    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.io.dicom.seg import check_seg_writer

    check_seg_writer()  # here: highdicom 0.28+ with pydicom 3
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import fails, as in Slicer's Python
    with pytest.raises(InputError) as info:
        check_seg_writer()
    text = str(info.value)
    assert "--dicom-seg" in text and "Slicer's DICOM module" in text and "\n" not in text


def test_mrml_and_dicom_tests_pass_with_slicer_5_10_packages(tmp_path):
    """The MRML bridge and the DICOM reader with what Slicer 5.10 ships (numpy 2.0.2, scipy 1.13.1,
    pydicom 2.4.4, pillow 11.2.1) in a virtual environment over this one (~1 min with PyPI; the full
    set of Slicer-facing tests: scripts/test_with_slicer_pins.sh)."""
    python = pinned_venv("5.10", tmp_path / "venv")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "Testing" / "test_mrml_bridge.py"),
                          str(ROOT / "Testing" / "test_dicom_reader.py")], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=900)
    assert run.returncode == 0 and " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-3000:]

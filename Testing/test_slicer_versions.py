"""The engine RUN with the packages Slicer 5.8 ships (numpy 1.26.4, scipy 1.13.1, pydicom 2.4.4,
pillow 10.3.0; ``Resources/slicer-constraints/5.8.txt``), not only resolved or parsed.

A virtual environment over this Python's packages (SimpleITK, torch, matplotlib come from there) gets
Slicer 5.8's pins from PyPI, once per session under pytest's temporary folder. In it the
``breasttumorseg demo`` command segments the bundled demo exam, and the DICOM reader (pydicom 2.4)
reads fixtures written here with pydicom 3: uncompressed, RLE and JPEG-LS files, and a refusal of a
transfer syntax pydicom 2.4 does not know. The demo's Dice must equal this environment's within 1e-3.
Skipped (saying so) only when pip cannot reach the package index. Python 3.9 itself is checked by
vermin (test_slicer_environment.py); the full Slicer-facing set: scripts/test_with_slicer_pins.sh.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dicom_fixtures as fx
import pydicom
import pytest
from test_slicer_environment import MODULE_DIR, ROOT, pinned_venv

SLICER = "5.8"


@pytest.fixture(scope="session")
def slicer_python(tmp_path_factory) -> str:
    """The python of a venv with Slicer 5.8's numpy / scipy / pydicom / pillow (checked installed)."""
    return pinned_venv(SLICER, tmp_path_factory.mktemp("slicer-" + SLICER) / "venv")


def _start(python: str, code: str, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(MODULE_DIR), str(ROOT / "Testing")])}
    return subprocess.Popen([python, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env=env)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def _demo_dice(out: Path) -> float:
    import SimpleITK as sitk
    from BreastTumorSegLib.evaluation.metrics import dice

    (label,) = out.glob("*_seg.nii.gz")
    (truth,) = (out / "demo_exam").glob("*_tumor.nii.gz")
    return dice(sitk.ReadImage(str(label)), sitk.ReadImage(str(truth)))


def test_demo_segments_the_same_with_slicer_5_8_packages(slicer_python, tmp_path):
    """``breasttumorseg demo`` (the default model, gate and outline) gives this environment's result."""
    from BreastTumorSegLib.cli import main

    theirs = tmp_path / "slicer"
    proc = _start(slicer_python, f"""
        import sys
        from BreastTumorSegLib.cli import main
        sys.exit(main(["demo", "--output", {str(theirs)!r}, "--quiet"]))
    """, tmp_path)
    ours = tmp_path / "here"  # meanwhile, here
    assert main(["demo", "--output", str(ours), "--quiet"]) == 0
    rc, out, err = _finish(proc)
    assert rc == 0 and "Dice against" in out, err[-3000:]
    a, b = _demo_dice(ours), _demo_dice(theirs)
    assert b > 0.5 and abs(a - b) <= 1e-3, f"demo Dice {a:.5f} here, {b:.5f} with Slicer {SLICER}'s packages"
    lesions = [json.loads(next(d.glob("*.json")).read_text())["lesions"] for d in (ours, theirs)]
    assert len(lesions[0]) == len(lesions[1])


def test_dicom_written_with_pydicom_3_reads_with_slicer_5_8_pydicom(slicer_python, tmp_path):
    """Files written by pydicom 3 (as scanners and converters write them) read with pydicom 2.4 to the
    phantom: uncompressed multi-phase, RLE and (where this pydicom can encode it) JPEG-LS; a transfer
    syntax younger than pydicom 2.4 (HTJ2K) is refused naming the file, the syntax and the fix."""
    small = fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 32, 8))
    fx.write_ge_multiphase(small, tmp_path / "ge")
    written = {"ge": list(small.slopes)}  # the RescaleSlope per phase each writer chose (the tolerance)
    for name, syntax, plugin in (("rle", pydicom.uid.RLELossless, None),
                                 ("jpegls", pydicom.uid.JPEGLSLossless, "jpeg_ls")):
        if plugin is not None and not _importable(plugin):
            continue
        paths = fx.write_siemens_per_phase(small, tmp_path / name)
        for p in paths:
            ds = pydicom.dcmread(p)
            ds.compress(syntax)
            ds.save_as(p)
        written[name] = list(small.slopes)
    for p in fx.write_ge_multiphase(small, tmp_path / "htj2k"):
        ds = pydicom.dcmread(p)
        ds.compress(pydicom.uid.RLELossless)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"  # no decoder for it: pixels stay RLE
        ds.save_as(p)
    proc = _start(slicer_python, f"""
        import pydicom
        import dicom_fixtures as fx
        from test_dicom_reader import assert_same_exam
        from BreastTumorSegLib.core.errors import InputError
        from BreastTumorSegLib.io.files import load_exam
        assert pydicom.__version__ == "2.4.4", pydicom.__version__
        small = fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 32, 8))
        for name, slopes in {written!r}.items():
            small.slopes = slopes
            assert_same_exam(load_exam({str(tmp_path)!r} + "/" + name), small)
        try:
            load_exam({str(tmp_path / "htj2k")!r})
        except InputError as exc:
            print(exc)
        else:
            raise SystemExit("HTJ2K files were read")
    """, tmp_path)
    rc, out, err = _finish(proc)
    assert rc == 0, err[-3000:]
    msg = out.strip()
    assert str(tmp_path / "htj2k") in msg and "High-Throughput JPEG 2000" in msg and "gdcmconv --raw" in msg, msg


IMPORT_ALL = """
    import importlib, json, pkgutil
    import BreastTumorSegLib as pkg
    failed = {}
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if m.name.endswith(".__main__"):
            continue
        try:
            importlib.import_module(m.name)
        except Exception as exc:
            failed[m.name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(failed))
"""


def test_every_module_imports_with_slicer_5_8_packages(slicer_python, tmp_path):
    """What imports here imports with Slicer 5.8's packages: a name only newer numpy / scipy / pydicom /
    pillow have (scipy 1.15's ``sph_harm_y`` was one) fails here, even in code the demo does not reach."""
    procs = [_start(python, IMPORT_ALL, tmp_path) for python in (sys.executable, slicer_python)]
    here, theirs = [_finish(p) for p in procs]
    assert here[0] == 0 and theirs[0] == 0, (here[2][-2000:], theirs[2][-2000:])
    here, theirs = json.loads(here[1].splitlines()[-1]), json.loads(theirs[1].splitlines()[-1])
    only_there = {k: v for k, v in theirs.items() if k not in here}
    assert not only_there, only_there


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True

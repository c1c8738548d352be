"""The engine works where ``slicer-core`` (and VTK, and Qt) cannot be imported, e.g. ``PythonSlicer``
or a plain ``pip install breasttumorseg`` without the ``slicer`` extra.

What is simulated, honestly: the engine runs in a child Python whose import system refuses the
modules of ``slicer-core`` (``slicer``, ``vtk``, ``vtkmodules``, ``MRML*``/``vtkSlicer*`` Python
wrappers) and of Qt (``qt``, ``ctk``, ``PySide6``, ...): a ``sitecustomize`` placed first on its
``PYTHONPATH`` puts a finder at the front of ``sys.meta_path`` that raises
``ModuleNotFoundError`` for them, exactly what a Python without those distributions raises. The
distributions stay installed on disk (a throwaway venv without them would need a fresh copy of
torch, minutes and gigabytes per CI run). Inside the child we first check that the blocker works.

The child then imports every engine module and runs ``breasttumorseg segment`` end to end
(the kinetic ``ftv`` model, no weights) on a small phantom. Back in this process, with real MRML,
the ``.seg.nrrd`` it wrote loads in Slicer's own segmentation reader with the same voxels and
geometry as the label map, and the segment's name, colour and terminology.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
LIB_PARENT = ROOT / "BreastTumorSeg"
LIB = LIB_PARENT / "BreastTumorSegLib"

# Top-level modules a Python without slicer-core / VTK / Qt cannot import.
BLOCKED = ("slicer", "vtk", "vtkmodules", "slicer_core", "qt", "ctk", "PythonQt", "PySide6", "PySide2",
           "shiboken6", "PyQt5", "PyQt6")

SITECUSTOMIZE = textwrap.dedent(f"""
    # Written by Testing/test_engine_without_slicer.py: this Python behaves as if slicer-core, VTK
    # and Qt were not installed.
    import sys

    _BLOCKED = {BLOCKED!r}

    class _NotInstalled:
        @staticmethod
        def find_spec(name, path=None, target=None):
            top = name.split(".")[0]
            if top in _BLOCKED or top.startswith(("vtkSlicer", "MRML", "qMRML")):
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _NotInstalled())
""")

CHILD = textwrap.dedent("""
    import importlib, pkgutil, sys
    import BreastTumorSegLib

    for name in ("slicer", "vtk", "PySide6"):
        try:
            __import__(name)
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit(f"blocker failed: {name} imported")

    engine = []
    for info in pkgutil.walk_packages(BreastTumorSegLib.__path__, "BreastTumorSegLib."):
        if info.name.startswith(("BreastTumorSegLib.slicer", "BreastTumorSegLib.web")) or info.name.endswith("__main__"):
            continue  # the Slicer bridge and the web station (one MRML scene per reader) need
            # slicer-core (the `slicer` / `web` extras); __main__ would run
        importlib.import_module(info.name)
        engine.append(info.name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("slicer", "vtk", "vtkmodules"))
    if leaked:
        raise SystemExit(f"engine imported {leaked}")
    print("IMPORTED", len(engine), flush=True)

    from BreastTumorSegLib.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def no_slicer_env(tmp_path_factory) -> dict:
    site = tmp_path_factory.mktemp("no_slicer_site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(LIB_PARENT)])
    env["OMP_NUM_THREADS"] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def small_exam(tmp_path_factory):
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    ph = make_phantom(3, spacing=3.0, motion_mm=0.0, n_tumors=1, tumor_radius_mm=9.0)
    folder = tmp_path_factory.mktemp("exam") / "exam"
    write_phantom(ph, folder)
    return ph, folder


def test_blocker_refuses_slicer_vtk_and_qt(no_slicer_env):
    code = ("import importlib\n"
            "for n in ('slicer', 'vtk', 'vtkmodules.vtkCommonCore', 'PySide6.QtCore', 'qt'):\n"
            "    try:\n        importlib.import_module(n)\n    except ModuleNotFoundError:\n        continue\n"
            "    raise SystemExit(n)\n"
            "import numpy, SimpleITK, slicerio\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], env=no_slicer_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_engine_segments_and_writes_seg_nrrd_without_slicer(no_slicer_env, small_exam, tmp_path):
    ph, folder = small_exam
    out_dir = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", CHILD, "segment", str(folder), "--output", str(out_dir),
                           "--model", "ftv", "--device", "cpu", "--no-register", "--reading-images"],
                          env=no_slicer_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "IMPORTED" in proc.stdout
    case = ph.exam.case_id
    label = sitk.ReadImage(str(out_dir / f"{case}_seg.nii.gz"))
    from BreastTumorSegLib.evaluation.metrics import dice
    assert dice(label, ph.tumor_mask) > 0.5  # the run did its job, not just ran
    summary = json.loads((out_dir / f"{case}.json").read_text())
    assert summary["lesions"]
    # --reading-images: the subtraction (unregistered here: --no-register) and the lesion gate.
    sub = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / f"{case}_subtraction.nii.gz")))
    raw = sitk.GetArrayFromImage(ph.exam.phases[1]) - sitk.GetArrayFromImage(ph.exam.phases[0])
    np.testing.assert_allclose(sub, raw, atol=1e-3)
    breast = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / f"{case}_breast.nii.gz")))
    assert set(np.unique(breast)) == {0, 1} and breast[sitk.GetArrayFromImage(label) > 0].mean() > 0.25

    # The .seg.nrrd written without Slicer, read by Slicer's own reader (real MRML).
    slicer = pytest.importorskip("slicer", reason="slicer-core (the 'slicer' extra) not installed")
    from BreastTumorSegLib.io.segnrrd import TUMOR_COLOR
    from BreastTumorSegLib.slicer import mrml_bridge as mb

    ctx = mb.MRMLContext.headless()
    seg_node = ctx.segmentations_logic.LoadSegmentationFromFile(str(out_dir / f"{case}.seg.nrrd"), False)
    assert seg_node is not None
    segment = seg_node.GetSegmentation().GetSegment("Tumor")
    assert segment.GetName() == "Tumor"
    np.testing.assert_allclose(segment.GetColor(), TUMOR_COLOR, atol=1e-3)
    assert "SCT^108369006^Neoplasm" in segment.GetTerminology()
    ref = mb.image_to_volume_node(ctx, sitk.Cast(label, sitk.sitkFloat32), "ref")
    back = mb.segment_to_label(ctx, seg_node, "Tumor", ref)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back) > 0, sitk.GetArrayViewFromImage(label) > 0)
    np.testing.assert_allclose(back.GetOrigin(), label.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetSpacing(), label.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), label.GetDirection(), atol=1e-6)

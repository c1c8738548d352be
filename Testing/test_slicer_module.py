"""The Slicer module without the Slicer application: logic on real MRML, background engine, .ui, packaging.

Real MRML comes from the ``slicer-core`` wheel (``MRMLContext.headless``); nothing of ``slicer``
is faked. Qt-dependent code (the widget) is checked statically: every widget name it uses must
exist in the ``.ui`` with a compatible class, and every parameter binding must match a field of
the parameter node with a widget type ``parameterNodeWrapper`` can connect.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "BreastTumorSeg"
LIB = MODULE_DIR / "BreastTumorSegLib"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "BreastTumorSeg.ui"

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")

from BreastTumorSegLib import mrml_bridge as mb  # noqa: E402
from BreastTumorSegLib import slicer_process as sp  # noqa: E402
from BreastTumorSegLib.errors import InputError  # noqa: E402
from BreastTumorSegLib.exam import DCEExam  # noqa: E402
from BreastTumorSegLib.slicer_logic import (OutputNodes, Phase, SegmentationLogic, engine_command,  # noqa: E402
                                            exam_from_phases, guess_phases, lesion_rows, model_card_html,
                                            parse_dicom_time, phases_from_sequence, safe_case_id)


@pytest.fixture
def mrml() -> mb.MRMLContext:
    return mb.MRMLContext.headless()


# ============================================================================ synthetic exam
class SubtractionSegmenter:
    """A transparent stand-in model: probability = clipped (first post − pre) / scale.

    It satisfies the engine's Segmenter protocol, so the real ``pipeline.segment_exam`` runs
    (breast mask, post-processing, lesion measurement); only the network is replaced, which keeps
    these tests about the Slicer logic and fast without trained weights.
    """

    model_id = "test-subtraction"
    card = {"name": "test-subtraction", "postprocess": {"threshold": 0.5, "mode": "absolute",
                                                         "min_lesion_ml": 0.0, "restrict_to_breast": False}}

    def __init__(self, scale: float):
        self.scale = scale

    def predict(self, exam, breast_mask, reporter, device="auto", **options):
        sub = sitk.GetArrayFromImage(exam.first_post) - sitk.GetArrayFromImage(exam.pre)
        prob = sitk.GetImageFromArray(np.clip(sub / self.scale, 0, 1).astype(np.float32))
        prob.CopyInformation(exam.pre)
        return prob


def synthetic_exam(pre: sitk.Image, n_post: int = 3, center=None, radii=(4, 6, 6)):
    """Phases of a DCE exam built on a real (no-contrast) volume: an enhancing ellipsoid is added."""
    arr = sitk.GetArrayFromImage(pre).astype(np.float32)
    c = center or tuple(s // 2 for s in arr.shape)
    z, y, x = np.indices(arr.shape)
    ball = ((z - c[0]) / radii[0]) ** 2 + ((y - c[1]) / radii[1]) ** 2 + ((x - c[2]) / radii[2]) ** 2 < 1
    boost = float(np.percentile(arr, 99)) + 1.0
    phases = [pre]
    for k in range(n_post):
        a = arr.copy()
        a[ball] += boost * (1.0 + 0.2 * k)
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(pre)
        phases.append(img)
    return phases, ball, boost


def sag_pre(real_anatomy_dir, size=(72, 64, 28)) -> sitk.Image:
    img = sitk.ReadImage(str(real_anatomy_dir / "SAG_T1_3D_BILAT.nii.gz"), sitk.sitkFloat32)
    start = [(s - c) // 2 for s, c in zip(img.GetSize(), size)]
    return sitk.RegionOfInterest(img, size, start)


def add_phase_nodes(mrml, phases, names=None):
    names = names or [f"exam_{i:04d}" for i in range(len(phases))]
    return [mb.image_to_volume_node(mrml, img, name) for img, name in zip(phases, names)]


# ============================================================================ phases and exams
def test_dicom_times_order_phases_and_give_minutes(mrml):
    img = sitk.Image((4, 4, 4), sitk.sitkFloat32)
    nodes = add_phase_nodes(mrml, [img] * 3, ["post B", "pre", "post A"])
    uid_time = {"u1": "101730.5", "u2": "101500", "u3": "101615"}
    for node, uid in zip(nodes, ["u1", "u2", "u3"]):
        node.SetAttribute("DICOM.instanceUIDs", uid)
    phases = guess_phases(nodes, lambda uid, tag: uid_time[uid] if tag == "0008,0032" else "")
    assert [p.name for p in phases] == ["pre", "post A", "post B"]
    assert [p.time_min for p in phases] == pytest.approx([0.0, 1.25, 2.5083], abs=1e-3)
    assert phases[0].source == "DICOM AcquisitionTime"


def test_phase_guess_by_attribute_name_index_and_pre_keyword(mrml):
    img = sitk.Image((4, 4, 4), sitk.sitkFloat32)
    a = add_phase_nodes(mrml, [img] * 3, ["x", "y", "z"])
    for node, t in zip(a, ["3", "0", "1.5"]):
        node.SetAttribute("BreastTumorSeg.AcquisitionTimeMin", t)
    assert [p.name for p in guess_phases(a)] == ["y", "z", "x"]
    b = add_phase_nodes(mrml, [img] * 3, ["c_0002", "c_0000", "c_0001"])
    assert [p.name for p in guess_phases(b)] == ["c_0000", "c_0001", "c_0002"]
    c = add_phase_nodes(mrml, [img] * 3, ["dyn 1", "T1 pre", "dyn 2"])
    got = guess_phases(c)
    assert [p.name for p in got] == ["T1 pre", "dyn 1", "dyn 2"] and all(p.time_min is None for p in got)


def test_parse_dicom_time():
    assert parse_dicom_time("101530.25") == pytest.approx(10 * 3600 + 15 * 60 + 30.25)
    assert parse_dicom_time("10:15:30") == 10 * 3600 + 15 * 60 + 30
    assert parse_dicom_time("1015") == 10 * 3600 + 15 * 60
    assert parse_dicom_time("garbage") is None and parse_dicom_time("") is None


def test_sequence_node_gives_phases_and_times(mrml):
    seq = mrml.scene.AddNewNodeByClass("vtkMRMLSequenceNode", "DCE")
    seq.SetIndexName("time")
    seq.SetIndexUnit("s")
    for i, t in enumerate([12.0, 102.0, 192.0]):
        node = slicer.vtkMRMLScalarVolumeNode()
        node.SetName(f"frame {i}")
        slicer.util.updateVolumeFromArray(node, np.full((3, 4, 5), i, np.float32))
        seq.SetDataNodeAtValue(node, str(t))
    phases = phases_from_sequence(seq)
    assert [p.time_min for p in phases] == pytest.approx([0.0, 1.5, 3.0])
    assert "sequence index" in phases[0].source
    exam = exam_from_phases(phases, "seq")
    assert exam.n_phases == 3 and exam.times_min == pytest.approx([0.0, 1.5, 3.0])
    assert float(sitk.GetArrayViewFromImage(exam.phases[2]).mean()) == 2.0


def test_exam_from_phases_keeps_geometry_and_rejects_bad_input(mrml, real_anatomy_dir):
    pre = sag_pre(real_anatomy_dir)
    phases, _, _ = synthetic_exam(pre, n_post=1)
    nodes = add_phase_nodes(mrml, phases)
    exam = exam_from_phases(guess_phases(nodes), "c")
    np.testing.assert_allclose(exam.pre.GetDirection(), pre.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(exam.pre.GetOrigin(), pre.GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(exam.first_post), sitk.GetArrayViewFromImage(phases[1]))
    with pytest.raises(InputError, match="2 to 8 phases"):
        exam_from_phases(guess_phases(nodes[:1]), "c")
    with pytest.raises(InputError, match="increase"):
        exam_from_phases(guess_phases(nodes), "c", times_min=[2.0, 1.0])


def test_safe_case_id():
    assert safe_case_id("3: T1 AX DYN pre") == "3_T1_AX_DYN_pre"
    assert safe_case_id("DUKE_001_0000") == "DUKE_001"
    assert safe_case_id("///") == "case"


# ============================================================================ logic on real MRML
@pytest.mark.parametrize("which", ["sagittal-real", "oblique"])
def test_logic_segment_puts_the_engine_label_into_the_scene_exactly(mrml, real_anatomy_dir, which):
    pre = sag_pre(real_anatomy_dir)
    if which == "oblique":
        pre = sitk.Image(pre)
        pre.SetDirection(sitk.VersorTransform((0.2, 0.9, 0.4), 0.5).GetMatrix())
    phases, ball, boost = synthetic_exam(pre)
    nodes = add_phase_nodes(mrml, phases)
    logic = SegmentationLogic(mrml)
    outputs, result = logic.segment(guess_phases(nodes), model=SubtractionSegmenter(boost), register=False)

    # The engine found the enhancing ellipsoid (a sanity check of the inputs, not of a model).
    label = sitk.GetArrayFromImage(result.label) > 0
    assert label[ball].mean() > 0.95 and label[~ball].mean() < 0.01

    # Segment "Tumor" exported back equals the engine's label voxel for voxel, geometry included.
    back = mb.segment_to_label(mrml, outputs.segmentation, "Tumor", nodes[0])
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back) > 0, label)
    np.testing.assert_allclose(back.GetDirection(), pre.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), pre.GetOrigin(), atol=1e-4)
    segment = outputs.segmentation.GetSegmentation().GetSegment("Tumor")
    assert "SCT^108369006^Neoplasm" in segment.GetTerminology()

    # Probability map node: same grid and values as the engine's.
    prob = mb.volume_node_to_image(outputs.probability)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(prob), sitk.GetArrayViewFromImage(result.probability))
    np.testing.assert_allclose(prob.GetDirection(), pre.GetDirection(), atol=1e-6)

    # Lesion table: one row per lesion with the engine's numbers.
    table = outputs.lesion_table
    assert table.GetNumberOfRows() == len(result.lesions) == 1
    assert table.GetTable().GetColumnByName("Volume (mL)").GetValue(0) == pytest.approx(result.lesions[0].volume_ml, abs=1e-4)  # JSON rounding
    expected_ml = ball.sum() * np.prod(pre.GetSpacing()) / 1000
    assert result.lesions[0].volume_ml == pytest.approx(expected_ml, rel=0.05)

    # Subtraction image for reading: first post − pre.
    sub = sitk.GetArrayFromImage(mb.volume_node_to_image(outputs.subtraction))
    np.testing.assert_allclose(sub, sitk.GetArrayFromImage(phases[1]) - sitk.GetArrayFromImage(phases[0]), atol=1e-3)


def test_rerun_reuses_the_output_nodes(mrml, real_anatomy_dir):
    phases, ball, boost = synthetic_exam(sag_pre(real_anatomy_dir))
    nodes = add_phase_nodes(mrml, phases)
    logic = SegmentationLogic(mrml)
    first, _ = logic.segment(guess_phases(nodes), model=SubtractionSegmenter(boost), register=False)
    n_nodes = mrml.scene.GetNumberOfNodes()
    # A stricter threshold gives a different result into the same nodes.
    second, result = logic.segment(guess_phases(nodes), model=SubtractionSegmenter(boost * 1.9), register=False,
                                   outputs=first, threshold=0.5)
    assert second.ids() == first.ids()
    assert mrml.scene.GetNumberOfNodes() == n_nodes
    back = mb.segment_to_label(mrml, second.segmentation, "Tumor", nodes[0])
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(result.label) > 0)
    assert second.segmentation.GetSegmentation().GetNumberOfSegments() == 1


def test_saved_and_reloaded_scene_keeps_the_segmentation(mrml, real_anatomy_dir, tmp_path):
    phases, ball, boost = synthetic_exam(sag_pre(real_anatomy_dir))
    nodes = add_phase_nodes(mrml, phases)
    outputs, result = SegmentationLogic(mrml).segment(guess_phases(nodes), model=SubtractionSegmenter(boost),
                                                      register=False)
    bundle = tmp_path / "scene"
    bundle.mkdir()
    assert mrml.app_logic.SaveSceneToSlicerDataBundleDirectory(str(bundle), None)
    mrml_file = next(bundle.glob("*.mrml"))

    again = mb.MRMLContext.headless()
    again.scene.SetURL(str(mrml_file))
    assert again.scene.Import()
    seg = again.scene.GetFirstNodeByName(outputs.segmentation.GetName())
    ref = again.scene.GetFirstNodeByName(nodes[0].GetName())
    assert seg is not None and ref is not None
    segment = seg.GetSegmentation().GetSegment("Tumor")
    assert segment.GetName() == "Tumor" and "SCT^108369006^Neoplasm" in segment.GetTerminology()
    back = mb.segment_to_label(again, seg, "Tumor", ref)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(result.label) > 0)
    np.testing.assert_allclose(back.GetDirection(), phases[0].GetDirection(), atol=1e-6)
    table = again.scene.GetFirstNodeByName(outputs.lesion_table.GetName())
    assert table is not None and table.GetNumberOfRows() == len(result.lesions)


def test_compare_gives_dice_and_hd95_per_reference(mrml, real_anatomy_dir):
    phases, ball, boost = synthetic_exam(sag_pre(real_anatomy_dir))
    nodes = add_phase_nodes(mrml, phases)
    logic = SegmentationLogic(mrml)
    outputs, result = logic.segment(guess_phases(nodes), model=SubtractionSegmenter(boost), register=False)
    same = mb.label_to_segmentation(mrml, result.label, name="reader A", reference_node=nodes[0])
    shifted_arr = np.roll(sitk.GetArrayFromImage(result.label), 2, axis=2)
    shifted = sitk.GetImageFromArray(shifted_arr)
    shifted.CopyInformation(result.label)
    other = mb.label_to_segmentation(mrml, shifted, name="reader B", reference_node=nodes[0])
    rows, table = logic.compare(outputs.segmentation, [same, other])
    from BreastTumorSegLib.metrics import dice, hd95_mm
    assert [r.reference for r in rows] == ["reader A", "reader B"]
    assert rows[0].dice == 1.0 and rows[0].hd95_mm == 0.0
    assert rows[1].dice == pytest.approx(dice(result.label, shifted))
    assert rows[1].hd95_mm == pytest.approx(hd95_mm(result.label, shifted))
    assert 0.3 < rows[1].dice < 1.0
    assert table.GetNumberOfRows() == 2
    assert table.GetTable().GetColumnByName("Dice").GetValue(1) == pytest.approx(rows[1].dice)
    # A re-comparison reuses the table.
    _, table2 = logic.compare(outputs.segmentation, [same], table=table)
    assert table2 is table and table.GetNumberOfRows() == 1


def test_show_results_sets_slice_views_and_segmentation_display(mrml, real_anatomy_dir):
    phases, ball, boost = synthetic_exam(sag_pre(real_anatomy_dir))
    nodes = add_phase_nodes(mrml, phases)
    logic = SegmentationLogic(mrml)
    outputs, _ = logic.segment(guess_phases(nodes), model=SubtractionSegmenter(boost), register=False)
    views = [mrml.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(3)]
    logic.show_results(outputs)
    assert all(v.GetBackgroundVolumeID() == outputs.subtraction.GetID() for v in views)
    assert mrml.app_logic.GetSelectionNode().GetActiveVolumeID() == outputs.subtraction.GetID()
    assert outputs.segmentation.GetDisplayNode().GetVisibility2DFill()


def test_lesion_rows_from_engine_json():
    rows = lesion_rows([{"label": 1, "side": "left", "volume_ml": 2.5, "longest_diameter_mm": 21.0,
                         "max_probability": 0.9, "centroid_ras_mm": [1.0, 2.0, 3.0]}])
    assert rows == [[1, "left", 2.5, 21.0, 0.9, 1.0, 2.0, 3.0]]


def test_model_card_text_names_training_data():
    html = model_card_html({"name": "unet-demo", "description": "3D U-Net", "training": {"data": "40 phantoms"},
                            "limitations": "synthetic only", "postprocess": {"threshold": 0.5}})
    assert "Trained on:</i> 40 phantoms" in html and "synthetic only" in html and "0.50" in html


# ============================================================================ background engine process
def test_progress_and_error_lines_are_parsed():
    u = sp.parse_progress("[######..................]  25.0%  register...")
    assert u.fraction == pytest.approx(0.25) and u.message == "register..."
    assert sp.parse_progress("\r[#...]   5.0%  a\r[##..]  40.5%  predict: tile 3/8").fraction == pytest.approx(0.405)
    assert sp.parse_progress("case x: 1 lesion(s)") is None
    assert sp.parse_error(["x", "breasttumorseg: error: exam: no phase files. Fix: name them."]) == \
        "exam: no phase files. Fix: name them."


def test_engine_process_reports_progress_and_success():
    script = textwrap.dedent("""
        import sys, time
        for pct in (10, 55, 100):
            print(f"[###.....] {pct:5.1f}%  step {pct}", file=sys.stderr, flush=True)
            time.sleep(0.05)
        print("done")
    """)
    proc = sp.EngineProcess([sys.executable, "-c", script]).start()
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = proc.poll()
        if state.progress is not None and (not seen or seen[-1] != state.progress.fraction):
            seen.append(state.progress.fraction)
        if not state.running:
            break
        time.sleep(0.02)
    assert state.succeeded and seen[-1] == 1.0 and seen == sorted(seen)
    assert proc.lines[-1] == "done"


def test_engine_failure_becomes_one_line():
    script = "import sys; print('breasttumorseg: error: x.nii.gz: cannot read exam. Fix: re-export it.', " \
             "file=sys.stderr); sys.exit(2)"
    proc = sp.EngineProcess([sys.executable, "-c", script]).start()
    state = proc.wait(timeout=20)
    assert state.returncode == 2 and not state.succeeded
    assert proc.error_message() == "x.nii.gz: cannot read exam. Fix: re-export it."


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_cancel_kills_the_whole_process_tree(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("[#.......]  10.0%  working", flush=True)
        time.sleep(120)
    """)
    proc = sp.EngineProcess([sys.executable, "-c", script]).start()
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "child never started"
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    t0 = time.monotonic()
    proc.cancel(grace_s=2.0)
    state = proc.wait(timeout=10)
    assert time.monotonic() - t0 < 6
    assert not state.running and state.cancelled and not state.succeeded
    assert proc.error_message().startswith("Cancelled")
    # The grandchild is gone too (reaped by init, or at least a zombie no longer running).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child_pid):
        time.sleep(0.05)
    assert not _alive(child_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_engine_command_is_the_cli_segment_command(tmp_path):
    cmd = engine_command(tmp_path / "exam", tmp_path / "out", "ftv", "cpu", 0.4, python="py", extra=["--no-register"])
    assert cmd[0] == "py" and "segment" in cmd
    args = cmd[cmd.index("segment") + 1:]
    from BreastTumorSegLib.cli import build_parser
    parsed = build_parser().parse_args(["segment", *args])
    assert parsed.model == "ftv" and parsed.device == "cpu" and parsed.threshold == pytest.approx(0.4)
    assert parsed.no_register and parsed.overwrite and parsed.output == tmp_path / "out"

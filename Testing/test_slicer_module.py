"""The Slicer module without the Slicer application: logic on real MRML, background engine, .ui, packaging.

Real MRML comes from the ``slicer-core`` wheel (``MRMLContext.headless``); nothing of ``slicer``
is faked. Qt-dependent code (the widget) is checked statically: every widget name it uses must
exist in the ``.ui`` with a compatible class, and every parameter binding must match a field of
the parameter node with a widget type ``parameterNodeWrapper`` can connect.
"""
from __future__ import annotations

import ast
import os
import re
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

from script_fixtures import headless_script, import_script  # noqa: E402

from BreastTumorSegLib.slicer import mrml_bridge as mb  # noqa: E402
from BreastTumorSegLib.slicer import process as sp  # noqa: E402
from BreastTumorSegLib.core.errors import InputError  # noqa: E402
from BreastTumorSegLib.io.dicom.times import parse_tm  # noqa: E402
from BreastTumorSegLib.io.images import read_image# noqa: E402
from BreastTumorSegLib.slicer.logic import (SegmentationLogic, engine_command,  # noqa: E402
                                            exam_from_phases, guess_phases, lesion_rows, model_card_html,
                                            phases_from_sequence, safe_case_id)


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
    # No false-positive reduction: its subject is tested in test_fpreduce.py, and the ellipsoids these
    # tests insert on 3 mm sagittal slices (24 x 6 mm) are shaped like vessels.
    card = {"name": "test-subtraction", "postprocess": {"threshold": 0.5, "mode": "absolute",
                                                         "min_lesion_ml": 0.0, "restrict_to_breast": False,
                                                         "fp_reduction": False}}

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


def test_dicom_times_across_midnight_keep_acquisition_order(mrml):
    img = sitk.Image((4, 4, 4), sitk.sitkFloat32)
    nodes = add_phase_nodes(mrml, [img] * 3, ["a", "b", "c"])
    uid_time = {"u1": "000030", "u2": "235900", "u3": "000130"}
    for node, uid in zip(nodes, ["u1", "u2", "u3"]):
        node.SetAttribute("DICOM.instanceUIDs", uid)
    phases = guess_phases(nodes, lambda uid, tag: uid_time[uid] if tag == "0008,0032" else "")
    assert [p.name for p in phases] == ["b", "a", "c"]
    assert [p.time_min for p in phases] == pytest.approx([0.0, 1.5, 2.5])


def test_dicom_tm_values_the_logic_reads():
    # The logic reads DICOM times with the DICOM reader's own TM parser.
    assert parse_tm("101530.25") == pytest.approx(10 * 3600 + 15 * 60 + 30.25)
    assert parse_tm("10:15:30") == 10 * 3600 + 15 * 60 + 30
    assert parse_tm("1015") == 10 * 3600 + 15 * 60
    assert parse_tm("garbage") is None and parse_tm("") is None


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
    back = mb.segment_to_label(again, seg, "Tumor", result.label)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(result.label) > 0)
    # The reloaded exam volume holds the same values at the same physical points.
    reloaded = sitk.Resample(mb.volume_node_to_image(ref), phases[0], sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(reloaded), sitk.GetArrayViewFromImage(phases[0]))
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
    from BreastTumorSegLib.evaluation.metrics import dice
    from BreastTumorSegLib.evaluation.surface import hd95_mm
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
def test_engine_events_and_error_lines_are_parsed():
    ev = sp.parse_event('{"event": "stage", "case": "c", "stage": "register", "fraction": 0.25, "message": "register..."}')
    assert ev["event"] == "stage" and ev["fraction"] == 0.25
    assert sp.parse_event("[######..................]  25.0%  register...") is None  # no terminal bar any more
    assert sp.parse_event("case x: 1 lesion(s)") is None and sp.parse_event("{not json") is None
    assert sp.parse_event('{"no": "event"}') is None
    assert sp.parse_error(["x", "breasttumorseg: error: exam: no phase files. Fix: name them."]) == \
        "exam: no phase files. Fix: name them."


def test_engine_process_reports_progress_warnings_files_and_success(tmp_path):
    # The engine waits after each stage event until the test has seen it (an acknowledgement file):
    # a poller delayed by a loaded machine would otherwise see only the latest of two quick events.
    script = textwrap.dedent("""
        import json, os, sys, time
        ack = sys.argv[1]
        print("a library's own line", flush=True)
        for pct in (10, 55, 90):
            print(json.dumps({"event": "stage", "case": "c", "stage": "predict", "fraction": pct / 100,
                              "message": f"step {pct}", "time": 0}), flush=True)
            deadline = time.monotonic() + 15
            while not os.path.exists(os.path.join(ack, str(pct))) and time.monotonic() < deadline:
                time.sleep(0.01)
        print(json.dumps({"event": "warning", "case": "c", "message": "phase times assumed"}), flush=True)
        print(json.dumps({"event": "done", "case": "c", "stage": "write", "fraction": 1.0, "message": "1 lesion(s)",
                          "files": {"label": "/x/c_seg.nii.gz"}}), flush=True)
        print("done", file=sys.stderr)
    """)
    proc = sp.EngineProcess([sys.executable, "-c", script, str(tmp_path)]).start()
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = proc.poll()
        if state.progress is not None and (not seen or seen[-1] != state.progress.fraction):
            seen.append(state.progress.fraction)
            (tmp_path / str(round(state.progress.fraction * 100))).touch()
        if not state.running:
            break
        time.sleep(0.02)
    assert state.succeeded and seen[-1] == 1.0 and seen == sorted(seen) and 0.55 in seen, seen
    assert state.warnings == ["phase times assumed"] and state.files == {"label": "/x/c_seg.nii.gz"}
    assert state.progress.message == "1 lesion(s)"
    assert proc.lines[0] == "a library's own line" and proc.lines[-1] == "done"


def test_engine_failed_event_is_the_message():
    script = ("import json, sys; print(json.dumps({'event': 'failed', 'message': 'x.nii.gz: cannot read exam. "
              "Fix: re-export it.'})); print('breasttumorseg: error: x.nii.gz: cannot read exam. Fix: re-export it.', "
              "file=sys.stderr); sys.exit(2)")
    proc = sp.EngineProcess([sys.executable, "-c", script]).start()
    state = proc.wait(timeout=20)
    assert state.returncode == 2 and proc.error_message() == "x.nii.gz: cannot read exam. Fix: re-export it."


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
        print('{{"event": "stage", "stage": "predict", "fraction": 0.1, "message": "working"}}', flush=True)
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


# ============================================================================ the real engine in the background
@pytest.fixture(scope="module")
def phantom_exam(tmp_path_factory):
    """The engine's synthetic DCE phantom (oblique grid, known tumors), without motion."""
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    ph = make_phantom(5, motion_mm=0.0)
    folder = tmp_path_factory.mktemp("phantom") / "exam"
    write_phantom(ph, folder)
    return ph, folder


def test_background_engine_run_matches_the_cli_output_exactly(mrml, phantom_exam):
    """The panel's path: nodes -> exported exam -> `breasttumorseg segment` process -> nodes."""
    ph, _ = phantom_exam
    nodes = add_phase_nodes(mrml, ph.exam.phases, [f"ph_{i:04d}" for i in range(ph.exam.n_phases)])
    logic = SegmentationLogic(mrml)
    run = logic.start_background(guess_phases(nodes), model="ftv", device="cpu", register=False)
    fractions = []
    while True:
        state = run.process.poll()
        if state.progress is not None:
            fractions.append(state.progress.fraction)
        if not state.running:
            break
        time.sleep(0.05)
    assert state.succeeded, "\n".join(run.process.lines)
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert {Path(p).name for p in state.files.values()} >= {f"{run.case_id}_seg.nii.gz", f"{run.case_id}.seg.nrrd"}
    cli_label = read_image(run.out_dir / f"{run.case_id}_seg.nii.gz")
    cli_seg_nrrd = mb.read_seg_nrrd(run.out_dir / f"{run.case_id}.seg.nrrd")
    outputs = logic.finish_background(run)
    assert not run.workdir.exists()  # temporary exam and results removed

    back = mb.segment_to_label(mrml, outputs.segmentation, "Tumor", nodes[0])
    cli = sitk.GetArrayViewFromImage(cli_label) > 0
    assert cli.sum() > 100  # the kinetic method found the phantom's tumors
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back) > 0, cli)
    np.testing.assert_allclose(back.GetDirection(), ph.exam.pre.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), cli_label.GetOrigin(), atol=1e-4)
    # The CLI's .seg.nrrd (written without Slicer, read by Slicer's reader) holds the same voxels.
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(cli_seg_nrrd) > 0, cli)
    from BreastTumorSegLib.evaluation.metrics import dice
    assert dice(cli_label, ph.tumor_mask) > 0.5
    assert outputs.probability is not None and outputs.lesion_table.GetNumberOfRows() >= 1


def test_segment_and_batch_json_progress_share_one_schema(phantom_exam, tmp_path, capsys):
    """`segment --progress json` (what the panel reads) and `batch --progress json` emit one schema."""
    import json
    import shutil

    from BreastTumorSegLib.batch.progress import EVENT_KEYS
    from BreastTumorSegLib.cli import main

    ph, folder = phantom_exam
    assert main(["segment", str(folder), "-o", str(tmp_path / "s"), "--model", "ftv", "--no-register",
                 "--progress", "json"]) == 0
    seg = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    shutil.copytree(folder, tmp_path / "cases" / "exam")
    main(["batch", str(tmp_path / "cases"), "-o", str(tmp_path / "b"), "--model", "ftv", "--no-register",
          "--progress", "json"])
    batch = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for ev in seg + batch:
        assert set(EVENT_KEYS) <= set(ev), ev
        assert ev["fraction"] is None or 0.0 <= ev["fraction"] <= 1.0
    kinds = [ev["event"] for ev in seg]
    assert kinds[0] == "started" and kinds[-1] == "done" and set(kinds[1:-1]) == {"stage"}
    assert {"started", "stage", "done"} <= {ev["event"] for ev in batch}
    fractions = [ev["fraction"] for ev in seg]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    done = seg[-1]
    from BreastTumorSegLib.evaluation.metrics import dice
    assert dice(read_image(done["files"]["label"]), ph.tumor_mask) > 0.5 and done["case"] == seg[0]["case"]
    # an error is one JSON event with the one-line fix (and the CLI's line on stderr, exit code 2)
    assert main(["segment", str(tmp_path / "missing"), "-o", str(tmp_path / "e"), "--model", "ftv",
                 "--progress", "json"]) == 2
    out, err = capsys.readouterr()
    failed = json.loads(out.splitlines()[-1])
    assert failed["event"] == "failed" and "Fix:" in failed["message"] and failed["message"] in " ".join(err.split())


def test_background_engine_failure_gives_the_cli_message(mrml, tmp_path):
    img = sitk.Image((8, 8, 8), sitk.sitkFloat32)
    nodes = add_phase_nodes(mrml, [img, img + 1.0], ["bad_0000", "bad_0001"])
    logic = SegmentationLogic(mrml)
    run = logic.start_background(guess_phases(nodes), model="no-such-model", device="cpu", register=False)
    run.process.wait(timeout=120)
    with pytest.raises(Exception) as info:
        logic.finish_background(run)
    assert type(info.value).__name__ == "EngineFailed"
    assert "unknown model 'no-such-model'" in str(info.value) and "Traceback" not in str(info.value)
    assert not run.workdir.exists()


# ============================================================================ headless Slicer entry point
def test_the_headless_ctest_checks_what_was_written(tmp_path):
    """The ctest (Testing/Python/segment_headless_check.py) passes on the real outputs (Dice 0.919
    against the phantom's truth) and reports a label map that misses the tumor."""
    check = import_script("segment_headless_check", "Testing/Python", "Scripts")
    assert check.run_check(tmp_path) == 0
    phantom = check.check_phantom()
    case = phantom.exam.case_id
    assert check.check_content(tmp_path / "out", case, phantom) == []
    seg = tmp_path / "out" / f"{case}_seg.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(seg)) * 0, str(seg))
    problems = check.check_content(tmp_path / "out", case, phantom)
    assert any("Dice 0.000" in p for p in problems) and any(".seg.nrrd differs" in p for p in problems), problems


def test_headless_arguments_translate_to_the_cli(tmp_path):
    sh = headless_script()
    args, cli_argv, cli_args = sh.parse_args(["--input", "a", "b", "--output", str(tmp_path), "--model", "ftv",
                                              "--times", "0,1.5", "--scene", str(tmp_path / "s.mrb")])
    assert cli_argv[:4] == ["segment", "a", "b", "--output"] and "--times" in cli_argv
    assert cli_args.inputs == ["a", "b"] and cli_args.model == "ftv" and cli_args.times == [0.0, 1.5]
    assert args.scene == tmp_path / "s.mrb"


@pytest.mark.parametrize("argv", [
    ["--output", "x"],                                   # no input
    ["--input", "a"],                                    # no output
    ["--input", "a", "--output", "x", "--bogus"],        # unknown option (the CLI's parser rejects it)
    ["--input", "a", "--output", "x", "--threshold", "high"],
    ["--input", "a", "--output", "x", "--scene", "x/scene.mrml"],
])
def test_headless_rejects_bad_arguments_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        headless_script().parse_args(argv)
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_headless_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    code = headless_script().main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]
    assert not (tmp_path / "out").exists()


def test_headless_writes_the_cli_outputs_and_a_scene(phantom_exam, tmp_path):
    ph, folder = phantom_exam
    case = ph.exam.case_id
    mrb = tmp_path / "out" / f"{case}.mrb"
    code = headless_script().main(["--input", str(folder), "--output", str(tmp_path / "out"), "--model", "ftv",
                             "--device", "cpu", "--no-register", "--quiet", "--scene", str(mrb)])
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted([f"{case}_seg.nii.gz", f"{case}_prob.nii.gz", f"{case}.seg.nrrd", f"{case}.json",
                            f"{case}_overview.png", f"{case}.mrb"])
    label = read_image(tmp_path / "out" / f"{case}_seg.nii.gz")

    again = mb.MRMLContext.headless()
    (tmp_path / "unpacked").mkdir()
    assert again.app_logic.OpenSlicerDataBundle(str(mrb), str(tmp_path / "unpacked"))
    seg = again.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    assert seg is not None and again.scene.GetFirstNodeByName(f"{case}_0000") is not None
    # Compared on the CLI label's own grid: Slicer's volume reader re-orders the voxels of a volume
    # with a left-handed direction matrix (forceRightHandedIJKCoordinateSystem), so the reloaded
    # exam node may index the same physical voxels differently.
    back = mb.segment_to_label(again, seg, "Tumor", label)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back) > 0, sitk.GetArrayViewFromImage(label) > 0)
    assert again.scene.GetFirstNodeByClass("vtkMRMLTableNode") is not None


# ============================================================================ the panel (.ui) and the widget code
def _ui_tree():
    return ET.parse(UI_FILE).getroot()


def _ui_classes() -> dict[str, str]:
    return {w.get("name"): w.get("class") for w in _ui_tree().iter("widget")}


def _ui_bases() -> dict[str, str]:
    """Custom class -> the class it extends, from the .ui's <customwidgets>."""
    return {cw.findtext("class"): cw.findtext("extends") for cw in _ui_tree().iter("customwidget")}


def _is_a(cls: str, wanted: str) -> bool:
    bases = _ui_bases()
    while cls:
        if cls == wanted:
            return True
        cls = bases.get(cls)
    return False


def test_ui_parses_with_a_qmrmlwidget_root_and_unique_names():
    root = _ui_tree()
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "BreastTumorSeg"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names))
    # Every MRML widget receives the scene from the root widget.
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml_widgets = {n for n, c in _ui_classes().items() if c.startswith("qMRML") and n != "BreastTumorSeg"}
    assert mrml_widgets <= receivers


def _panel_code_files() -> list[Path]:
    """The code that works on the panel's widgets: the module file, the widget and its sub-controllers
    (every module of slicer/gui that reads ``ui.<name>``)."""
    gui = sorted(p for p in (LIB / "slicer" / "gui").glob("*.py") if re.search(r"\bui\.\w", p.read_text()))
    assert LIB / "slicer" / "gui" / "widget.py" in gui
    return [MODULE_DIR / "BreastTumorSeg.py", *gui]


def test_widget_code_uses_only_widgets_that_exist_in_the_ui_with_a_compatible_class():
    from BreastTumorSegLib.slicer.gui.widget import UI_WIDGETS

    classes = _ui_classes()
    for name, cls in UI_WIDGETS.items():
        assert name in classes, f"{name} missing from {UI_FILE.name}"
        assert _is_a(classes[name], cls), f"{name} is a {classes[name]} in the .ui, the code needs a {cls}"
    used = set()
    for path in _panel_code_files():
        used |= set(re.findall(r"\bui\.(\w+)", path.read_text()))
    used -= {"connect"}
    assert used <= set(UI_WIDGETS), f"widgets used but not declared in UI_WIDGETS: {used - set(UI_WIDGETS)}"


def _parameter_fields() -> dict[str, str]:
    """Field name -> annotation source of the @parameterNodeWrapper class (parsed, not imported:
    parameterNodeWrapper exists only inside the Slicer application)."""
    tree = ast.parse((LIB / "slicer" / "gui" / "parameters.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BreastTumorSegParameterNode")
    return {st.target.id: ast.unparse(st.annotation) for st in cls.body if isinstance(st, ast.AnnAssign)}


# Which widget classes parameterNodeWrapper's GUI connectors bind to which field types (they
# compare type(widget) exactly; see slicer/parameterNodeWrapper/guiConnectors.py).
_CONNECTABLE = {
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton", "ctkCheckablePushButton"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox",
              "qMRMLSpinBox"},
    "choice": {"QComboBox", "ctkComboBox"},
    "str": {"QLineEdit", "QLabel", "QTextEdit"},
    "node": {"qMRMLNodeComboBox"},
}


def _kind(annotation: str) -> str:
    if annotation.startswith("vtkMRML"):
        return "node"
    # A union of node classes (parameterNodeWrapper's node combo-box connector takes those too).
    if re.fullmatch(r"Union\[vtkMRML\w+(, vtkMRML\w+)*\]", annotation):
        return "node"
    if "Choice(" in annotation:
        return "choice"
    base = re.sub(r"Annotated\[(\w+),.*", r"\1", annotation)
    return base


def test_parameter_bindings_match_fields_and_connectable_widget_classes():
    fields = _parameter_fields()
    bound = {}
    for w in _ui_tree().iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = w.get("class")
    assert bound, "no widget is bound to the parameter node"
    for field, cls in bound.items():
        assert field in fields, f"{field} is bound in the .ui but is not a parameter node field"
        kind = _kind(fields[field])
        assert cls in _CONNECTABLE[kind], f"{field} ({fields[field]}) cannot be connected to a {cls}"
    # Fields without a bound widget are kept in sync by the widget code by hand.
    code = "".join(path.read_text() for path in _panel_code_files())
    for field in set(fields) - set(bound):
        assert re.search(rf"\.{field}\b", code), f"parameter {field} is neither bound in the .ui nor used in code"


# ============================================================================ extension packaging
def _cmake_list(text: str, var: str) -> list[str]:
    m = re.search(rf"set\({var}\s+(.*?)\)", text, re.S)
    assert m, f"{var} not set"
    return [item.replace("${MODULE_NAME}", "BreastTumorSeg") for item in m.group(1).split()]


def test_cmake_lists_every_python_file_and_resource():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    for listed in scripts + resources:
        assert (MODULE_DIR / listed).is_file(), f"CMakeLists.txt lists {listed}, which does not exist"

    def files(folder: Path):
        return {str(p.relative_to(MODULE_DIR)) for p in folder.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
                and not any(part.startswith(".") for part in p.relative_to(folder).parts)}

    on_disk_py = {f for f in files(LIB) | files(MODULE_DIR / "Scripts") if f.endswith(".py")}
    on_disk_py.add("BreastTumorSeg.py")
    missing = sorted(on_disk_py - set(scripts))
    assert not missing, f"add to MODULE_PYTHON_SCRIPTS in BreastTumorSeg/CMakeLists.txt: {missing}"
    on_disk_res = files(MODULE_DIR / "Resources") | {f for f in files(LIB) if not f.endswith((".py", ".pyc"))}
    missing = sorted(on_disk_res - set(resources))
    assert not missing, f"add to MODULE_PYTHON_RESOURCES in BreastTumorSeg/CMakeLists.txt: {missing}"
    assert "slicerMacroBuildScriptedModule" in text and "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_extension_metadata_is_complete():
    text = (ROOT / "CMakeLists.txt").read_text()
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        m = re.search(rf'set\(EXTENSION_{key} "([^"]+)"\)', text)
        assert m and m.group(1).strip(), f"EXTENSION_{key} is empty"
    assert "add_subdirectory(BreastTumorSeg)" in text and "Slicer_EXTENSION_CPACK" in text
    meta = dict(re.findall(r'set\(EXTENSION_(\w+) "([^"]*)"\)', text))
    assert meta["DEPENDS"] == "PyTorch" and meta["CATEGORY"] == "Segmentation"
    assert meta["HOMEPAGE"].startswith("https://")
    for key in ("ICONURL", "SCREENSHOTURLS"):  # raw files of this repository, present on disk
        for url in meta[key].split():
            m = re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/main/(.+\.png)$", url)
            assert m and (ROOT / m.group(1)).is_file(), f"EXTENSION_{key}: {url}"
    assert "Slicer 5.8 or later" in meta["DESCRIPTION"]
    module = (MODULE_DIR / "BreastTumorSeg.py").read_text()
    assert "Slicer 5.8 or later" in module  # the module's help says it too


def test_icon_is_a_128_pixel_png():
    with open(MODULE_DIR / "Resources" / "Icons" / "BreastTumorSeg.png", "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") == 128 and int.from_bytes(head[20:24], "big") == 128


def test_module_file_is_thin_and_cites_the_papers():
    text = (MODULE_DIR / "BreastTumorSeg.py").read_text()
    tree = ast.parse(text)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"BreastTumorSeg", "BreastTumorSegWidget", "BreastTumorSegLogic", "BreastTumorSegTest"} <= classes
    assert 'categories = ["Segmentation"]' in text
    assert "Hirsch" in text and "Zhang" in text  # acknowledgement
    assert re.search(r'href="\{README_URL\}"', text) and "README_URL = " in text  # help links the README
    # No install at import time or in the constructor: dependencies are ensured on Apply only.
    assert "pip_install" not in text and "pip_ensure" not in text


def test_requirements_install_nothing_slicer_ships_and_no_torch():
    from BreastTumorSegLib.slicer.gui.install import missing_requirements, read_requirements

    reqs = read_requirements()
    names = {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in reqs}
    assert names and not names & {"numpy", "simpleitk", "vtk", "torch"}
    assert missing_requirements() == []  # satisfied in the test environment


def test_requirement_checks_read_installed_versions():
    from BreastTumorSegLib.slicer.gui.install import requirement_satisfied

    assert requirement_satisfied("numpy>=1.0")
    assert not requirement_satisfied("numpy<1.0")
    assert not requirement_satisfied("surely-not-an-installed-package-xyz>=1")

"""The panel as a user drives it: ``PanelController`` on real PySide6 widgets loaded from the ``.ui``,
the real ``SegmentationLogic`` over real slicer-core MRML, the real engine in a background process.

See ``Testing/qt_harness.py`` for what is stood in (Slicer's own MRML/CTK widget classes, the
parameter-node wrapper and the application's dialogs, none of which exist outside Slicer).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core not installed")
pytest.importorskip("PySide6.QtUiTools", reason="PySide6 not installed")

import qt_harness as qh  # noqa: E402
from BreastTumorSegLib.slicer import mrml_bridge as mb  # noqa: E402
from BreastTumorSegLib.slicer.gui.widget import PanelController  # noqa: E402
from BreastTumorSegLib.slicer.logic import SegmentationLogic  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    """A small synthetic DCE exam (3 mm voxels, one tumor, no motion) with its ground truth."""
    from BreastTumorSegLib.training.phantom import make_phantom

    return make_phantom(3, spacing=3.0, motion_mm=0.0, n_tumors=1, tumor_radius_mm=9.0)


class Panel:
    """One panel over a fresh scene: ``ctx``, ``ui``, ``controller``, ``param``, ``host``."""

    def __init__(self):
        self.ctx = mb.MRMLContext.headless()
        self.root, self.ui = qh.load_ui(self.ctx.scene)
        self.host = qh.RecordingHost(self.ctx)
        self.logic = SegmentationLogic(self.ctx)
        self.controller = PanelController(self.ui, self.logic, qh.qt_namespace(), self.host)
        self.param = qh.panel_parameter_node(self.ctx.scene)
        self.controller.setParameterNode(self.param)
        self.progress: list[int] = []
        self.ui.progressBar.valueChanged.connect(self.progress.append)

    def add_exam(self, phases, prefix="exam"):
        nodes = [mb.image_to_volume_node(self.ctx, img, f"{prefix}_{i:04d}") for i, img in enumerate(phases)]
        for node in reversed(nodes):  # checked in any order: the panel orders them
            self.ui.phaseVolumesSelector.setCheckState(node, qh.Qt.Checked)
        return nodes

    def choose_model(self, name: str) -> None:
        combo = self.ui.modelComboBox
        combo.setCurrentIndex(combo.findText(name))

    def run(self, timeout_s=180.0) -> None:
        self.ui.applyButton.click()
        assert self.controller.running, self.host.errors
        assert qh.process_until(lambda: not self.controller.running, timeout_s), "the engine did not finish"

    def close(self):
        self.controller.cleanup()
        qh.close_ui(self.root)


@pytest.fixture
def panel():
    p = Panel()
    yield p
    p.close()


# ------------------------------------------------------------------------------ a result to work on
@pytest.fixture(scope="module")
def moving_phantom():
    """The same kind of exam with patient motion between the phases (the panel registers by default)."""
    from BreastTumorSegLib.training.phantom import make_phantom

    return make_phantom(3, spacing=4.0, motion_mm=1.5, n_tumors=1, tumor_radius_mm=9.0)


@pytest.fixture(scope="module")
def done(moving_phantom):
    """A panel with a finished ftv run on the moving phantom, plus three slice views (Red, Yellow, Green)."""
    phantom = moving_phantom
    p = Panel()
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        view = p.ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode")
        view.SetName(name)
        view.SetLayoutName(name)
        view.SetOrientation(orientation)
    p.nodes = p.add_exam(phantom.exam.phases)
    p.choose_model("ftv")
    p.controller.registered_phases = True  # the motion-corrected phases as a Sequence too
    ui = p.ui
    p.before = {"order": [n.GetName() for n in p.param.phaseVolumes], "rows": ui.phaseTable.rowCount(),
                "model": p.param.model, "apply": (ui.applyButton.isEnabled(), ui.applyButton.text())}
    ui.applyButton.click()
    p.during = {"apply": ui.applyButton.text(), "progress_shown": not ui.progressBar.isHidden()}
    assert qh.process_until(lambda: not p.controller.running, 300), "the engine did not finish"
    yield p
    p.close()


def test_apply_runs_the_engine_with_progress_and_fills_the_result_nodes(done, moving_phantom):
    assert done.before == {"order": [n.GetName() for n in done.nodes], "rows": moving_phantom.exam.n_phases,
                           "model": "ftv", "apply": (True, "Apply")}
    assert done.during == {"apply": "Cancel", "progress_shown": True}
    assert done.host.errors == []
    assert done.ui.applyButton.text() == "Apply" and done.ui.progressBar.isHidden()
    assert done.progress and done.progress[-1] == 100 and done.progress == sorted(done.progress)

    seg = done.param.outputSegmentation
    assert seg is not None and seg.GetSegmentation().GetSegment("Tumor") is not None
    label = mb.segment_to_label(done.ctx, seg, "Tumor", done.nodes[0])
    from BreastTumorSegLib.evaluation.metrics import dice
    assert dice(label, moving_phantom.tumor_mask) > 0.6  # ftv after motion correction; 0.93 without motion
    assert done.param.outputLesionTable.GetNumberOfRows() >= 1
    assert done.ui.lesionTableView.model().rowCount() == done.param.outputLesionTable.GetNumberOfRows()
    assert done.param.outputProbability is not None
    assert "lesion(s)" in done.ui.statusLabel.text()
    # The volumes carry no acquisition times: the engine assumed them, and the panel says so.
    assert "Warning: Phase times were not recorded" in done.ui.statusLabel.text()




def test_panel_shows_per_breast_probabilities_and_toggles_the_heatmap(done):
    """The panel's run asks the engine for --classify: the L/R probabilities under the lesion table
    and the heatmap as a colour layer of the slice views, shown and hidden by the check box."""
    nodes = done.logic.classification
    assert nodes is not None and set(nodes.summary["probabilities"]) <= {"L", "R"} and nodes.summary["probabilities"]
    panel = done.controller.classification_panel
    assert panel.label.text() == nodes.probability_text() and "not for clinical use" in panel.label.text()
    assert panel.toggle.isEnabled()
    for name in ("Red", "Yellow", "Green"):
        done.ctx.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName(name)
    comps = done.ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    panel.toggle.setChecked(True)
    assert all(comps.GetItemAsObject(i).GetForegroundVolumeID() == nodes.heatmap.GetID()
               for i in range(comps.GetNumberOfItems()))
    panel.toggle.setChecked(False)
    assert all(comps.GetItemAsObject(i).GetForegroundOpacity() == 0 for i in range(comps.GetNumberOfItems()))
    assert done.host.errors == []


def _segment_voxels(p) -> int:
    label = mb.segment_to_label(p.ctx, p.param.outputSegmentation, "Tumor", p.nodes[0])
    return int(sitk.GetArrayViewFromImage(label).sum())


def test_registered_subtraction_and_breast_mask_come_from_the_engine(done, moving_phantom):
    """The subtraction shown is the engine's motion-corrected one (the frame the outline lives in),
    not first post - pre of the raw phases: outside the tumor it cancels far better."""
    ph = moving_phantom
    shown = sitk.GetArrayFromImage(mb.volume_node_to_image(done.param.outputSubtraction))
    raw = sitk.GetArrayFromImage(ph.exam.phases[1]) - sitk.GetArrayFromImage(ph.exam.phases[0])
    # The engine's motion correction (seeded, deterministic) run here on the same exam.
    from BreastTumorSegLib.preprocess.registration import register_exam
    from BreastTumorSegLib.core.exam import assemble_exam
    first_two = assemble_exam(ph.exam.phases[:2], None, "two", ["pre", "post"])  # phase 1 only: half the time
    registered, _ = register_exam(first_two)
    expected = sitk.GetArrayFromImage(registered.phases[1]) - sitk.GetArrayFromImage(registered.phases[0])
    err_shown, err_raw = np.abs(shown - expected).mean(), np.abs(raw - expected).mean()
    assert err_raw > 5.0  # the motion matters
    assert err_shown < 0.05 * err_raw, (err_shown, err_raw)
    assert done.param.outputBreastMask is not None
    assert done.host.backgrounds[-1] is done.param.outputSubtraction  # shown beside the result
    # The registered phases as a Sequence (index: minutes), consistent with the subtraction.
    seq = done.param.outputRegisteredPhases
    assert seq is not None and seq.GetNumberOfDataNodes() == ph.exam.n_phases and seq.GetIndexUnit() == "min"
    frames = [sitk.GetArrayFromImage(mb.volume_node_to_image(seq.GetNthDataNode(i))) for i in range(2)]
    np.testing.assert_allclose(frames[1] - frames[0], shown, atol=1e-3)
    np.testing.assert_array_equal(frames[0], sitk.GetArrayFromImage(ph.exam.phases[0]))  # the reference


def test_threshold_change_rethresholds_the_stored_probability_without_the_model(done):
    prob = sitk.GetArrayFromImage(mb.volume_node_to_image(done.param.outputProbability))
    before = _segment_voxels(done)
    done.ui.useModelThresholdCheckBox.setChecked(False)
    assert done.ui.thresholdSliderWidget.isEnabled()
    # A threshold between the probabilities inside the result: fewer voxels, at once, no process.
    inside = prob[sitk.GetArrayFromImage(mb.segment_to_label(done.ctx, done.param.outputSegmentation, "Tumor",
                                                               done.nodes[0])) > 0]
    level = float(np.quantile(inside, 0.5))
    done.ui.thresholdSliderWidget.setValue(level)
    assert qh.process_until(lambda: "thresholded again" in done.ui.statusLabel.text(), 10)
    assert not done.controller.running
    after = _segment_voxels(done)
    assert 0 < after < before
    assert after <= int((prob >= done.ui.thresholdSliderWidget.value() - 1e-6).sum())
    assert done.param.outputLesionTable.GetNumberOfRows() == done.ui.lesionTableView.model().rowCount() >= 1
    # Back to the model's threshold: the engine's own result again.
    done.ui.useModelThresholdCheckBox.setChecked(True)
    assert qh.process_until(lambda: _segment_voxels(done) == before, 10)


def test_lesion_row_click_centres_the_slice_views_on_the_lesion(done):
    table = done.param.outputLesionTable.GetTable()
    ras = [table.GetColumnByName(f"Centroid {a} (mm)").GetValue(0) for a in "RAS"]
    view = done.ui.lesionTableView
    view.clicked.emit(view.model().index(0, 0))
    slices = done.ctx.scene.GetNodesByClass("vtkMRMLSliceNode")
    assert slices.GetNumberOfItems() == 3
    for i in range(3):
        m = slices.GetItemAsObject(i).GetSliceToRAS()
        centre = [m.GetElement(r, 3) for r in range(3)]
        np.testing.assert_allclose(centre, ras, atol=1e-3)
    # The lesion's signal-time curve as a plot chart over a table, and the SER bands in the label layer.
    assert done.host.errors == []
    chart = done.host.charts[-1]
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() == 2
    curve = chart.GetNthPlotSeriesNode(0).GetTableNode().GetTable()
    assert curve.GetNumberOfRows() == done.nodes.__len__()
    pe = [curve.GetValue(r, 1).ToDouble() for r in range(curve.GetNumberOfRows())]
    tissue = [curve.GetValue(r, 2).ToDouble() for r in range(curve.GetNumberOfRows())]
    assert pe[0] == pytest.approx(0.0, abs=1e-6) and max(pe[1:]) > 70.0 > max(tissue[1:])  # FTV's PE >= 70 %
    composite = done.ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    ser = done.controller.lesions.ser
    bands = sitk.GetArrayFromImage(mb.volume_node_to_image(ser))
    tumor = sitk.GetArrayFromImage(mb.segment_to_label(done.ctx, done.param.outputSegmentation, "Tumor", done.nodes[0]))
    assert set(np.unique(bands[tumor > 0])) <= {1, 2, 3} and (bands[tumor == 0] == 0).all()
    assert ser.GetDisplayNode().GetColorNode().GetNumberOfColors() == 4
    for i in range(composite.GetNumberOfItems()):
        assert composite.GetItemAsObject(i).GetLabelVolumeID() == ser.GetID()


def test_lesion_table_follows_edits_of_the_segment(done):
    seg = done.param.outputSegmentation
    label = mb.segment_to_label(done.ctx, seg, "Tumor", done.nodes[0])
    arr = sitk.GetArrayFromImage(label)
    # The reader adds a second, separate lesion (a 3x3x3 block far from the first).
    z, y, x = (np.array(arr.shape) * [0.2, 0.2, 0.2]).astype(int)
    assert arr[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2].sum() == 0
    arr[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = 1
    edited = sitk.GetImageFromArray(arr)
    edited.CopyInformation(label)
    rows = done.param.outputLesionTable.GetNumberOfRows()
    mb.label_to_segmentation(done.ctx, edited, seg, reference_node=done.nodes[0])
    assert qh.process_until(lambda: done.param.outputLesionTable.GetNumberOfRows() == rows + 1, 10)
    volumes = [done.param.outputLesionTable.GetTable().GetColumnByName("Volume (mL)").GetValue(r)
               for r in range(rows + 1)]
    block_ml = 27 * np.prod(phantom_spacing(done)) / 1000
    assert any(v == pytest.approx(block_ml, rel=1e-3) for v in volumes), volumes
    assert "measured again" in done.ui.statusLabel.text()


def test_grow_from_point_adds_the_missed_lesion(done, moving_phantom):
    """The reader empties the result, places a point on the tumor and grows it back (no model run)."""
    seg = done.param.outputSegmentation
    empty = sitk.Image(mb.segment_to_label(done.ctx, seg, "Tumor", done.nodes[0]))
    empty = sitk.Multiply(empty, 0)
    mb.label_to_segmentation(done.ctx, empty, seg, reference_node=done.nodes[0])
    assert qh.process_until(lambda: done.param.outputLesionTable.GetNumberOfRows() == 0, 10)
    assert not done.ui.growFromPointButton.isEnabled()  # no point list chosen yet
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(moving_phantom.tumor_mask)
    x, y, z = stats.GetCentroid(1)
    points = done.ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "missed lesion")
    points.AddControlPoint(-x, -y, z)  # RAS
    done.ui.seedPointSelector.setCurrentNode(points)
    assert done.ui.growFromPointButton.isEnabled()
    done.ui.growFromPointButton.click()
    assert done.host.errors == []
    label = mb.segment_to_label(done.ctx, seg, "Tumor", done.nodes[0])
    from BreastTumorSegLib.evaluation.metrics import dice
    assert dice(label, moving_phantom.tumor_mask) > 0.6
    assert done.param.outputLesionTable.GetNumberOfRows() == 1
    assert "grown from the point" in done.ui.statusLabel.text()


def phantom_spacing(p):
    return p.nodes[0].GetSpacing()


# ------------------------------------------------------------------------------ cancel, scene close, bad input
def test_cancel_stops_the_engine_and_puts_nothing_into_the_scene(panel, phantom):
    panel.add_exam(phantom.exam.phases)
    panel.choose_model("ftv")
    panel.ui.applyButton.click()
    run = panel.controller._run
    assert run is not None and panel.ui.applyButton.text() == "Cancel"
    panel.ui.applyButton.click()  # Cancel
    assert qh.process_until(lambda: not panel.controller.running, 30)
    assert run.process.cancelled and run.process.poll().running is False
    assert not run.workdir.exists()
    assert panel.param.outputSegmentation is None and panel.host.errors == []
    assert panel.ui.applyButton.text() == "Apply" and panel.ui.progressBar.isHidden()
    assert "Cancelled" in panel.ui.statusLabel.text()


def test_scene_closed_mid_run_stops_the_process_removes_the_temp_folder_and_resets_apply(panel, phantom):
    panel.add_exam(phantom.exam.phases)
    panel.choose_model("ftv")
    panel.controller.observe_scene(panel.ctx.scene)
    panel.ui.applyButton.click()
    run = panel.controller._run
    assert run is not None and run.workdir.exists()
    pid = run.process.pid
    panel.ctx.scene.Clear(0)  # File > Close scene: StartCloseEvent, then the nodes go
    assert not panel.controller.running
    assert run.process.poll().running is False
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not run.workdir.exists()
    assert panel.controller.param is None
    assert panel.ui.applyButton.text() == "Apply" and panel.ui.progressBar.isHidden()
    qh.process_until(lambda: False, 0.5)  # a late timer tick must not fail on the closed scene
    assert panel.host.errors == []


def test_bad_input_shows_the_engines_one_line_message(panel):
    img = sitk.Image((16, 16, 8), sitk.sitkFloat32)
    img.SetSpacing((2.0, 2.0, 3.0))
    arr = np.random.default_rng(0).random((8, 16, 16)).astype(np.float32) * 100
    pre = sitk.GetImageFromArray(arr)
    pre.CopyInformation(img)
    flat = sitk.Image(pre) * 0 + 5.0  # a post-contrast phase whose voxels are all equal
    panel.add_exam([pre, flat], prefix="bad")
    panel.choose_model("ftv")
    panel.ui.applyButton.click()
    qh.process_until(lambda: not panel.controller.running, 120)
    assert len(panel.host.errors) == 1
    message = panel.host.errors[0]
    # The engine's line, naming the volume the user selected (not the temporary export).
    assert "volume 'bad_0001'" in message and "every voxel is 5" in message and "/tmp" not in message
    assert "Traceback" not in message and len(message.splitlines()) <= 3
    assert panel.param.outputSegmentation is None
    assert panel.ui.applyButton.text() == "Apply"


# ------------------------------------------------------------------------------ cheap parameter changes
def test_parameter_changes_reuse_cached_cards_and_phase_guesses(panel, phantom, monkeypatch):
    import BreastTumorSegLib.slicer.gui.widget as widget

    calls = {"phases": 0, "cards": 0}
    real_phases, real_card = panel.logic.phases, widget.model_card

    def counting_phases(*a, **k):
        calls["phases"] += 1
        return real_phases(*a, **k)

    def counting_card(name):
        calls["cards"] += 1
        return real_card(name)

    monkeypatch.setattr(panel.logic, "phases", counting_phases)
    monkeypatch.setattr(widget, "model_card", counting_card)
    nodes = panel.add_exam(phantom.exam.phases[:2])
    panel.choose_model("ftv")
    panel.ui.useModelThresholdCheckBox.setChecked(False)
    before = dict(calls)
    for value in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55):  # slider steps
        panel.ui.thresholdSliderWidget.setValue(value)
    panel.ui.deviceComboBox.setCurrentText("cpu")
    assert panel.param.threshold == pytest.approx(0.55) and panel.param.device == "cpu"
    assert calls == before  # no card re-read, no phase re-guess (no DICOM database query)
    # Explicit events refresh: another volume checked, the model list refreshed.
    extra = mb.image_to_volume_node(panel.ctx, phantom.exam.phases[2], "exam_0002")
    panel.ui.phaseVolumesSelector.setCheckState(extra, qh.Qt.Checked)
    assert calls["phases"] > before["phases"] and panel.ui.phaseTable.rowCount() == 3
    panel.controller.refresh_models()
    panel.controller._on_parameters_modified()
    assert calls["cards"] == before["cards"] + 1
    assert [n.GetName() for n in panel.param.phaseVolumes] == [n.GetName() for n in nodes] + ["exam_0002"]


# ------------------------------------------------------------------------------ inputs as Slicer users have them
def test_volumes_loaded_from_files_are_handed_to_the_engine_by_path(phantom, tmp_path):
    from BreastTumorSegLib.slicer.logic import guess_phases, source_files

    ctx = mb.MRMLContext.headless()
    paths = []
    for i, img in enumerate(phantom.exam.phases):
        paths.append(tmp_path / f"case_{i:04d}.nii.gz")
        sitk.WriteImage(img, str(paths[-1]))
    nodes = [ctx.volumes_logic.AddArchetypeVolume(str(p), p.name.split(".")[0]) for p in paths]
    phases = guess_phases(nodes)
    assert source_files(phases) == [p.resolve() for p in paths]
    logic = SegmentationLogic(ctx)
    run = logic.start_background(phases, model="ftv", device="cpu", register=False)
    assert all(str(p.resolve()) in run.process.command for p in paths)
    assert not (run.workdir / "exam").exists()  # nothing re-written
    state = run.process.wait(timeout=300)
    assert state.succeeded, "\n".join(run.process.lines[-5:])
    outputs = logic.finish_background(run)
    from BreastTumorSegLib.evaluation.metrics import dice
    label = mb.segment_to_label(ctx, outputs.segmentation, "Tumor", nodes[0])
    assert dice(label, phantom.tumor_mask) > 0.8
    assert run.case_id == "case" and not run.workdir.exists()

    # A volume changed in Slicer after loading is exported (its file no longer holds what is shown).
    changed = sitk.Add(mb.volume_node_to_image(nodes[1]), 1.0)
    mb.image_to_volume_node(ctx, changed, "", nodes[1])
    assert nodes[1].GetModifiedSinceRead() and source_files(phases) is None


def test_qtbind_connects_pythonqt_by_signature_and_pyside6_by_name():
    """The one adapter between the bindings: PythonQt objects get the exact C++ overload (Qt 5 also
    has currentIndexChanged(QString)); PySide6 widgets their signal by name."""
    from BreastTumorSegLib.slicer.gui.qtbind import connect, prop

    class PythonQtStyle:  # how a PythonQt wrapper takes connections and exposes properties
        count = 3

        def __init__(self):
            self.connections = []

        def connect(self, signature, slot):
            self.connections.append(signature)

    obj = PythonQtStyle()
    connect(obj, "currentIndexChanged(int)", print)
    assert obj.connections == ["currentIndexChanged(int)"] and prop(obj, "count") == 3
    qh.application()
    combo = qh.QtWidgets.QComboBox()
    got = []
    connect(combo, "currentIndexChanged(int)", got.append)
    combo.addItems(["a", "b"])
    combo.setCurrentIndex(1)
    assert got[-1] == 1 and prop(combo, "count") == 2


def test_multivolume_frames_become_phases_with_their_times(panel, phantom):
    """A MultiVolume node as MultiVolumeExplorer stores a DCE series: one scalar component per frame
    and the frame labels (times) as attributes. slicer-core has no vtkMRMLMultiVolumeNode class, so
    the node here is its base class, a scalar volume node with those components and attributes."""
    import vtk
    from vtk.util import numpy_support

    from BreastTumorSegLib.slicer.logic import exam_from_phases, is_multivolume

    first = mb.image_to_volume_node(panel.ctx, phantom.exam.phases[0], "geometry")
    frames = np.stack([sitk.GetArrayFromImage(p) for p in phantom.exam.phases], axis=-1).astype(np.float32)
    image = vtk.vtkImageData()
    image.SetDimensions(*phantom.exam.pre.GetSize())
    data = numpy_support.numpy_to_vtk(frames.reshape(-1, frames.shape[-1]), deep=True)
    image.GetPointData().SetScalars(data)
    node = panel.ctx.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "DCE multivolume")
    matrix = vtk.vtkMatrix4x4()
    first.GetIJKToRASMatrix(matrix)
    node.SetIJKToRASMatrix(matrix)
    node.SetAndObserveImageData(image)
    times_ms = [0.0, 90000.0, 180000.0][: len(phantom.exam.phases)]
    node.SetAttribute("MultiVolume.FrameLabels", ",".join(f"{t:g}" for t in times_ms))
    node.SetAttribute("MultiVolume.FrameIdentifyingDICOMTagUnits", "ms")
    assert is_multivolume(node)

    panel.param.inputType = "Sequence"
    panel.param.inputSequence = node
    assert panel.ui.phaseTable.rowCount() == len(times_ms)
    assert [panel.ui.phaseTable.item(r, 2).text() for r in range(len(times_ms))] == ["0.00", "1.50", "3.00"]
    exam = exam_from_phases(panel.logic.phases(sequence_node=node), "mv")
    for got, want in zip(exam.phases, phantom.exam.phases):
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(got), sitk.GetArrayViewFromImage(want))
        np.testing.assert_allclose(got.GetOrigin(), want.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(got.GetDirection(), want.GetDirection(), atol=1e-6)
    assert exam.times_min == pytest.approx([0.0, 1.5, 3.0])


def test_rethreshold_on_the_candidate_box_equals_the_engine_postprocessing_on_the_whole_grid(moving_phantom):
    """The panel post-processes only the bounding box of the voxels that can become tumor; the
    result must be the engine's on the whole grid: same label, same lesions."""
    from BreastTumorSegLib.engine.postprocess import PostprocessSettings, midline_x, postprocess
    from BreastTumorSegLib.slicer.logic import OutputNodes

    ctx = mb.MRMLContext.headless()
    logic = SegmentationLogic(ctx)
    exam = moving_phantom.exam
    rng = np.random.default_rng(0)
    smooth = sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(rng.random(
        sitk.GetArrayViewFromImage(exam.pre).shape).astype(np.float32)), 2.0)
    prob = sitk.RescaleIntensity(smooth, 0.0, 1.0)
    prob.CopyInformation(exam.pre)
    shape = sitk.GetArrayViewFromImage(exam.pre).shape
    inside = np.zeros(shape, np.uint8)
    inside[:, :, : int(shape[2] * 0.6)] = 1  # a breast gate over part of the grid: components get gated
    gate = sitk.GetImageFromArray(inside)
    gate.CopyInformation(exam.pre)
    outputs = OutputNodes(
        segmentation=mb.label_to_segmentation(ctx, sitk.Cast(prob > 2.0, sitk.sitkUInt8), None, "seg"),
        probability=mb.image_to_volume_node(ctx, prob, "p tumor probability"),
        breast_mask=mb.image_to_volume_node(ctx, gate, "gate"))
    for mode, threshold in (("absolute", 0.6), ("absolute", 0.75), ("relative", 0.7)):
        settings = PostprocessSettings(threshold=threshold, mode=mode, min_lesion_ml=0.05)
        outputs.segmentation.SetAttribute("BreastTumorSeg.Postprocess", json.dumps(settings.as_dict()))
        logic.rethreshold(outputs, threshold)
        want_label, want = postprocess(prob, settings, gate, layout={"midline_x": midline_x(gate)})
        got = mb.segment_to_label(ctx, outputs.segmentation, "Tumor", outputs.probability)
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(got), sitk.GetArrayViewFromImage(want_label))
        table = outputs.lesion_table.GetTable()
        assert table.GetNumberOfRows() == len(want) > 0
        for r, les in enumerate(want):
            assert table.GetColumnByName("Volume (mL)").GetValue(r) == pytest.approx(les.volume_ml, abs=1e-4)
            assert table.GetColumnByName("Max probability").GetValue(r) == pytest.approx(les.max_probability, abs=1e-4)


# ------------------------------------------------------------------------------ failures
def test_a_failed_action_is_one_message_and_the_panel_stays_usable(panel, phantom, monkeypatch):
    """Every action reports its failure the same way (gui/errors.py): one message titled with what
    failed, the busy cursor restored, nothing half-done kept; the panel works on afterwards."""
    from BreastTumorSegLib.core.errors import BreastTumorSegError, InputError
    from BreastTumorSegLib.slicer.gui.errors import reported

    app = qh.application()
    panel.add_exam(phantom.exam.phases)

    # Compare: the logic refuses the reference; the comparison table stays as it was.
    def refuse(*args, **kwargs):
        raise InputError("the reference segmentation has no segments", "reader 1", "pick another one")
    monkeypatch.setattr(panel.logic, "compare", refuse)
    panel.controller.onCompare()
    assert panel.host.errors == ["The comparison failed.\n\n"
                                 "reader 1: the reference segmentation has no segments. Fix: pick another one."]
    assert panel.param.comparisonTable is None and app.overrideCursor() is None
    # Click mode without a result to refine: the button goes back off, no click logic is kept.
    panel.ui.clickModeButton.setChecked(True)
    assert len(panel.host.errors) == 2 and panel.host.errors[1].startswith("Could not start the click mode.\n\n")
    assert not panel.ui.clickModeButton.isChecked() and panel.controller.lesions.click_logic is None
    assert app.overrideCursor() is None
    # The panel still works: the exam's phases are there and Apply is offered.
    assert panel.ui.phaseTable.rowCount() == len(phantom.exam.phases) and panel.ui.applyButton.isEnabled()
    # Only the expected kind is caught (the reader panel catches BreastTumorSegError only).
    with pytest.raises(KeyError):
        with reported(panel.host, "never shown", catch=BreastTumorSegError):
            raise KeyError("a bug")
    assert len(panel.host.errors) == 2

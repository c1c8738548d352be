"""Reader mode in Slicer: ReaderLogic over real slicer-core MRML, ReaderPanelController with real
PySide6 widgets (Testing/qt_harness.py), on a small study of phantom exams."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core not installed")
pytest.importorskip("PySide6", reason="PySide6 not installed")

from qt_harness import application, process_until, qt_namespace  # noqa: E402

from BreastTumorSegLib.slicer import mrml_bridge as mb  # noqa: E402
from BreastTumorSegLib.slicer.gui.reader_panel import ReaderPanelController  # noqa: E402
from BreastTumorSegLib.slicer.reader_logic import ReaderLogic  # noqa: E402
from BreastTumorSegLib.study.coordinator import init_study  # noqa: E402
from BreastTumorSegLib.study.definition import load_study  # noqa: E402
from BreastTumorSegLib.study.session import ReaderSession  # noqa: E402
from study_fixtures import write_study_cases  # noqa: E402

SEEDS = (2, 3, 4)


@pytest.fixture(scope="module")
def exams(tmp_path_factory):
    return write_study_cases(tmp_path_factory.mktemp("reader_exams"), SEEDS)


def scene_with_views():
    ctx = mb.MRMLContext.headless()
    for view in ("Red", "Yellow", "Green"):
        comp = ctx.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        comp.SetLayoutName(view)
        node = ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode")
        node.SetLayoutName(view)
    return ctx


def arr(img):
    return sitk.GetArrayFromImage(img)


def test_reader_logic_loads_the_hanging_protocol_and_round_trips_the_mask(exams, tmp_path):
    study = tmp_path / "S"
    init_study(exams / "cases.csv", ["a"], ["assisted"], study, seed=1, model="ftv", model_outputs=exams / "model",
               breast_region=False)
    ctx = scene_with_views()
    logic = ReaderLogic(ctx)  # with motion correction, as in Slicer
    s = ReaderSession.open_study(study, "a")
    view = s.open()
    nodes = logic.load(view)
    assert logic.view_assignment() == {"Red": f"{view.label} subtraction", "Yellow": f"{view.label} first post-contrast",
                                       "Green": f"{view.label} pre-contrast"}
    case_id = next(c.id for c in load_study(study).cases if c.label == view.label)
    names = [ctx.scene.GetNthNode(i).GetName() or "" for i in range(ctx.scene.GetNumberOfNodes())]
    assert not any(case_id in n for n in names)  # pseudonym only
    exam = view.load_exam()
    sub = mb.volume_node_to_image(nodes.volumes["subtraction"])
    pre = mb.volume_node_to_image(nodes.volumes["pre-contrast"])
    assert np.allclose(arr(pre), arr(exam.pre))
    # the subtraction is first post minus pre after registration: close to the raw one without motion
    raw = arr(exam.first_post) - arr(exam.pre)
    assert np.corrcoef(arr(sub).ravel(), raw.ravel())[0, 1] > 0.95
    # the assisted reading starts from the model's mask, voxel for voxel, on the exam grid
    model = arr(sitk.ReadImage(str(exams / "model" / f"{case_id}_seg.nii.gz")))
    got = logic.current_mask()
    assert np.array_equal(arr(got), model) and view.grid.matches(got)
    # an edit in the segment comes back as the mask the session saves
    edited = model.copy()
    edited[tuple(n // 2 for n in edited.shape)] = 1
    img = sitk.GetImageFromArray(edited); img.CopyInformation(exam.pre)
    mb.label_to_segmentation(ctx, img, nodes.segmentation, reference_node=nodes.source)
    saved = s.save(logic.current_mask())
    assert np.array_equal(arr(sitk.ReadImage(str(saved))), edited)
    s.end()
    logic.clear()
    assert ctx.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0
    assert ctx.scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0


class Host:
    def __init__(self):
        self.errors, self.editor, self.answers = [], [], []

    def show_error(self, what, exc):
        self.errors.append(f"{what} {exc}")

    def confirm(self, text):
        self.answers.append(text)
        return True

    def open_segment_editor(self, segmentation, source, segment_id, effects):
        self.editor.append((segmentation.GetName(), source.GetName(), segment_id, effects))


def reader_panel(study_folder, readers, host=None, ctx=None):
    """A reader panel over the study's sessions, on *ctx* (default: a fresh scene with views) and
    reporting to *host* (default: a new one): (panel, host, ctx, parent). Keep *parent*: the
    panel's widgets die with it."""
    qt = qt_namespace()
    application()
    ctx = ctx or scene_with_views()
    host = host or Host()
    parent = qt.QWidget()
    panel = ReaderPanelController(qt, parent, host, ReaderLogic(ctx, register=False),
                                  lambda r: ReaderSession.open_study(study_folder, r), list(readers))
    return panel, host, ctx, parent


def test_reader_panel_walks_a_reader_through_three_cases(exams, tmp_path):
    """Start -> "case 1 of 3" -> paint -> autosave in the background -> submit -> next ... -> done."""
    study = tmp_path / "S"
    init_study(exams / "cases.csv", ["alice", "bob"], ["unaided"], study, seed=2, autosave_s=0.5,
               breast_region=False)
    panel, host, ctx, parent = reader_panel(study, ["alice", "bob"])
    panel.readerComboBox.setCurrentIndex(1)
    assert not panel.submitButton.isEnabled()
    panel.start()
    assert host.errors == [] and panel.caseLabel.text() == "case 1 of 3"
    assert host.editor[-1][1].endswith("subtraction") and "Paint" in host.editor[-1][3]
    drawn = {}
    for k in range(3):
        view = panel.session.current
        nodes = panel.logic.nodes
        like = mb.volume_node_to_image(nodes.source)
        mask = np.zeros(arr(like).shape, np.uint8)
        mask.reshape(-1)[100 * (k + 1):100 * (k + 1) + 50 + k] = 1
        img = sitk.GetImageFromArray(mask); img.CopyInformation(like)
        mb.label_to_segmentation(ctx, img, nodes.segmentation, reference_node=nodes.source)  # an edit
        assert panel.session.current is view and panel.session._dirty  # the edit was seen
        if k == 0:  # the timer autosaves in the background
            assert process_until(lambda: any(view.folder.glob("v*.nii.gz")) and not panel.session._dirty,
                                 timeout_s=15)
            assert np.array_equal(arr(sitk.ReadImage(str(next(view.folder.glob("v*.nii.gz"))))), mask)
            assert panel.statusLabel.text() == "autosaved (version 1)"
            panel.pauseButton.setChecked(True)
            assert "(paused)" in panel.timerLabel.text()
            panel.user_activity()  # back at work
            assert not panel.pauseButton.isChecked()
            panel.application_state_changed(False)  # Slicer went to the background: the timer stops
            assert panel.session.paused and "(paused)" in panel.timerLabel.text()
            panel.user_activity()
            assert not panel.session.paused
        drawn[view.label] = mask
        panel.submit()
        assert host.errors == []
        if k < 2:
            assert panel.caseLabel.text() == f"case {k + 2} of 3"
    assert panel.caseLabel.text() == "no case open" and "done" in panel.statusLabel.text()
    panel.close()
    s = ReaderSession.open_study(study, "bob")  # the lock was released
    assert s.done() == 3
    for label, mask in drawn.items():
        got = arr(sitk.ReadImage(str(study / "readers" / "bob" / label / "unaided" / "submitted.nii.gz")))
        assert np.array_equal(got, mask)
    v = s.open(0)
    assert v.locked
    s.end()
    # a second panel for a reader whose session is open elsewhere gets one clear error
    other = ReaderSession.open_study(study, "alice")
    panel2, _, _, parent2 = reader_panel(study, ["alice"], host, ctx)
    panel2.start()
    assert panel2.session is None and "in use" in host.errors[-1]
    other.end()


class RecordingEditor:
    """The embedded Segment Editor widget (an application widget, not in slicer-core): its node slot."""

    def __init__(self):
        self.node = None

    def setMRMLSegmentEditorNode(self, node):
        self.node = node

    def mrmlSegmentEditorNode(self):
        return self.node


def test_reader_module_lifecycle_over_three_studies_and_scene_closes(exams, tmp_path):
    """Open a study, read, close the scene - three times: one set of view observers, one
    application-state connection, the editor node back after every clear, the lock released on
    close (the next open would be refused otherwise); cleanup leaves nothing connected."""
    import vtk
    from PySide6 import QtCore

    from BreastTumorSegLib.slicer.gui.reader_module import VIEW_EVENTS, ReaderModuleLifecycle

    study = tmp_path / "S"
    init_study(exams / "cases.csv", ["alice"], ["unaided"], study, seed=3, breast_region=False)
    qt = qt_namespace()
    app = application()
    state_signal = QtCore.SIGNAL("applicationStateChanged(Qt::ApplicationState)")
    receivers_before = app.receivers(state_signal)
    ctx = scene_with_views()
    editor = RecordingEditor()
    interactors = [vtk.vtkGenericRenderWindowInteractor() for _ in range(3)]
    for interactor in interactors:
        interactor.SetInteractorStyle(None)  # no style: every observer of these events is the module's
    assert not any(i.HasObserver(e) for i in interactors for e in VIEW_EVENTS)
    life = ReaderModuleLifecycle(qt, app, ctx.scene, editor, lambda: interactors)
    assert ctx.scene.IsNodePresent(editor.node) and app.receivers(state_signal) == receivers_before + 1

    class Counting(ReaderPanelController):
        activity = background = 0

        def user_activity(self):
            Counting.activity += 1
            super().user_activity()

        def application_state_changed(self, active):
            Counting.background += not active
            super().application_state_changed(active)

    frames = []  # the panels' parent widgets, kept alive
    for round_ in range(3):
        frames.append(qt.QWidget())
        for view in ("Red", "Yellow", "Green"):  # the views come back with the layout after a clear
            if not [c for c in _nodes(ctx.scene, "vtkMRMLSliceCompositeNode") if c.GetLayoutName() == view]:
                ctx.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName(view)
                ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode").SetLayoutName(view)
        panel = Counting(qt, frames[-1], Host(), ReaderLogic(ctx, register=False),
                         lambda r: ReaderSession.open_study(study, r), ["alice"])
        life.set_panel(panel)
        panel.start()
        assert panel.session is not None and panel.caseLabel.text() == "case 1 of 3"
        assert life.view_observer_count == len(interactors) * len(VIEW_EVENTS)
        Counting.activity = Counting.background = 0
        interactors[round_].InvokeEvent("MouseMoveEvent")
        app.applicationStateChanged.emit(qt.Qt.ApplicationInactive)
        assert (Counting.activity, Counting.background) == (1, 1)  # one observer, one connection
        assert app.receivers(state_signal) == receivers_before + 1
        ctx.scene.Clear(0)  # File > Close Scene
        assert panel.session is None and panel.logic.nodes is None  # saved, lock released, nodes gone
        assert ctx.scene.IsNodePresent(editor.node)  # the editor node made again
        assert len(_nodes(ctx.scene, "vtkMRMLSegmentEditorNode")) == 1

    life.cleanup()
    assert app.receivers(state_signal) == receivers_before
    assert not any(i.HasObserver(e) for i in interactors for e in VIEW_EVENTS)
    ctx.scene.Clear(0)
    assert len(_nodes(ctx.scene, "vtkMRMLSegmentEditorNode")) == 0  # no scene observer left


def _nodes(scene, cls):
    col = scene.GetNodesByClass(cls)
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())]


def test_reader_panel_asks_for_per_breast_scores_and_shows_the_model_only_when_assisted(exams, tmp_path):
    """A study with --scores probability,birads: the score boxes appear, a side is stored once both
    kinds are given, Submit without scores stays on the case, the model's score shows in the
    assisted arm only, and a submitted reading shows its scores read-only."""
    study = init_study(exams / "cases.csv", ["carol"], ["unaided", "assisted"], tmp_path / "S", seed=5,
                       breast_region=False, model="ftv", model_outputs=exams / "model",
                       scores=["probability", "birads"])
    panel, host, ctx, parent = reader_panel(study.folder, ["carol"])
    panel.start()
    sp = panel.scores
    assert host.errors == [] and not sp.box.isHidden()
    seen = set()
    for k in range(6):
        view = panel.session.current
        seen.add(view.arm)
        model = study.case_by_label(view.label).model["scores"]
        for side in ("left", "right"):
            text = sp.model_labels[side].text()
            assert text == (f"model: {100 * model[side]:.0f} %" if view.arm == "assisted" else "")
        panel.submit()  # no scores yet: refused, the case stays open
        assert "scores of both breasts" in host.errors[-1] and panel.session.current is view
        sp.probability["left"].setValue(10 + k)
        assert "left" not in panel.session.scores  # BI-RADS of the left breast still missing
        sp.birads["left"].setCurrentIndex(sp.birads["left"].findText("2"))
        sp.probability["right"].setValue(80)
        sp.birads["right"].setCurrentIndex(sp.birads["right"].findText("4B"))
        assert panel.session.scores == {"left": {"probability": 10.0 + k, "birads": "2"},
                                        "right": {"probability": 80.0, "birads": "4B"}}
        n_errors = len(host.errors)
        panel.submit()
        assert len(host.errors) == n_errors
    assert seen == {"unaided", "assisted"} and panel.session.current is None
    s = panel.session
    view = s.open(0)  # a submitted reading: scores shown read-only
    panel._show(view)
    assert sp.probability["left"].value() in range(10, 16) and not sp.probability["left"].isEnabled()
    panel.close()

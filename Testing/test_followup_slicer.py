""""Compare with earlier visit" on a real MRML scene (slicer-core): a tumor shrunk to 15 % between
two phantom visits comes back as a PR row, both visits' lesions on the baseline grid, the visit's
transform node sending the tumor to where the truth puts it, baseline and visit in linked views."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core not installed")

from BreastTumorSegLib.slicer import mrml_bridge as mb  # noqa: E402
from BreastTumorSegLib.slicer.followup_view import FollowupViewLogic, ras_matrix  # noqa: E402
from BreastTumorSegLib.slicer.gui.followup_section import FollowupSection  # noqa: E402
from BreastTumorSegLib.slicer.logic import Phase, SegmentationLogic  # noqa: E402
from BreastTumorSegLib.training.phantom.series import make_visit_series  # noqa: E402


def scene_with_views():
    ctx = mb.MRMLContext.headless()
    for view in ("Red", "Yellow", "Green"):
        ctx.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName(view)
        ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode").SetLayoutName(view)
    return ctx


def table_rows(node) -> list[list[str]]:
    t = node.GetTable()
    return [[t.GetValue(r, c).ToString() for c in range(t.GetNumberOfColumns())] for r in range(t.GetNumberOfRows())]


def test_compare_with_earlier_visit_puts_the_change_into_the_scene():
    # concentric=False: the generator before Dec 6, as test_followup's CLI test (with the default the
    # remnant's segmented diameter on this coarse grid is 0.2 mm above the PR threshold: SD)
    series = make_visit_series("ellipse", 5000, n_visits=2, fates=["shrink"], fraction=0.15, concentric=False,
                               size=(128, 96, 40), spacing=(2.4, 2.4, 4.0))
    ctx = scene_with_views()
    visits = []
    for k, v in enumerate(series.visits):
        visits.append([Phase(mb.image_to_volume_node(ctx, img, f"v{k + 1}_{i:04d}"), t, "test")
                       for i, (img, t) in enumerate(zip(v.exam.phases, v.exam.times_min))])
    logic = FollowupViewLogic(ctx)
    nodes, res = logic.compare(visits, dates=series.dates, model="ftv", register=False)
    exams = table_rows(nodes.exam_table)
    assert [row[8] for row in exams] == ["baseline", "PR"]
    lesions = table_rows(nodes.lesion_table)
    assert [(row[0], row[1], row[2]) for row in lesions] == [("1", "1", "baseline"), ("1", "2", "present")]
    # both visits on the baseline grid; the visit's lesion segment is there, smaller than the baseline's
    base = series.visits[0].exam.pre
    voxels = []
    for k in range(2):
        img = mb.volume_node_to_image(nodes.subtractions[k])
        assert img.GetSize() == base.GetSize() and np.allclose(img.GetOrigin(), base.GetOrigin(), atol=1e-3)
        label = mb.segment_to_label(ctx, nodes.lesions[k], "lesion_1", reference=visits[0][0].node)
        voxels.append(int(sitk.GetArrayViewFromImage(label).sum()))
    assert 0 < voxels[1] < 0.4 * voxels[0]
    # the transform node maps the visit's tumor centroid (RAS) onto the baseline's, as the truth does
    m = ras_matrix(sitk.AffineTransform(series.to_baseline[1].GetInverse()))
    got = np.array([[nodes.transforms[0].GetMatrixTransformToParent().GetElement(i, j) for j in range(4)]
                    for i in range(4)])
    c = np.array(list(series.visits[1].tumors[0]["centroid_lps"]) + [1.0]) * [-1, -1, 1, 1]
    assert np.linalg.norm((got @ c)[:3] - (m @ c)[:3]) < 2.0
    # linked side-by-side views: baseline in Red, the visit in Yellow
    logic.show_linked(nodes)
    comps = ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    shown = {comps.GetItemAsObject(i).GetLayoutName(): comps.GetItemAsObject(i) for i in range(comps.GetNumberOfItems())}
    assert shown["Red"].GetBackgroundVolumeID() == nodes.subtractions[0].GetID()
    assert shown["Yellow"].GetBackgroundVolumeID() == nodes.subtractions[1].GetID()
    assert shown["Red"].GetLinkedControl() and shown["Yellow"].GetLinkedControl()
    # the panel's section runs the same comparison (earlier exam checked there, the panel's exam the
    # later visit) and reuses the nodes of the first run
    section = FollowupSection(_Widgets(visits[0]), _Panel(ctx, visits[1]), _Qt, view_logic=logic)
    section.nodes = nodes
    section.w.compareVisitsButton.slot()
    assert section.panel.host.errors == []
    assert section.nodes.exam_table is nodes.exam_table and section.nodes.subtractions[1] is nodes.subtractions[1]
    assert ctx.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 2
    assert section.w.visitExamTableView.node is nodes.exam_table
    assert section.w.visitStatusLabel.text.startswith("RECIST PR")


class _Qt:  # what wait_cursor needs
    class QApplication:
        setOverrideCursor = restoreOverrideCursor = staticmethod(lambda *a: None)

    QCursor = staticmethod(lambda *a: None)

    class Qt:
        WaitCursor = 0


class _Button:
    def connect(self, signature, slot):
        self.slot = slot


class _View:
    node = None

    def setMRMLTableNode(self, node):
        self.node = node


class _Label:
    text = ""

    def setText(self, text):
        self.text = text


class _Widgets:
    def __init__(self, earlier):
        self.earlierVolumesSelector = SimpleNamespace(checkedNodes=lambda: [ph.node for ph in earlier])
        self.visitDatesLineEdit = SimpleNamespace(text="2024-01-08, 2024-02-19")
        self.compareVisitsButton, self.visitStatusLabel = _Button(), _Label()
        self.visitExamTableView, self.visitLesionTableView = _View(), _View()


class _Panel:
    def __init__(self, ctx, current):
        self.logic = SegmentationLogic(ctx)
        self.param = SimpleNamespace(model="ftv", device="cpu", motionCorrection=False)
        self.host = SimpleNamespace(errors=[])
        self.host.show_error = lambda what, exc: self.host.errors.append((what, exc))
        self.current_phases = lambda: list(current)

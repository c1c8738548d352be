"""Slicer side of the follow-up (issue 31): "Compare with earlier visit".

:class:`FollowupViewLogic` takes the phases of two or more exams of one patient (earliest first:
the baseline), runs :func:`~..followup.run.run_followup` in this process and puts into the scene,
all in the **baseline frame**:

* each visit's early subtraction resampled onto the baseline grid (``<visit> subtraction (baseline
  frame)``), and its followed lesions as a segmentation with one segment per track
  (``Lesion N``, the same colour at every visit);
* a transform node per later visit (``<visit> to baseline``): put that visit's own volumes under it
  to see them in the baseline frame without resampling;
* two tables: the change per exam (RECIST) and per lesion.

:meth:`FollowupViewLogic.show_linked` shows the baseline in the Red view and the latest visit in
the Yellow view, both axial, with linked slice controls (scrolling one scrolls the other), each
with its own lesions outlined. Qt-free: the panel (``slicer.gui``) only calls this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import vtk

from . import mrml_bridge as bridge
from ..followup import FOLLOWUP_MODEL
from .phases import Phase, exam_to_run, first_case_id

EXAM_COLUMNS = ("Visit", "Date", "Lesions", "Volume (mL)", "Volume change (%)", "FTV (mL)", "FTV change (%)",
                "Sum of diameters (mm)", "RECIST", "Why")
LESION_COLUMNS = ("Lesion", "Visit", "Status", "Target", "Volume (mL)", "Volume change (%)", "FTV (mL)",
                  "FTV change (%)", "Longest diameter (mm)", "Fragments")
LINKED_VIEWS = ("Red", "Yellow")
TRACK_COLOURS = ((1.0, 0.9, 0.1), (0.1, 0.8, 1.0), (1.0, 0.3, 0.8), (0.4, 1.0, 0.3), (1.0, 0.55, 0.1))


@dataclass
class FollowupNodes:
    subtractions: list = field(default_factory=list)  # per visit, baseline grid
    lesions: list = field(default_factory=list)  # segmentation node per visit, one segment per track
    transforms: list = field(default_factory=list)  # per later visit: vtkMRMLLinearTransformNode visit -> baseline
    exam_table: object = None
    lesion_table: object = None


def _pct(v) -> float:
    return float("nan") if v is None else float(v)


def exam_rows(table: dict) -> list[list]:
    return [[int(e["visit"]), e["date"] or "", int(e["n_lesions"]), float(e["volume_ml"]),
             _pct(e.get("volume_ml_percent_from_baseline")), float(e["ftv_ml"]),
             _pct(e.get("ftv_ml_percent_from_baseline")), float(e["sum_target_diameters_mm"]), e["recist"],
             e["recist_reason"]] for e in table["exams"]]


def lesion_rows(table: dict) -> list[list]:
    return [[int(r["track"]), int(r["visit"]), r["status"], "yes" if r["target"] else "no", float(r["volume_ml"]),
             _pct(r["volume_ml_percent_from_baseline"]), float(r["ftv_ml"]), _pct(r["ftv_ml_percent_from_baseline"]),
             float(r["longest_diameter_mm"]), int(r["n_fragments"])] for r in table["lesions"]]


def ras_matrix(tx: sitk.Transform) -> np.ndarray:
    """The 4x4 RAS matrix of an affine LPS transform (what a vtkMRMLLinearTransformNode holds)."""
    a = sitk.AffineTransform(tx) if tx.GetName() == "AffineTransform" else tx
    m = np.asarray(a.GetMatrix()).reshape(3, 3)
    c = np.asarray(a.GetCenter())
    t = np.asarray(a.GetTranslation())
    h = np.eye(4)
    h[:3, :3] = m
    h[:3, 3] = c + t - m @ c
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ h @ flip


class FollowupViewLogic:
    """Batch-mode logic of "Compare with earlier visit" over one MRML scene (module docstring)."""

    def __init__(self, ctx: bridge.MRMLContext):
        self.ctx = ctx
        self.result = None

    def compare(self, visits: Sequence[Sequence[Phase]], dates: Sequence[str] | None = None, model=FOLLOWUP_MODEL,
                device: str = "auto", nodes: FollowupNodes | None = None, progress=None, cancel=None,
                **engine_options):
        """Follow the lesions of *visits* (each the phases of one exam, the earliest first).

        Returns ``(nodes, result)``; *nodes* from an earlier call are reused."""
        from ..followup.run import run_followup  # the engine's heavy imports only when a run starts

        exams = [exam_to_run(ph, first_case_id(ph)) for ph in visits]
        self.result = run_followup(exams, dates=list(dates) if dates else None, model=model, device=device,
                                   progress=progress, cancel=cancel, **engine_options)
        return self.import_followup(self.result, [ph[0].node for ph in visits], nodes), self.result

    def import_followup(self, res, reference_nodes: Sequence, nodes: FollowupNodes | None = None) -> FollowupNodes:
        """Put a :class:`~..followup.run.FollowupResult` into the scene (module docstring)."""
        out = nodes or FollowupNodes()
        baseline = reference_nodes[0]
        n_tracks = max((t.track_id for t in res.tracks), default=0)
        for k, visit in enumerate(res.visits):
            name = reference_nodes[k].GetName()
            phases = visit.result.registered_phases or list(visit.exam.phases)
            sub = res.visit_in_baseline(k, sitk.Cast(sitk.Subtract(phases[1], phases[0]), sitk.sitkFloat32))
            old = out.subtractions[k] if k < len(out.subtractions) else None
            node = bridge.image_to_volume_node(self.ctx, sub, f"{name} subtraction (baseline frame)", old)
            seg = out.lesions[k] if k < len(out.lesions) else None
            tracks = sitk.GetArrayFromImage(res.tracks_in_baseline(k))
            for t in range(1, n_tracks + 1):  # one segment per track, one colour per track at every visit
                mask = sitk.GetImageFromArray((tracks == t).astype(np.uint8))
                mask.CopyInformation(res.baseline.exam.reference)
                seg = bridge.label_to_segmentation(self.ctx, mask, seg, f"{name} lesions (baseline frame)", baseline,
                                                   segment_id=f"lesion_{t}", segment_name=f"Lesion {t}",
                                                   color=TRACK_COLOURS[(t - 1) % len(TRACK_COLOURS)])
            if k >= len(out.subtractions):
                out.subtractions.append(node)
                out.lesions.append(seg)
            if k:
                tnode = out.transforms[k - 1] if k - 1 < len(out.transforms) else \
                    self.ctx.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", f"{name} to baseline")
                # a visit point p goes to the baseline point T^-1(p): the node's "to parent" transform
                matrix = ras_matrix(sitk.AffineTransform(visit.registration.transform.GetInverse()))
                vtk_matrix = vtk.vtkMatrix4x4()
                for i in range(4):
                    for j in range(4):
                        vtk_matrix.SetElement(i, j, float(matrix[i, j]))
                tnode.SetMatrixTransformToParent(vtk_matrix)
                if k - 1 >= len(out.transforms):
                    out.transforms.append(tnode)
            for n in (node, seg):
                bridge.place_next_to(self.ctx, n, baseline)
        base = baseline.GetName()
        out.exam_table = bridge.fill_table(self.ctx, EXAM_COLUMNS, exam_rows(res.table), out.exam_table,
                                           f"{base} follow-up (per exam)")
        out.lesion_table = bridge.fill_table(self.ctx, LESION_COLUMNS, lesion_rows(res.table), out.lesion_table,
                                             f"{base} follow-up (per lesion)")
        return out

    def show_linked(self, nodes: FollowupNodes, visit: int = -1) -> None:
        """Baseline (Red) and *visit* (Yellow, default the latest) side by side, axial, linked."""
        shown = {LINKED_VIEWS[0]: 0, LINKED_VIEWS[1]: visit % len(nodes.subtractions)}
        composites = self.ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for i in range(composites.GetNumberOfItems()):
            comp = composites.GetItemAsObject(i)
            if comp.GetLayoutName() in shown:
                comp.SetBackgroundVolumeID(nodes.subtractions[shown[comp.GetLayoutName()]].GetID())
                comp.SetLinkedControl(True)
        view_ids = {}
        slices = self.ctx.scene.GetNodesByClass("vtkMRMLSliceNode")
        for i in range(slices.GetNumberOfItems()):
            node = slices.GetItemAsObject(i)
            if node.GetLayoutName() in shown:
                node.SetOrientation("Axial")
                view_ids[shown[node.GetLayoutName()]] = node.GetID()
        for k, seg in enumerate(nodes.lesions):
            display = seg.GetDisplayNode()
            if display is None:
                seg.CreateDefaultDisplayNodes()
                display = seg.GetDisplayNode()
            display.RemoveAllViewNodeIDs()
            if k in view_ids:
                display.AddViewNodeID(view_ids[k])
                display.SetVisibility(True)
            else:
                display.SetVisibility(False)

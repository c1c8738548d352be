"""Logic of the Slicer module: DCE exam from MRML nodes, engine run, results back into the scene.

Everything a user can do in the panel can be done from here in batch mode, without Qt and
without the Slicer application: the logic takes an :class:`~.mrml_bridge.MRMLContext` (the
application's scene inside Slicer, a ``slicer-core`` scene in tests) and plain values, raises
:class:`~.errors.InputError` with a readable message on bad input, and never opens a dialog.

:class:`SegmentationLogic` is the module's one entry point; its jobs live in their own modules:
the phases of the exam (:mod:`.phases`), the engine run in a background process
(:mod:`.background`), a result's kinetics (:mod:`.kinetics_view`). What they define is importable
from here too, as it was before they moved.

Two ways to run the engine:

* :meth:`SegmentationLogic.segment` runs :func:`pipeline.segment_exam` in this process
  (batch scripts, tests, the module's self-test);
* the panel exports the exam with :meth:`SegmentationLogic.export_exam`, runs the engine CLI
  (:func:`engine_command`) in a background process (:mod:`.process`) so the GUI stays
  responsive and Cancel can kill it, then loads its output folder with
  :meth:`SegmentationLogic.import_result_folder`. Both paths end in :meth:`import_result`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk
import slicer

from . import background
from . import classify_view
from . import mrml_bridge as bridge
from ..core.errors import InputError
from ..core.exam import DCEExam
from ..models.registry import DEFAULT_MODEL
from .background import (BackgroundRun, EngineFailed, engine_command, engine_environment, engine_python,
                         finished_state)
from .kinetics_view import KineticsView, lesion_row_table
from .phases import (DICOM_TIME_TAGS, TIME_ATTRIBUTE, DicomValue, Phase, exam_from_phases, exam_to_run, guess_phases,
                     is_multivolume, phases_from_multivolume, phases_from_sequence, first_case_id, safe_case_id,
                     source_files)

__all__ = [
    "SegmentationLogic", "OutputNodes", "Comparison", "result_warnings", "lesion_rows", "model_card_html",
    "LESION_COLUMNS", "POSTPROCESS_ATTRIBUTE", "COMPARISON_COLUMNS",
    # defined in .phases, .background and .kinetics_view
    "Phase", "DicomValue", "TIME_ATTRIBUTE", "DICOM_TIME_TAGS", "guess_phases", "phases_from_sequence",
    "is_multivolume", "phases_from_multivolume", "exam_from_phases", "exam_to_run", "source_files", "safe_case_id",
    "BackgroundRun", "EngineFailed", "engine_command", "engine_environment", "engine_python", "KineticsView",
]

LESION_COLUMNS = ("Lesion", "Side", "Volume (mL)", "Longest diameter (mm)", "Max probability",
                  "Centroid R (mm)", "Centroid A (mm)", "Centroid S (mm)")
# Segmentation-node attribute: the engine's post-processing settings of the result (JSON), so the
# panel re-thresholds the stored probability map the way the engine did.
POSTPROCESS_ATTRIBUTE = "BreastTumorSeg.Postprocess"
COMPARISON_COLUMNS = ("Reference", "Segment", "Dice", "HD95 (mm)", "Volume result (mL)", "Volume reference (mL)")


# ----------------------------------------------------------------------------------- outputs
def result_warnings(summary: dict) -> list[str]:
    """What a reader must know before trusting a result, one sentence each, from its summary:
    a learned breast mask rejected as implausible, a lesion kept outside the breast mask, phase
    times assumed, phases left unregistered."""
    out = []
    qa = summary.get("breast_mask_qa") or {}
    used = qa.get(qa.get("used", "classical")) or {}
    if qa.get("fallback"):
        out.append(f"Breast mask: {qa.get('note', 'the learned mask was implausible; the classical one was used')}")
    elif used and not used.get("plausible", True):
        out.append("Breast mask looks implausible: " + "; ".join(used.get("reasons", [])))
    for les in summary.get("lesions") or []:
        if "outside_breast_mask" in (les.get("flags") or []):
            out.append(f"Lesion {les.get('label')} was kept although it lies outside the breast mask: "
                       + "; ".join(les.get("notes") or ["check it"]))
    settings = summary.get("settings") or {}
    if settings.get("times_assumed"):
        out.append("Phase times were not recorded; evenly spaced phases were assumed (check the phase table).")
    rejected = [str(q.get("phase")) for q in summary.get("registration_qa") or [] if not q.get("accepted", True)]
    if rejected:
        out.append(f"Motion correction was not applied to phase(s) {', '.join(rejected)} (no improvement found).")
    for q in summary.get("registration_qa") or []:
        for level, why in (q.get("rejected") or {}).items():
            if "not raised" in str(why):  # nothing gained: not worth a warning
                continue
            out.append(f"Motion correction of phase {q.get('phase')}: {level} level rejected ({why}); "
                       f"{q.get('motion_level', 'no')} level kept.")
    return out


@dataclass
class OutputNodes:
    """The nodes one run fills; pass them back in to reuse them on the next run."""

    segmentation: object = None
    probability: object = None
    lesion_table: object = None
    subtraction: object = None  # first post - pre, motion-corrected as the result (the engine's)
    breast_mask: object = None  # the mask that gated the lesions (re-thresholding gates with it again)
    registered_phases: object = None  # vtkMRMLSequenceNode of the motion-corrected phases, when asked for

    def ids(self) -> dict[str, str | None]:
        return {k: (None if v is None else v.GetID()) for k, v in self.__dict__.items()}


@dataclass
class Comparison:
    reference: str
    segment: str
    dice: float
    hd95_mm: float  # nan when either mask is empty
    volume_result_ml: float
    volume_reference_ml: float


def lesion_rows(lesions: Sequence[dict]) -> list[list]:
    """Rows of the lesion table from lesion dicts (``Lesion.as_dict()`` or the engine's JSON)."""
    rows = []
    for les in lesions:
        r, a, s = les.get("centroid_ras_mm") or [float("nan")] * 3
        rows.append([int(les["label"]), str(les.get("side", "unknown")), float(les["volume_ml"]),
                     float(les["longest_diameter_mm"]), float(les.get("max_probability", float("nan"))),
                     float(r), float(a), float(s)])
    return rows


def _bounding_box(mask) -> tuple[list[int], list[int]] | None:
    """(SimpleITK index, size) of the smallest box holding every true voxel of a (z, y, x) array."""
    import numpy as np

    if not mask.any():
        return None
    lo, hi = [], []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(hit[0]))
        hi.append(int(hit[-1]))
    return lo[::-1], [h - l + 1 for l, h in zip(lo, hi)][::-1]


def _side_of(lesions: Sequence[dict]) -> str | None:
    sides = {les.get("side") for les in lesions}
    return sides.pop() if len(sides) == 1 and sides <= {"left", "right"} else None


class SegmentationLogic:
    """Batch-mode logic of the BreastTumorSeg module over one MRML scene."""

    def __init__(self, ctx: bridge.MRMLContext, dicom_value: DicomValue | None = None):
        self.ctx = ctx
        self.dicom_value = dicom_value
        self.last_warnings: list[str] = []  # of the last result put into the scene (result_warnings)
        # The engine's own label map and lesion rows per result segmentation (node ID), with the
        # threshold it was made at: re-thresholding keeps the engine's decisions (breast gate,
        # false-positive reduction), which a probability map alone does not hold.
        self._engine_results: dict[str, tuple[sitk.Image, float, list[dict]]] = {}
        self.kinetics = KineticsView(ctx)  # lesion curves, SER bands, growth from a point
        self.classification: classify_view.ClassificationNodes | None = None  # per-breast malignancy (L/R)

    # ------------------------------------------------------------------ inputs
    def phases(self, sequence_node=None, volume_nodes: Sequence | None = None) -> list[Phase]:
        """Phases from a Sequence node, or from volume nodes ordered by :func:`guess_phases`."""
        if sequence_node is not None:
            if is_multivolume(sequence_node):
                return phases_from_multivolume(sequence_node)
            return phases_from_sequence(sequence_node)
        return guess_phases(volume_nodes or [], self.dicom_value)

    # ------------------------------------------------------------------ in-process run
    def segment(self, phases: Sequence[Phase], model=DEFAULT_MODEL, device: str = "auto",
                threshold: float | None = None, times_min: Sequence[float | None] | None = None,
                outputs: OutputNodes | None = None, progress=None, cancel=None, case_id: str | None = None,
                classify: str | None = None, **engine_options):
        """Run the engine in this process and put its result into the scene.

        Returns ``(outputs, result)``; ``outputs`` reuses the given nodes. ``classify`` (a
        classification model's name, e.g. ``"breastcls-demo"``): also the per-breast malignancy on
        the segmented (aligned) phases, like ``segment --classify``, into :attr:`classification`.
        """
        from ..engine.pipeline import segment_exam  # heavy imports only when a run starts
        from ..engine.settings import split_settings

        exam = exam_to_run(phases, case_id or first_case_id(phases), times_min)
        settings, options = split_settings(threshold=threshold, **engine_options)  # register=False included
        result = segment_exam(exam, model=model, settings=settings, device=device, progress=progress,
                              cancel=cancel, **options)
        out = self.import_result(result, phases[0].node, outputs, exam)
        if classify:
            from ..engine.classify import classify_exam
            from ..engine.classify_lesions import shipped_label

            aligned = exam.with_phases(result.registered_phases) if result.registered_phases else exam
            classified = classify_exam(aligned, classify, register=False, lesion_mask=result.label, cancel=cancel,
                                       segmenter_lesions=shipped_label(result))
            self.classification = classify_view.import_result(self.ctx, classified, phases[0].node,
                                                              self.classification)
        return out, result

    def compare_with_earlier_visit(self, earlier: Sequence[Phase], current: Sequence[Phase], **options):
        """Follow-up (issue 31): *earlier* is the baseline, *current* the later visit; returns
        ``(FollowupNodes, FollowupResult)`` (:class:`~.followup_view.FollowupViewLogic`, which takes the options)."""
        from .followup_view import FollowupViewLogic

        return FollowupViewLogic(self.ctx).compare([earlier, current], **options)

    # ------------------------------------------------------------------ background-process run
    # Start the engine CLI on the phases in the background (:func:`.background.start_run`); poll
    # ``run.process`` from a timer and call :meth:`finish_background` when it has ended.
    start_background = staticmethod(background.start_run)
    export_exam = staticmethod(background.export_exam)

    def finish_background(self, run: "BackgroundRun", outputs: OutputNodes | None = None) -> OutputNodes:
        """Load a finished run's results into the scene and delete its temporary folder.

        Raises :class:`EngineFailed` with the engine's one-line message when the run failed or
        was cancelled (nothing is put into the scene then).
        """
        try:
            state = finished_state(run)
            return self.import_result_folder(run.out_dir, run.case_id, run.reference_node, outputs, run.exam,
                                             files=state.files, engine_warnings=state.warnings)
        finally:
            run.cleanup()

    def import_result_folder(self, folder: str | os.PathLike, case_id: str, reference_node,
                             outputs: OutputNodes | None = None, exam: DCEExam | None = None,
                             files: dict | None = None, engine_warnings: Sequence[str] = ()) -> OutputNodes:
        """Load what ``breasttumorseg segment`` wrote into *folder* into the scene. *files* (output
        name -> path, the engine's ``done`` event) says where each file is; without it the standard
        names in *folder* are used. *engine_warnings* (its ``warning`` events) come first in
        :attr:`last_warnings`."""
        from ..io.images import read_image
        from ..engine.pipeline import output_names

        folder = Path(folder)
        names = output_names(case_id, reading_images=True, registered_phases=True)
        paths = {key: Path((files or {}).get(key) or folder / name) for key, name in names.items()}
        label = read_image(paths["label"], "segmentation")
        prob = read_image(paths["probability"], "probability map")
        summary = classify_view.read_result_json(paths["summary"], "the engine's summary")
        optional = {key: read_image(paths[key], key) if paths[key].is_file() else None
                    for key in ("subtraction", "breast_mask")}
        self.last_warnings = list(engine_warnings) + result_warnings(summary)
        registered = paths["registered_phases"]
        if registered.is_file():
            outputs = outputs or OutputNodes()
            times = (summary.get("settings") or {}).get("times_min")
            phases_4d = read_image(registered, "registered phases")
            if phases_4d.GetDimension() != 4:
                raise InputError(f"the registered phases are {phases_4d.GetDimension()}D, not one 4D image",
                                 registered, "run the segmentation again (it writes every phase on the 4th axis)")
            outputs.registered_phases = self._phase_sequence(phases_4d, times, reference_node,
                                                             outputs.registered_phases)
        out = self._fill(label, prob, summary.get("lesions", []), summary.get("model_id", ""),
                         reference_node, outputs, exam, optional["subtraction"], optional["breast_mask"],
                         (summary.get("settings") or {}).get("postprocess"))
        self.classification = classify_view.import_folder(self.ctx, folder, case_id, reference_node, files,
                                                          self.classification)
        return out

    def _phase_sequence(self, phases_4d: sitk.Image, times_min, reference_node, node=None):
        """A Sequence node (index: time in min) of the phases of a 4D image, with a browser so the
        phases can be stepped through in the slice views."""
        n = phases_4d.GetSize()[3]
        times = list(times_min) if times_min and len(times_min) == n else list(range(n))
        base = reference_node.GetName()
        if node is None:
            node = self.ctx.scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{base} registered phases")
        node.RemoveAllDataNodes()
        node.SetIndexName("time")
        node.SetIndexUnit("min" if times_min else "")
        for i in range(n):
            size = list(phases_4d.GetSize()[:3]) + [0]
            phase = sitk.Extract(phases_4d, size, [0, 0, 0, i])
            frame = slicer.vtkMRMLScalarVolumeNode()
            frame.SetName(f"{base} registered phase {i}")
            bridge.set_node_geometry(frame, phase)
            slicer.util.updateVolumeFromArray(frame, sitk.GetArrayFromImage(phase))
            node.SetDataNodeAtValue(frame, f"{times[i]:g}")
        browser = self.ctx.scene.GetFirstNodeByName(f"{base} registered phases browser")
        if browser is None:
            browser = self.ctx.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{base} registered phases browser")
            browser.SetAndObserveMasterSequenceNodeID(node.GetID())
        if self.ctx.sequences_logic is not None:
            self.ctx.sequences_logic.UpdateProxyNodesFromSequences(browser)
        return node

    # ------------------------------------------------------------------ results into the scene
    def import_result(self, result, reference_node, outputs: OutputNodes | None = None,
                      exam: DCEExam | None = None) -> OutputNodes:
        """Put a :class:`SegmentationResult` into segmentation, probability and table nodes."""
        self.last_warnings = result_warnings(result.summary())
        return self._fill(result.label, result.probability, [les.as_dict() for les in result.lesions],
                          result.model_id, reference_node, outputs, exam, result.subtraction, result.breast_mask,
                          result.settings.get("postprocess"))

    def _fill(self, label: sitk.Image, prob: sitk.Image, lesions: list[dict], model_id: str, reference_node,
              outputs: OutputNodes | None, exam: DCEExam | None, subtraction: sitk.Image | None = None,
              breast_mask: sitk.Image | None = None, postprocess: dict | None = None) -> OutputNodes:
        out = outputs or OutputNodes()
        base = reference_node.GetName()
        out.segmentation = bridge.label_to_segmentation(
            self.ctx, label, out.segmentation, f"{base} tumor segmentation", reference_node,
            terminology=bridge.tumor_terminology(_side_of(lesions)))
        out.segmentation.SetAttribute("BreastTumorSeg.ModelID", model_id)
        if postprocess:
            out.segmentation.SetAttribute(POSTPROCESS_ATTRIBUTE, json.dumps(postprocess))
            self._engine_results[out.segmentation.GetID()] = (sitk.Cast(label > 0, sitk.sitkUInt8),
                                                              float(postprocess["threshold"]), list(lesions))
        out.probability = bridge.image_to_volume_node(self.ctx, sitk.Cast(prob, sitk.sitkFloat32),
                                                      f"{base} tumor probability", out.probability)
        display = out.probability.GetDisplayNode()
        if display is not None:
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(0.0, 1.0)
        out.lesion_table = bridge.fill_table(self.ctx, LESION_COLUMNS, lesion_rows(lesions),
                                             out.lesion_table, f"{base} tumor lesions")
        if subtraction is None and exam is not None:  # an engine that did not write it: unregistered
            subtraction = sitk.Subtract(exam.first_post, exam.pre)
        if subtraction is not None:
            out.subtraction = bridge.image_to_volume_node(self.ctx, sitk.Cast(subtraction, sitk.sitkFloat32),
                                                          f"{base} subtraction", out.subtraction)
        if breast_mask is not None:
            out.breast_mask = bridge.image_to_volume_node(self.ctx, sitk.Cast(breast_mask, sitk.sitkUInt8),
                                                          f"{base} breast mask", out.breast_mask)
            out.breast_mask.SetHideFromEditors(True)
        for node in (out.segmentation, out.probability, out.lesion_table, out.subtraction):
            if node is not None:
                bridge.place_next_to(self.ctx, node, reference_node)
        return out

    def show_results(self, outputs: OutputNodes, background=None) -> None:
        """Subtraction image (or *background*) in the slice views, segmentation overlaid."""
        bridge.show_in_slice_views(self.ctx, background or outputs.subtraction, outputs.segmentation)

    # ------------------------------------------------------------------ working on the result
    def _postprocess_settings(self, outputs: OutputNodes, threshold: float | None = None):
        from ..engine.postprocess import PostprocessSettings

        text = outputs.segmentation.GetAttribute(POSTPROCESS_ATTRIBUTE) if outputs.segmentation else None
        settings = PostprocessSettings(**json.loads(text)) if text else PostprocessSettings()
        if threshold is not None:
            settings.threshold = float(threshold)
        return settings

    def _fill_lesions(self, outputs: OutputNodes, lesions, prob_node) -> None:
        base = prob_node.GetName().removesuffix(" tumor probability")
        outputs.lesion_table = bridge.fill_table(self.ctx, LESION_COLUMNS, lesion_rows([les.as_dict() for les in lesions]),
                                                 outputs.lesion_table, f"{base} tumor lesions")

    def rethreshold(self, outputs: OutputNodes, threshold: float) -> OutputNodes:
        """Threshold the stored probability map again (no model run): segment "Tumor" and the lesion
        table are replaced, with the engine's post-processing (mode, minimum lesion size, breast gate).
        For a result this logic put into the scene, the engine's own decisions hold: at the engine's
        threshold its label map and lesion table come back exactly; at another threshold what the
        engine removed at its own (vessels, components outside the breast, small parts) stays removed."""
        from ..engine.postprocess import lesion_table, midline_x, postprocess

        if outputs.probability is None or outputs.segmentation is None:
            raise InputError("there is no result to re-threshold", "the panel", "press Apply first")
        try:
            value = float(threshold)
        except (TypeError, ValueError):  # e.g. text from a field: refused below, not a ValueError
            value = float("nan")
        if not 0.0 < value <= 1.0:
            raise InputError(f"threshold {threshold!r} is outside (0, 1]", "threshold", "pick a value in (0, 1]")
        prob = bridge.volume_node_to_image(outputs.probability)
        gate = None if outputs.breast_mask is None else bridge.volume_node_to_image(outputs.breast_mask)
        settings = self._postprocess_settings(outputs, threshold)
        if gate is None:
            settings.restrict_to_breast = False
        # Only voxels at or above this can become tumor (relative mode: a fraction of a slice maximum
        # that is itself >= the threshold), so the post-processing runs on their bounding box: the
        # same components, lesions and measurements, without passing over the whole grid.
        floor = settings.threshold * (settings.relative_fraction if settings.mode == "relative" else 1.0)
        box = _bounding_box(sitk.GetArrayViewFromImage(prob) >= floor)
        label = sitk.Image(prob.GetSize(), sitk.sitkUInt8)
        label.CopyInformation(prob)
        lesions = []
        if box is not None:
            index, size = box
            crop_gate = None if gate is None else sitk.RegionOfInterest(gate, size, index)
            layout = None if gate is None else {"midline_x": midline_x(gate)}  # of the whole breast mask
            crop_label, lesions = postprocess(sitk.RegionOfInterest(prob, size, index), settings, crop_gate,
                                              layout=layout)
            label = sitk.Paste(label, sitk.Cast(crop_label, sitk.sitkUInt8), size, [0, 0, 0], index)
        rows = [les.as_dict() for les in lesions]
        engine = self._engine_results.get(outputs.segmentation.GetID())
        if engine is not None and engine[0].GetSize() == label.GetSize():
            engine_label, engine_threshold, engine_rows = engine
            if abs(float(threshold) - engine_threshold) < 1e-9:  # the engine's own result, exactly
                label, rows = sitk.Image(engine_label), list(engine_rows)
            else:  # what the engine removed at its own threshold (gate, vessels, size) stays removed
                prob_arr = sitk.GetArrayViewFromImage(prob)
                removed = (prob_arr >= engine_threshold) & (sitk.GetArrayViewFromImage(engine_label) == 0)
                if removed.any():
                    arr = sitk.GetArrayFromImage(label)
                    arr[removed] = 0
                    kept = sitk.GetImageFromArray(arr)
                    kept.CopyInformation(label)
                    label = kept
                    components = sitk.RelabelComponent(sitk.ConnectedComponent(label, True), sortByObjectSize=True)
                    rows = [les.as_dict() for les in lesion_table(components, prob, None if gate is None else
                                                                  midline_x(gate))]
        terminology = bridge.tumor_terminology(_side_of(rows))
        bridge.label_to_segmentation(self.ctx, label, outputs.segmentation, reference_node=outputs.probability,
                                     terminology=terminology)
        outputs.segmentation.SetAttribute(POSTPROCESS_ATTRIBUTE, json.dumps(settings.as_dict()))
        outputs.lesion_table = bridge.fill_table(self.ctx, LESION_COLUMNS, lesion_rows(rows), outputs.lesion_table,
                                                 f"{outputs.probability.GetName().removesuffix(' tumor probability')} tumor lesions")
        return outputs

    def lesions_from_segmentation(self, outputs: OutputNodes) -> OutputNodes:
        """The lesion table measured again from segment "Tumor" as it is now (after edits in the
        Segment Editor): one row per connected component, on the probability map's grid (measured
        on the bounding box of the segment, which holds every component)."""
        from ..engine.postprocess import lesion_table, midline_x

        prob = bridge.volume_node_to_image(outputs.probability)
        mask = bridge.segment_to_label(self.ctx, outputs.segmentation, bridge.TUMOR_SEGMENT_ID, prob)
        gate = None if outputs.breast_mask is None else bridge.volume_node_to_image(outputs.breast_mask)
        box = _bounding_box(sitk.GetArrayViewFromImage(mask) > 0)
        lesions = []
        if box is not None:
            index, size = box
            crop = sitk.RegionOfInterest(mask, size, index)
            components = sitk.RelabelComponent(sitk.ConnectedComponent(crop, True), sortByObjectSize=True)
            lesions = lesion_table(components, sitk.RegionOfInterest(prob, size, index), midline_x(gate))
        self._fill_lesions(outputs, lesions, outputs.probability)
        return outputs

    def lesion_centroid_ras(self, outputs: OutputNodes, row: int) -> tuple[float, float, float]:
        """Centroid (RAS, mm) of the lesion in *row* of the lesion table."""
        table = lesion_row_table(outputs, row)
        return tuple(float(table.GetColumnByName(f"Centroid {axis} (mm)").GetValue(row)) for axis in "RAS")

    def show_label_layer(self, node, opacity: float = 0.6) -> None:
        """*node* (a label map) in the label layer of every slice view."""
        composites = self.ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for i in range(composites.GetNumberOfItems()):
            comp = composites.GetItemAsObject(i)
            comp.SetLabelVolumeID(node.GetID())
            comp.SetLabelOpacity(opacity)

    def centre_views_on(self, ras) -> None:
        """Every slice view of the scene centred on the point *ras* (as a click in the data probe)."""
        nodes = self.ctx.scene.GetNodesByClass("vtkMRMLSliceNode")
        for i in range(nodes.GetNumberOfItems()):
            nodes.GetItemAsObject(i).JumpSliceByCentering(*map(float, ras))

    # ------------------------------------------------------------------ kinetics of the result
    def lesion_curve(self, phases: Sequence[Phase], outputs: OutputNodes, row: int, times_min=None, chart=None):
        """The signal-time curve of the lesion in *row* as a plot chart: :meth:`.KineticsView.lesion_curve`."""
        return self.kinetics.lesion_curve(phases, outputs, row, times_min, chart)

    def ser_overlay(self, phases: Sequence[Phase], outputs: OutputNodes, times_min=None, node=None):
        """The SER bands of segment "Tumor" as a label map: :meth:`.KineticsView.ser_overlay`."""
        return self.kinetics.ser_overlay(phases, outputs, times_min, node)

    def grow_from_point(self, phases: Sequence[Phase], outputs: OutputNodes, ras, times_min=None) -> dict:
        """Grow one lesion from a point (RAS mm, e.g. a markup the reader placed on a missed lesion)
        with the seeded FTV growth the CLI has (``--model ftv --seed-ras``), add it to segment
        "Tumor" and measure the lesion table again. Returns the growth's summary."""
        summary = self.kinetics.grow_from_point(phases, outputs, ras, times_min)
        self.lesions_from_segmentation(outputs)
        return summary

    # ------------------------------------------------------------------ comparison
    def compare(self, seg_node, references: Sequence, segment_id: str = bridge.TUMOR_SEGMENT_ID,
                table=None) -> tuple[list[Comparison], object]:
        """Dice and HD95 of the result segment against every segment of each reference segmentation.

        All masks are compared on the result's reference grid (references drawn on another grid
        are resampled by Slicer's segmentation export, as SlicerRT's Segment Comparison does).
        Returns the rows and the table node.
        """
        from ..evaluation.metrics import dice, volume_ml
        from ..evaluation.surface import hd95_mm

        result_mask = bridge.segment_to_label(self.ctx, seg_node, segment_id)
        result_ml = volume_ml(result_mask)
        rows: list[Comparison] = []
        for ref in references:
            if ref is None:
                continue
            if not hasattr(ref, "GetSegmentation"):
                raise InputError(f"the reference is a {ref.GetClassName()}, not a segmentation", ref.GetName(),
                                 "pick a segmentation node; import a label map into one first (Data module: "
                                 "right-click the label map, 'Convert labelmap to segmentation node')")
            segmentation = ref.GetSegmentation()
            if segmentation.GetNumberOfSegments() == 0:
                raise InputError("the reference segmentation has no segments", ref.GetName(),
                                 "pick a segmentation that holds the reader's tumor outline")
            for i in range(segmentation.GetNumberOfSegments()):
                sid = segmentation.GetNthSegmentID(i)
                mask = bridge.segment_to_label(self.ctx, ref, sid, result_mask)
                rows.append(Comparison(ref.GetName(), segmentation.GetSegment(sid).GetName(),
                                       dice(result_mask, mask), hd95_mm(result_mask, mask),
                                       result_ml, volume_ml(mask)))
        table = bridge.fill_table(self.ctx, COMPARISON_COLUMNS,
                                  [[c.reference, c.segment, c.dice, c.hd95_mm, c.volume_result_ml,
                                    c.volume_reference_ml] for c in rows], table, "BreastTumorSeg comparison")
        return rows, table


# ----------------------------------------------------------------------------------- models for the panel
def model_card_html(card: dict) -> str:
    """What the panel shows about a model: what it does, what it was trained on, its limits."""
    from html import escape

    from ..models.cards import default_threshold, trained_on

    parts = [f"<b>{escape(str(card.get('name', '')))}</b>: {escape(str(card.get('description', '')))}"]
    data = trained_on(card)
    if data is not None:
        parts.append(f"<i>Trained on:</i> {escape(data)}")
    validation = card.get("validation")
    if isinstance(validation, dict) and "dice_median" in validation:
        parts.append(f"<i>Validation:</i> median Dice {float(validation['dice_median']):.2f} "
                     f"({escape(str(validation.get('data', '')))})")
    for key, title in (("intended_use", "Intended use"), ("limitations", "Limits"), ("limits", "Limits")):
        if card.get(key):
            parts.append(f"<i>{title}:</i> {escape(str(card[key]))}")
    if card.get("license"):  # registered nnU-Net / MONAI models (models add) carry their weights' licence
        parts.append(f"<i>Licence:</i> {escape(str(card['license']))}")
    threshold = default_threshold(card)
    if threshold is not None:
        parts.append(f"<i>Default threshold:</i> {threshold:.2f}")
    return "<br>".join(parts)

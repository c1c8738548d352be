"""Logic of the Slicer module: DCE exam from MRML nodes, engine run, results back into the scene.

Everything a user can do in the panel can be done from here in batch mode, without Qt and
without the Slicer application: the logic takes an :class:`~.mrml_bridge.MRMLContext` (the
application's scene inside Slicer, a ``slicer-core`` scene in tests) and plain values, raises
:class:`~.errors.InputError` with a readable message on bad input, and never opens a dialog.

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
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import SimpleITK as sitk

from . import mrml_bridge as bridge
from ..core.errors import InputError
from ..core.exam import DCEExam, MAX_PHASES, MIN_PHASES, assemble_exam
from ..models.registry import DEFAULT_MODEL
from .process import EngineProcess

# Node attribute a script or loader may set to give a phase's acquisition time explicitly.
TIME_ATTRIBUTE = "BreastTumorSeg.AcquisitionTimeMin"
# DICOM tags tried, in order, for a phase's acquisition time of day (all in the TM format).
DICOM_TIME_TAGS = (("0008,0032", "AcquisitionTime"), ("0008,0033", "ContentTime"), ("0008,0031", "SeriesTime"))
LESION_COLUMNS = ("Lesion", "Side", "Volume (mL)", "Longest diameter (mm)", "Max probability",
                  "Centroid R (mm)", "Centroid A (mm)", "Centroid S (mm)")
COMPARISON_COLUMNS = ("Reference", "Segment", "Dice", "HD95 (mm)", "Volume result (mL)", "Volume reference (mL)")

DicomValue = Callable[[str, str], str]  # (SOP instance UID, "gggg,eeee") -> value or ""


# ----------------------------------------------------------------------------------- phases
@dataclass
class Phase:
    """One phase of the exam as the panel shows it for confirmation."""

    node: object  # vtkMRMLScalarVolumeNode
    time_min: float | None  # minutes after the pre-contrast phase, when known
    source: str  # where order and time came from: "attribute", "DICOM AcquisitionTime", ...

    @property
    def name(self) -> str:
        return self.node.GetName()


_INDEX_RE = re.compile(r"_(\d{4})$")
_PRE_RE = re.compile(r"(^|[^a-z])(pre|precontrast|pre-contrast|native|t0)([^a-z]|$)", re.IGNORECASE)


def _dicom_seconds(node, dicom_value: DicomValue | None) -> tuple[float | None, str]:
    if dicom_value is None:
        return None, ""
    from ..io.dicom.headers import parse_tm  # pydicom only when DICOM times are looked up

    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids:
        return None, ""
    for tag, tag_name in DICOM_TIME_TAGS:
        # The earliest time over the series' instances is the phase's start.
        secs = [parse_tm(dicom_value(uid, tag)) for uid in uids[:: max(1, len(uids) // 16)]]
        secs = [s for s in secs if s is not None]
        if secs:
            return min(secs), f"DICOM {tag_name}"
    return None, ""


def guess_phases(nodes: Sequence, dicom_value: DicomValue | None = None) -> list[Phase]:
    """Order scalar volume nodes as a DCE exam (pre-contrast first) and find their times.

    Evidence, strongest first: the ``BreastTumorSeg.AcquisitionTimeMin`` node attribute; DICOM
    acquisition/content/series times (through *dicom_value*, e.g. Slicer's DICOM database);
    MAMA-MIA names ``<case>_0000``, ``_0001``, ...; a name saying "pre"; otherwise the order given.
    Times are returned relative to the first phase, in minutes, or ``None`` when unknown.
    """
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        return []
    attr = [node.GetAttribute(TIME_ATTRIBUTE) for node in nodes]
    if all(a not in (None, "") for a in attr):
        try:
            times = [float(a) for a in attr]
        except ValueError:
            raise InputError(f"attribute {TIME_ATTRIBUTE} must be a number of minutes", nodes[0].GetName()) from None
        return _ordered(nodes, times, "attribute")
    found = [_dicom_seconds(n, dicom_value) for n in nodes]
    if all(s is not None for s, _ in found):
        from ..io.dicom.headers import unwrap_midnight

        # A series acquired across midnight: times after the wrap are on the next day.
        secs = unwrap_midnight([s for s, _ in found])
        return _ordered(nodes, [s / 60.0 for s in secs], found[0][1])
    indices = [_INDEX_RE.search(n.GetName()) for n in nodes]
    if all(indices):
        order = sorted(range(len(nodes)), key=lambda i: int(indices[i].group(1)))
        return [Phase(nodes[i], None, "name index") for i in order]
    pre = [i for i, n in enumerate(nodes) if _PRE_RE.search(n.GetName())]
    if len(pre) == 1:
        order = pre + [i for i in range(len(nodes)) if i != pre[0]]
        return [Phase(nodes[i], None, "name 'pre'" if i == pre[0] else "order given") for i in order]
    return [Phase(n, None, "order given") for n in nodes]


def _ordered(nodes, times: list[float], source: str) -> list[Phase]:
    from ..io.dicom.headers import order_by_time

    order, relative = order_by_time(times)
    return [Phase(nodes[i], round(t, 4), source) for i, t in zip(order, relative)]


def _minutes_per_unit(unit: str) -> float | None:
    unit = (unit or "").strip().lower()
    return {"ms": 1 / 60000, "msec": 1 / 60000, "s": 1 / 60, "sec": 1 / 60, "second": 1 / 60, "seconds": 1 / 60,
            "min": 1.0, "minute": 1.0, "minutes": 1.0}.get(unit)


def phases_from_sequence(sequence_node) -> list[Phase]:
    """The phases of a Sequence node (a DCE series loaded as a sequence), in index order.

    Times come from the sequence index when it is a time with a unit (ms, s or min).
    """
    n = sequence_node.GetNumberOfDataNodes()
    nodes = [sequence_node.GetNthDataNode(i) for i in range(n)]
    bad = [i for i, node in enumerate(nodes) if node is None or not node.IsA("vtkMRMLScalarVolumeNode")]
    if bad:
        raise InputError(f"item {bad[0]} of the sequence is not a scalar volume", sequence_node.GetName(),
                         "select a sequence of 3D volumes (one per DCE phase)")
    per_unit = _minutes_per_unit(sequence_node.GetIndexUnit())
    times = None
    if per_unit is not None:
        try:
            raw = [float(sequence_node.GetNthIndexValue(i)) for i in range(n)]
            times = [(t - raw[0]) * per_unit for t in raw]
        except ValueError:
            times = None
    source = f"sequence index ({sequence_node.GetIndexName()} in {sequence_node.GetIndexUnit()})" \
        if times is not None else "sequence order"
    return [Phase(node, None if times is None else round(times[i], 4), source) for i, node in enumerate(nodes)]


def exam_from_phases(phases: Sequence[Phase], case_id: str = "case",
                     times_min: Sequence[float | None] | None = None) -> DCEExam:
    """A :class:`DCEExam` from phases (pre-contrast first), in world coordinates.

    *times_min* (e.g. edited in the panel's table) overrides the phases' own times; when any
    time is unknown the engine assumes its default spacing. Built by :func:`assemble_exam`, as
    the file and DICOM loaders build theirs (float32, other grids resampled onto the pre-contrast one).
    """
    if not MIN_PHASES <= len(phases) <= MAX_PHASES:
        raise InputError(f"a DCE exam needs {MIN_PHASES} to {MAX_PHASES} phases (pre-contrast first), "
                         f"{len(phases)} selected", case_id,
                         "select the pre-contrast volume and the post-contrast volumes")
    times = list(times_min) if times_min is not None else [ph.time_min for ph in phases]
    known = None if any(t is None for t in times) else [float(t) for t in times]
    return assemble_exam([bridge.volume_node_to_image(ph.node) for ph in phases], known, case_id,
                         [ph.name for ph in phases])


def safe_case_id(name: str) -> str:
    """A file-name-safe case id from a node name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "case"
    return _INDEX_RE.sub("", cleaned) or "case"


# ----------------------------------------------------------------------------------- engine process
def engine_python() -> str:
    """The Python that runs the engine: Slicer's ``PythonSlicer`` inside Slicer, else this one."""
    exe_dir = Path(sys.executable).parent
    for name in ("PythonSlicer", "PythonSlicer.exe"):
        if (exe_dir / name).exists():
            return str(exe_dir / name)
    return shutil.which("PythonSlicer") or sys.executable


def engine_command(exam_dir: str | os.PathLike, out_dir: str | os.PathLike, model: str = DEFAULT_MODEL,
                   device: str = "auto", threshold: float | None = None, python: str | None = None,
                   extra: Sequence[str] = ()) -> list[str]:
    """Command line of ``breasttumorseg segment`` for one exported exam (see :func:`engine_environment`)."""
    cmd = [python or engine_python(), "-c", "import sys; from BreastTumorSegLib.cli import main; sys.exit(main())",
           "segment", str(exam_dir), "--output", str(out_dir), "--model", model, "--device", device, "--overwrite"]
    if threshold is not None:
        cmd += ["--threshold", f"{float(threshold):.6g}"]
    return cmd + list(extra)


def engine_environment(base: dict | None = None) -> dict:
    """Environment for the engine process: this checkout's package importable, one line per update."""
    env = dict(os.environ if base is None else base)
    lib_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([lib_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ----------------------------------------------------------------------------------- outputs
def result_warnings(summary: dict) -> list[str]:
    """What a reader must know before trusting a result, one sentence each, from its summary:
    a learned breast mask rejected as implausible, phase times assumed, phases left unregistered."""
    out = []
    qa = summary.get("breast_mask_qa") or {}
    used = qa.get(qa.get("used", "classical")) or {}
    if qa.get("fallback"):
        out.append(f"Breast mask: {qa.get('note', 'the learned mask was implausible; the classical one was used')}")
    elif used and not used.get("plausible", True):
        out.append("Breast mask looks implausible: " + "; ".join(used.get("reasons", [])))
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


class EngineFailed(RuntimeError):
    """The background engine run failed or was cancelled; the message is one readable line."""


@dataclass
class BackgroundRun:
    """A running (or finished) engine process and what is needed to load its results."""

    process: EngineProcess
    workdir: Path
    out_dir: Path
    case_id: str
    reference_node: object
    exam: DCEExam

    def cleanup(self) -> None:
        """Remove the temporary exam and result files (the process must have ended)."""
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class OutputNodes:
    """The nodes one run fills; pass them back in to reuse them on the next run."""

    segmentation: object = None
    probability: object = None
    lesion_table: object = None
    subtraction: object = None

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


def _side_of(lesions: Sequence[dict]) -> str | None:
    sides = {les.get("side") for les in lesions}
    return sides.pop() if len(sides) == 1 and sides <= {"left", "right"} else None


class SegmentationLogic:
    """Batch-mode logic of the BreastTumorSeg module over one MRML scene."""

    def __init__(self, ctx: bridge.MRMLContext, dicom_value: DicomValue | None = None):
        self.ctx = ctx
        self.dicom_value = dicom_value
        self.last_warnings: list[str] = []  # of the last result put into the scene (result_warnings)

    # ------------------------------------------------------------------ inputs
    def phases(self, sequence_node=None, volume_nodes: Sequence | None = None) -> list[Phase]:
        """Phases from a Sequence node, or from volume nodes ordered by :func:`guess_phases`."""
        if sequence_node is not None:
            return phases_from_sequence(sequence_node)
        return guess_phases(volume_nodes or [], self.dicom_value)

    # ------------------------------------------------------------------ in-process run
    def segment(self, phases: Sequence[Phase], model=DEFAULT_MODEL, device: str = "auto",
                threshold: float | None = None, times_min: Sequence[float | None] | None = None,
                outputs: OutputNodes | None = None, progress=None, cancel=None, case_id: str | None = None,
                **engine_options):
        """Run the engine in this process and put its result into the scene.

        Returns ``(outputs, result)``; ``outputs`` reuses the given nodes.
        """
        from ..engine.pipeline import segment_exam  # heavy imports only when a run starts

        exam = exam_from_phases(phases, case_id or safe_case_id(phases[0].name), times_min)
        result = segment_exam(exam, model=model, device=device, threshold=threshold, progress=progress,
                              cancel=cancel, **engine_options)
        return self.import_result(result, phases[0].node, outputs, exam), result

    # ------------------------------------------------------------------ background-process run
    @staticmethod
    def export_exam(exam: DCEExam, folder: str | os.PathLike) -> Path:
        """Write *exam* as ``<case>_0000.nrrd``, ... (+ ``<case>.json`` with times) for the engine CLI."""
        from ..io.files import write_image_atomic, write_json_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(exam.phases):
            write_image_atomic(img, folder / f"{exam.case_id}_{i:04d}.nrrd", compress=False)
        if exam.times_min is not None:
            write_json_atomic({"acquisition_times_min": exam.times_min}, folder / f"{exam.case_id}.json")
        return folder

    def start_background(self, phases: Sequence[Phase], model: str = DEFAULT_MODEL, device: str = "auto",
                         threshold: float | None = None, times_min: Sequence[float | None] | None = None,
                         register: bool = True, case_id: str | None = None, python: str | None = None,
                         workdir: str | os.PathLike | None = None) -> "BackgroundRun":
        """Export the exam to a temporary folder and start the engine CLI on it in the background.

        Poll ``run.process`` from a timer; call :meth:`finish_background` when it has ended.
        """
        exam = exam_from_phases(phases, case_id or safe_case_id(phases[0].name), times_min)
        work = Path(tempfile.mkdtemp(prefix="BreastTumorSeg-", dir=workdir))
        try:
            exam_dir = self.export_exam(exam, work / "exam")
            out_dir = work / "result"
            extra = [] if register else ["--no-register"]
            cmd = engine_command(exam_dir, out_dir, model, device, threshold, python, extra)
            process = EngineProcess(cmd, env=engine_environment(), cwd=str(work)).start()
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return BackgroundRun(process, work, out_dir, exam.case_id, phases[0].node, exam)

    def finish_background(self, run: "BackgroundRun", outputs: OutputNodes | None = None) -> OutputNodes:
        """Load a finished run's results into the scene and delete its temporary folder.

        Raises :class:`EngineFailed` with the engine's one-line message when the run failed or
        was cancelled (nothing is put into the scene then).
        """
        try:
            state = run.process.poll()
            if state.running:
                raise RuntimeError("the engine is still running; cancel it or wait for it to finish")
            if not state.succeeded:
                raise EngineFailed(run.process.error_message())
            return self.import_result_folder(run.out_dir, run.case_id, run.reference_node, outputs, run.exam)
        finally:
            run.cleanup()

    def import_result_folder(self, folder: str | os.PathLike, case_id: str, reference_node,
                             outputs: OutputNodes | None = None, exam: DCEExam | None = None) -> OutputNodes:
        """Load what ``breasttumorseg segment`` wrote into *folder* into the scene."""
        from ..io.files import read_image
        from ..engine.pipeline import output_names

        folder = Path(folder)
        names = output_names(case_id)
        label = read_image(folder / names["label"], "segmentation")
        prob = read_image(folder / names["probability"], "probability map")
        try:
            summary = json.loads((folder / names["summary"]).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the engine's summary ({exc})", folder / names["summary"]) from None
        self.last_warnings = result_warnings(summary)
        return self._fill(label, prob, summary.get("lesions", []), summary.get("model_id", ""),
                          reference_node, outputs, exam)

    # ------------------------------------------------------------------ results into the scene
    def import_result(self, result, reference_node, outputs: OutputNodes | None = None,
                      exam: DCEExam | None = None) -> OutputNodes:
        """Put a :class:`SegmentationResult` into segmentation, probability and table nodes."""
        self.last_warnings = result_warnings(result.summary())
        return self._fill(result.label, result.probability, [les.as_dict() for les in result.lesions],
                          result.model_id, reference_node, outputs, exam)

    def _fill(self, label: sitk.Image, prob: sitk.Image, lesions: list[dict], model_id: str, reference_node,
              outputs: OutputNodes | None, exam: DCEExam | None) -> OutputNodes:
        out = outputs or OutputNodes()
        base = reference_node.GetName()
        out.segmentation = bridge.label_to_segmentation(
            self.ctx, label, out.segmentation, f"{base} tumor segmentation", reference_node,
            terminology=bridge.tumor_terminology(_side_of(lesions)))
        out.segmentation.SetAttribute("BreastTumorSeg.ModelID", model_id)
        out.probability = bridge.image_to_volume_node(self.ctx, sitk.Cast(prob, sitk.sitkFloat32),
                                                      f"{base} tumor probability", out.probability)
        display = out.probability.GetDisplayNode()
        if display is not None:
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(0.0, 1.0)
        out.lesion_table = bridge.fill_table(self.ctx, LESION_COLUMNS, lesion_rows(lesions),
                                             out.lesion_table, f"{base} tumor lesions")
        if exam is not None:
            sub = sitk.Subtract(exam.first_post, exam.pre)
            out.subtraction = bridge.image_to_volume_node(self.ctx, sub, f"{base} subtraction", out.subtraction)
        for node in (out.segmentation, out.probability, out.lesion_table, out.subtraction):
            if node is not None:
                bridge.place_next_to(self.ctx, node, reference_node)
        return out

    def show_results(self, outputs: OutputNodes, background=None) -> None:
        """Subtraction image (or *background*) in the slice views, segmentation overlaid."""
        bridge.show_in_slice_views(self.ctx, background or outputs.subtraction, outputs.segmentation)

    # ------------------------------------------------------------------ comparison
    def compare(self, seg_node, references: Sequence, segment_id: str = bridge.TUMOR_SEGMENT_ID,
                table=None) -> tuple[list[Comparison], object]:
        """Dice and HD95 of the result segment against every segment of each reference segmentation.

        All masks are compared on the result's reference grid (references drawn on another grid
        are resampled by Slicer's segmentation export, as SlicerRT's Segment Comparison does).
        Returns the rows and the table node.
        """
        from ..evaluation.metrics import dice, hd95_mm, volume_ml

        result_mask = bridge.segment_to_label(self.ctx, seg_node, segment_id)
        result_ml = volume_ml(result_mask)
        rows: list[Comparison] = []
        for ref in references:
            if ref is None:
                continue
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
    threshold = default_threshold(card)
    if threshold is not None:
        parts.append(f"<i>Default threshold:</i> {threshold:.2f}")
    return "<br>".join(parts)

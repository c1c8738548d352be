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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import SimpleITK as sitk
import slicer

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
# Segmentation-node attribute: the engine's post-processing settings of the result (JSON), so the
# panel re-thresholds the stored probability map the way the engine did.
POSTPROCESS_ATTRIBUTE = "BreastTumorSeg.Postprocess"
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


def is_multivolume(node) -> bool:
    """A MultiVolume node (MultiVolumeExplorer's DCE series): one scalar component per frame and the
    ``MultiVolume.FrameLabels`` attribute (frame times)."""
    return node is not None and (node.IsA("vtkMRMLMultiVolumeNode") or (
        node.IsA("vtkMRMLScalarVolumeNode") and bool(node.GetAttribute("MultiVolume.FrameLabels"))))


def phases_from_multivolume(node) -> list[Phase]:
    """The frames of a MultiVolume node as phases, in frame order; times from the frame labels
    (``MultiVolume.FrameIdentifyingDICOMTagUnits``: ms, s or min)."""
    import vtk

    image = node.GetImageData()
    n = 0 if image is None else image.GetNumberOfScalarComponents()
    if n < 2:
        raise InputError("the MultiVolume has fewer than two frames", node.GetName(),
                         "load the whole DCE series (pre-contrast and post-contrast frames)")
    if node.GetParentTransformNode() is not None:
        raise InputError("the MultiVolume is under a transform", node.GetName(),
                         "harden the transform (Data module) or remove it, then select the node again")
    labels = [v.strip() for v in (node.GetAttribute("MultiVolume.FrameLabels") or "").split(",") if v.strip()]
    per_unit = _minutes_per_unit(node.GetAttribute("MultiVolume.FrameIdentifyingDICOMTagUnits") or "")
    times = None
    if len(labels) == n and per_unit is not None:
        try:
            raw = [float(v) for v in labels]
            times = [round((t - raw[0]) * per_unit, 4) for t in raw]
        except ValueError:
            times = None
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    phases = []
    for i in range(n):
        extract = vtk.vtkImageExtractComponents()
        extract.SetInputData(image)
        extract.SetComponents(i)
        extract.Update()
        frame = slicer.vtkMRMLScalarVolumeNode()  # not added to the scene: read once for the exam
        frame.SetName(f"{node.GetName()} frame {i}")
        frame.SetIJKToRASMatrix(ijk_to_ras)
        frame.SetAndObserveImageData(extract.GetOutput())
        phases.append(Phase(frame, None if times is None else times[i],
                            "MultiVolume frame labels" if times is not None else "MultiVolume frame order"))
    return phases


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


def source_files(phases: Sequence[Phase]) -> list[Path] | None:
    """The image files the phases were loaded from, when the engine can read them as they are.

    Every phase must have a storage node naming one existing NIfTI/NRRD/MetaImage file, must be
    unchanged since it was read, and must not sit under a transform; otherwise ``None`` (the
    exam is exported instead). DICOM series (a list of files) are exported too.
    """
    from ..io.files import IMAGE_SUFFIXES

    files = []
    for ph in phases:
        node = ph.node
        storage = node.GetStorageNode() if node is not None else None
        if storage is None or storage.GetNumberOfFileNames() > 1 or node.GetParentTransformNode() is not None:
            return None
        if node.GetModifiedSinceRead():
            return None
        name = storage.GetFileName() or ""
        path = Path(name)
        if not name or not path.is_file() or not path.name.lower().endswith(IMAGE_SUFFIXES):
            return None
        files.append(path.resolve())
    return files


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


def engine_command(exam_dir, out_dir: str | os.PathLike, model: str = DEFAULT_MODEL,
                   device: str = "auto", threshold: float | None = None, python: str | None = None,
                   extra: Sequence[str] = ()) -> list[str]:
    """Command line of ``breasttumorseg segment`` for one exam folder, or a list of phase files in
    acquisition order (see :func:`engine_environment`)."""
    inputs = [str(exam_dir)] if isinstance(exam_dir, (str, os.PathLike)) else [str(p) for p in exam_dir]
    cmd = [python or engine_python(), "-c", "import sys; from BreastTumorSegLib.cli import main; sys.exit(main())",
           "segment", *inputs, "--output", str(out_dir), "--model", model, "--device", device, "--overwrite",
           "--progress", "json"]
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
    exam: DCEExam | None  # None when the phases were handed to the engine by file
    # Exported temporary file -> the volume node it came from, so messages name what the user sees.
    exported: dict[str, str] = field(default_factory=dict)

    def user_message(self, message: str) -> str:
        """*message* with the temporary files of an exported exam replaced by the volumes' names."""
        for path, name in self.exported.items():
            message = message.replace(path, f"volume '{name}'")
        return message

    def cleanup(self) -> None:
        """Remove the temporary exam and result files (the process must have ended)."""
        shutil.rmtree(self.workdir, ignore_errors=True)


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
                **engine_options):
        """Run the engine in this process and put its result into the scene.

        Returns ``(outputs, result)``; ``outputs`` reuses the given nodes.
        """
        from ..engine.pipeline import segment_exam  # heavy imports only when a run starts

        exam = exam_from_phases(phases, case_id or safe_case_id(phases[0].name), times_min)
        result = segment_exam(exam, model=model, device=device, threshold=threshold, progress=progress,
                              cancel=cancel, **engine_options)
        return self.import_result(result, phases[0].node, outputs, exam), result

    def compare_with_earlier_visit(self, earlier: Sequence[Phase], current: Sequence[Phase], **options):
        """Follow-up (issue 31): *earlier* is the baseline, *current* the later visit; returns
        ``(FollowupNodes, FollowupResult)`` (:class:`~.followup_view.FollowupViewLogic`, which takes the options)."""
        from .followup_view import FollowupViewLogic

        return FollowupViewLogic(self.ctx).compare([earlier, current], **options)

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
                         workdir: str | os.PathLike | None = None, extra: Sequence[str] = (),
                         registered_phases: bool = False) -> "BackgroundRun":
        """Start the engine CLI on the exam in the background.

        Phases loaded from image files the engine reads, and unchanged since, are handed to it by
        path (nothing is written); otherwise the exam is exported to a temporary folder. Poll
        ``run.process`` from a timer; call :meth:`finish_background` when it has ended.
        ``registered_phases`` asks the engine for the motion-corrected phases too (one more full
        copy of the exam written and read: off by default), loaded as a Sequence.
        """
        case_id = case_id or safe_case_id(phases[0].name)
        files = source_files(phases)
        exam = None
        if files is None:
            exam = exam_from_phases(phases, case_id, times_min)
        elif not MIN_PHASES <= len(phases) <= MAX_PHASES:
            exam_from_phases(phases, case_id, times_min)  # raises the readable count error
        work = Path(tempfile.mkdtemp(prefix="BreastTumorSeg-", dir=workdir))
        try:
            out_dir = work / "result"
            flags = ["--reading-images"] + ([] if register else ["--no-register"]) + list(extra)
            if registered_phases and register:
                flags.append("--registered-phases")
            if exam is not None:
                inputs = self.export_exam(exam, work / "exam")
            else:
                inputs = files
                flags += ["--case-id", case_id]
                times = list(times_min) if times_min is not None else [ph.time_min for ph in phases]
                if all(t is not None for t in times):
                    flags += ["--times", ",".join(f"{float(t):.6g}" for t in times)]
            cmd = engine_command(inputs, out_dir, model, device, threshold, python, flags)
            process = EngineProcess(cmd, env=engine_environment(), cwd=str(work)).start()
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        exported = {} if exam is None else {
            str(work / "exam" / f"{exam.case_id}_{i:04d}.nrrd"): ph.name for i, ph in enumerate(phases)}
        return BackgroundRun(process, work, out_dir, case_id, phases[0].node, exam, exported)

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
                raise EngineFailed(run.user_message(run.process.error_message()))
            if state.files is None:
                raise EngineFailed("the segmentation engine ended without reporting its results "
                                   f"(last output: {(run.process.lines or ['none'])[-1][:200]}). Fix: run it again; "
                                   "if it persists, report the Python console's log")
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
        from ..io.files import read_image
        from ..engine.pipeline import output_names

        folder = Path(folder)
        names = output_names(case_id, reading_images=True, registered_phases=True)
        paths = {key: Path((files or {}).get(key) or folder / name) for key, name in names.items()}
        label = read_image(paths["label"], "segmentation")
        prob = read_image(paths["probability"], "probability map")
        try:
            summary = json.loads(paths["summary"].read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the engine's summary ({exc})", paths["summary"]) from None
        optional = {key: read_image(paths[key], key) if paths[key].is_file() else None
                    for key in ("subtraction", "breast_mask")}
        self.last_warnings = list(engine_warnings) + result_warnings(summary)
        registered = paths["registered_phases"]
        if registered.is_file():
            outputs = outputs or OutputNodes()
            times = (summary.get("settings") or {}).get("times_min")
            outputs.registered_phases = self._phase_sequence(sitk.ReadImage(str(registered)), times,
                                                             reference_node, outputs.registered_phases)
        return self._fill(label, prob, summary.get("lesions", []), summary.get("model_id", ""),
                          reference_node, outputs, exam, optional["subtraction"], optional["breast_mask"],
                          (summary.get("settings") or {}).get("postprocess"))

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
        if not 0.0 < float(threshold) <= 1.0:
            raise InputError(f"threshold {threshold} is outside (0, 1]", "threshold", "pick a value in (0, 1]")
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
        table = outputs.lesion_table.GetTable()
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
    def _kinetic_exam(self, phases: Sequence[Phase], times_min=None):
        """(exam, kinetic maps) of the phases, cached per phase nodes and their modification times
        (the maps cost a pass over the whole exam; a lesion click should not repeat it)."""
        from ..kinetics.maps import compute_kinetic_maps

        key = (tuple((ph.node.GetID(), ph.node.GetMTime()) for ph in phases),
               None if times_min is None else tuple(times_min))
        cached = getattr(self, "_kinetics_cache", None)
        if cached is None or cached[0] != key:
            exam = exam_from_phases(phases, safe_case_id(phases[0].name), times_min)
            cached = (key, exam, compute_kinetic_maps(exam))
            self._kinetics_cache = cached
        return cached[1], cached[2]

    def _lesion_components(self, outputs: OutputNodes, reference: sitk.Image) -> sitk.Image:
        """Connected components of segment "Tumor" labelled as the lesion table is (1 = largest)."""
        mask = bridge.segment_to_label(self.ctx, outputs.segmentation, bridge.TUMOR_SEGMENT_ID, reference)
        return sitk.RelabelComponent(sitk.ConnectedComponent(mask, True), sortByObjectSize=True)

    def lesion_curve(self, phases: Sequence[Phase], outputs: OutputNodes, row: int, times_min=None,
                     chart=None):
        """Signal-time curve of the lesion in *row* of the lesion table against its surrounding
        tissue (mean percent enhancement per phase, from :mod:`..kinetics.plots`), as a plot chart
        node (reused when given) over a table node. Returns ``(chart, curve)``.

        Curves are measured on the phases as they are in the scene (not motion-corrected)."""
        from ..kinetics.plots import signal_time_curves

        exam, maps = self._kinetic_exam(phases, times_min)
        label = int(outputs.lesion_table.GetTable().GetColumnByName("Lesion").GetValue(row))
        components = self._lesion_components(outputs, exam.reference)
        one = sitk.Cast(components == label, sitk.sitkUInt8)
        curve = signal_time_curves(exam, one, maps=maps)[1]
        base = outputs.segmentation.GetName()
        rows = [[t, le, bg] for t, le, bg in zip(curve.times_min, curve.lesion_pe_mean, curve.background_pe_mean)]
        table = None if chart is None else chart.GetNthPlotSeriesNode(0).GetTableNode() \
            if chart.GetNumberOfPlotSeriesNodes() else None
        table = bridge.fill_table(self.ctx, ("Time (min)", f"Lesion {label} PE (%)", "Surrounding tissue PE (%)"),
                                  rows, table, f"{base} lesion curve")
        if chart is None:
            chart = self.ctx.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{base} lesion curve")
        if chart.GetNumberOfPlotSeriesNodes() == 0:
            for column, colour in ((1, (0.9, 0.2, 0.15)), (2, (0.4, 0.4, 0.4))):
                series = self.ctx.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", table.GetTable().GetColumnName(column))
                series.SetAndObserveTableNodeID(table.GetID())
                series.SetXColumnName("Time (min)")
                series.SetYColumnName(table.GetTable().GetColumnName(column))
                series.SetPlotType(series.PlotTypeScatter)
                series.SetColor(*colour)
                chart.AddAndObservePlotSeriesNodeID(series.GetID())
        else:
            chart.GetNthPlotSeriesNode(0).SetYColumnName(table.GetTable().GetColumnName(1))
            chart.GetNthPlotSeriesNode(0).SetName(table.GetTable().GetColumnName(1))
        kinetics = curve.kinetics or {}
        chart.SetTitle(f"Lesion {label}: {kinetics.get('curve_type', 'curve')}")
        chart.SetXAxisTitle("Time after the pre-contrast phase (min)")
        chart.SetYAxisTitle("Percent enhancement (%)")
        return chart, curve

    def ser_overlay(self, phases: Sequence[Phase], outputs: OutputNodes, times_min=None, node=None):
        """SER bands inside segment "Tumor" (1 persistent-like, 2 plateau-like, 3 washout-like, as the
        ``kinetics`` command writes them) as a label map node with its colour table, for the slice
        views' label layer."""
        from ..kinetics.plots import BAND_COLOURS, ser_band_image

        exam, maps = self._kinetic_exam(phases, times_min)
        mask = bridge.segment_to_label(self.ctx, outputs.segmentation, bridge.TUMOR_SEGMENT_ID, exam.reference)
        bands = ser_band_image(maps, mask)
        base = outputs.segmentation.GetName()
        if node is None:
            node = self.ctx.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{base} SER bands")
        bridge.image_to_volume_node(self.ctx, bands, node.GetName(), node)
        colors = self.ctx.scene.GetFirstNodeByName("BreastTumorSeg SER bands")
        if colors is None:
            colors = self.ctx.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "BreastTumorSeg SER bands")
            colors.SetTypeToUser()
            colors.SetNumberOfColors(4)
            colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
            for i, (name, rgb) in enumerate(zip(("persistent-like", "plateau-like", "washout-like"), BAND_COLOURS), 1):
                colors.SetColor(i, f"SER {name}", *(c / 255.0 for c in rgb), 1.0)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
        return node

    def grow_from_point(self, phases: Sequence[Phase], outputs: OutputNodes, ras, times_min=None) -> dict:
        """Grow one lesion from a point (RAS mm, e.g. a markup the reader placed on a missed lesion)
        with the seeded FTV growth the CLI has (``--model ftv --seed-ras``), add it to segment
        "Tumor" and measure the lesion table again. Returns the growth's summary."""
        from ..kinetics.seeded import ras_to_lps, segment_from_seed

        exam, maps = self._kinetic_exam(phases, times_min)
        grown = segment_from_seed(exam, ras_to_lps(ras), maps=maps)
        current = bridge.segment_to_label(self.ctx, outputs.segmentation, bridge.TUMOR_SEGMENT_ID, exam.reference)
        union = sitk.Or(sitk.Cast(current > 0, sitk.sitkUInt8), sitk.Cast(grown.mask > 0, sitk.sitkUInt8))
        seg = outputs.segmentation
        segment = seg.GetSegmentation().GetSegment(bridge.TUMOR_SEGMENT_ID)
        terminology = segment.GetTerminology() if segment is not None else None
        bridge.label_to_segmentation(self.ctx, union, seg, reference_node=phases[0].node,
                                     terminology=terminology or None)
        self.lesions_from_segmentation(outputs)
        return grown.summary()

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
    if card.get("license"):  # registered nnU-Net / MONAI models (models add) carry their weights' licence
        parts.append(f"<i>Licence:</i> {escape(str(card['license']))}")
    threshold = default_threshold(card)
    if threshold is not None:
        parts.append(f"<i>Default threshold:</i> {threshold:.2f}")
    return "<br>".join(parts)

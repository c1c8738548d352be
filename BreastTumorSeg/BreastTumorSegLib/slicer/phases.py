"""The exam as the panel sees it: MRML volume nodes ordered and timed as DCE phases.

:func:`guess_phases` orders scalar volume nodes (pre-contrast first) from node attributes, DICOM
times, MAMA-MIA names or a name saying "pre"; :func:`phases_from_sequence` and
:func:`phases_from_multivolume` read a Sequence or a MultiVolume node. :func:`exam_from_phases`
turns confirmed phases into a :class:`DCEExam`; :func:`source_files` says when the engine can read
the phases' files as they are (nothing exported).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import slicer

from . import mrml_bridge as bridge
from ..core.errors import InputError
from ..core.exam import DCEExam, MAX_PHASES, MIN_PHASES, assemble_exam, check_signal, check_spacing

# Node attribute a script or loader may set to give a phase's acquisition time explicitly.
TIME_ATTRIBUTE = "BreastTumorSeg.AcquisitionTimeMin"
# DICOM tags tried, in order, for a phase's acquisition time of day (all in the TM format).
DICOM_TIME_TAGS = (("0008,0032", "AcquisitionTime"), ("0008,0033", "ContentTime"), ("0008,0031", "SeriesTime"))

DicomValue = Callable[[str, str], str]  # (SOP instance UID, "gggg,eeee") -> value or ""


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
    from ..io.dicom.times import parse_tm

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
        from ..io.dicom.times import unwrap_midnight

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
    from ..io.dicom.times import order_by_time

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
    seen: dict[int, int] = {}
    for i, ph in enumerate(phases):  # the pre-contrast given again as a post-contrast phase reads as no enhancement
        j = seen.setdefault(id(ph.node), i)
        if j != i:
            raise InputError(f"the same volume is selected as phase {j} and phase {i}", ph.name,
                             "select each phase's own volume once, the pre-contrast first")
    times = list(times_min) if times_min is not None else [ph.time_min for ph in phases]
    known = None if any(t is None for t in times) else [float(t) for t in times]
    images = [bridge.volume_node_to_image(ph.node) for ph in phases]
    for i, (ph, img) in enumerate(zip(phases, images)):  # as the file readers check each header
        check_spacing(img.GetSpacing(), f"phase {i}", ph.name)
    return assemble_exam(images, known, case_id, [ph.name for ph in phases])


def exam_to_run(phases: Sequence[Phase], case_id: str = "case",
                times_min: Sequence[float | None] | None = None) -> DCEExam:
    """:func:`exam_from_phases` for a run (segment, follow-up, kinetics, click refinement, a
    background run): also refuses a phase without signal (every voxel equal, e.g. all zero), as
    every file loader does (:func:`~..core.exam.check_signal`)."""
    return check_signal(exam_from_phases(phases, case_id, times_min))


def source_files(phases: Sequence[Phase]) -> list[Path] | None:
    """The image files the phases were loaded from, when the engine can read them as they are.

    Every phase must have a storage node naming one existing NIfTI/NRRD/MetaImage file, must be
    unchanged since it was read, and must not sit under a transform; otherwise ``None`` (the
    exam is exported instead). DICOM series (a list of files) are exported too.
    """
    from ..io.images import IMAGE_SUFFIXES

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


def first_case_id(phases: Sequence[Phase]) -> str:
    """The case id of a run: the first phase's name made file-name-safe ("case" when no phase is
    selected: the exam's own check then says that the phases are missing)."""
    return safe_case_id(phases[0].name) if phases else "case"


def safe_case_id(name: str) -> str:
    """A file-name-safe case id from a node name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "case"
    return _INDEX_RE.sub("", cleaned) or "case"

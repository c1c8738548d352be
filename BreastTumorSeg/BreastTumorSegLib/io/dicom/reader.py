"""Reading DCE-MRI exams from DICOM folders, whatever the vendor layout.

    plan = find_dce("exam_folder")          # what would be loaded, and why (no pixels read)
    print(describe_plan(plan))
    exam = load_dicom_exam("exam_folder")   # a DCEExam, phase 0 = pre-contrast

Layouts handled (see :mod:`.phases` for the rules):

* one series per phase (typical of Siemens; times from AcquisitionTime);
* one series holding every phase, split by TemporalPositionIdentifier, TriggerTime,
  AcquisitionTime/ContentTime or AcquisitionNumber (typical of GE);
* enhanced multi-frame MR with per-frame TemporalPositionIndex / FrameAcquisitionDateTime
  (typical of Philips).

Pixels: stored values (integers, or the float/double float pixel data some converters write) are
read with numpy straight from the file offsets found while parsing the headers (uncompressed
transfer syntaxes), or decoded by pydicom, then SimpleITK/GDCM
(compressed ones); RescaleSlope/RescaleIntercept are applied per frame. The returned exam
carries ``metadata["dicom"]`` (a JSON-safe summary: layout, time source, series roles, no patient
identifiers) and ``metadata["dicom_source"]`` (a :class:`DicomSource` that
:func:`BreastTumorSegLib.io.dicom.seg.write_dicom_seg` needs; it holds file paths and UIDs and is not
meant for JSON).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...core.interrupts import joined_pool
from .headers import Frame, set_missing_transfer_syntax
from .phases import DCEPlan, plan_dce
from .scan import is_dicom_file, list_files, scan_folder
from .stacks import DCE, Stack, classify, make_stacks, orientation_name
from .volumes import Volume, estimated_volumes
from ...core.errors import InputError
from ...core.exam import DCEExam, assemble_exam

__all__ = ["folder_has_dicom", "find_dce", "load_dicom_exam", "describe_plan", "describe_scan", "DicomSource",
           "DCEPlan", "scan_folder", "plan_dce"]


@dataclass(frozen=True)
class DicomSource:
    """Where each phase of a DICOM-loaded exam came from: what a DICOM SEG must reference.

    ``phase_files[i]`` lists (file path, frame index) of phase *i*, sorted along the slice normal
    (the exam's z axis). Holds paths and UIDs; never write it into a JSON summary.
    """

    folder: str
    phase_files: tuple[tuple[tuple[str, int], ...], ...]
    study_uid: str
    series_uids: tuple[str, ...]
    frame_of_reference_uid: str

    @property
    def reference_files(self) -> tuple[tuple[str, int], ...]:
        """The pre-contrast phase's (file, frame): the grid every result lives on."""
        return self.phase_files[0]

    def __repr__(self) -> str:  # keep paths out of casual logs
        return f"DicomSource({len(self.phase_files)} phases, {sum(map(len, self.phase_files))} frames)"


# ------------------------------------------------------------------------------------ detection
def folder_has_dicom(folder: str | os.PathLike, max_files: int = 2000) -> bool:
    """True when a file below *folder* starts with the DICOM preamble (looks at up to *max_files*)."""
    for i, path in enumerate(list_files(Path(folder))):
        if i >= max_files:
            break
        if is_dicom_file(path):
            return True
    return False


def find_dce(folder: str | os.PathLike | Sequence[str | os.PathLike], series: Sequence[int | str] | None = None,
             progress: Callable[[float, str], None] | None = None) -> DCEPlan:
    """Read the headers below *folder* (or of the files listed) and decide the DCE phases.

    No pixel data is read.
    """
    scan = scan_folder(folder, progress=progress)
    return plan_dce(scan, series)


# ------------------------------------------------------------------------------------ pixels
def _decode_file(path: str) -> np.ndarray:
    """All frames of a compressed file as stored values, shape (frames, rows, cols).

    pydicom decodes what its installed plugins can (RLE always; JPEG family with pylibjpeg or
    GDCM's Python bindings); SimpleITK's GDCM reader is the fallback for the rest.
    """
    import pydicom

    ds = None
    try:
        ds = pydicom.dcmread(path, force=True)  # force: files without the preamble (see scan.is_dicom_file)
        set_missing_transfer_syntax(ds)
        arr = np.asarray(ds.pixel_array)
    except Exception as first_error:
        arr = _decode_with_gdcm(path, ds, first_error)
    return arr.reshape((-1,) + arr.shape[-2:])


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hold back what native decoders print straight to file descriptor 2 (GDCM's OpenJPEG says
    "Expected a SOC marker" per failed frame): a refusal must stay one line. A lock keeps two
    threads from swapping the descriptor under each other; without a usable descriptor 2, no-op."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        try:
            with open(os.devnull, "wb") as sink:
                os.dup2(sink.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# Transfer syntaxes younger than pydicom 2.4 (what Slicer ships), whose UID it cannot name.
_NEWER_SYNTAXES = {"1.2.840.10008.1.2.4.201": "High-Throughput JPEG 2000 Image Compression (Lossless Only)",
                   "1.2.840.10008.1.2.4.202": "High-Throughput JPEG 2000 with RPCL Options Image Compression "
                                              "(Lossless Only)",
                   "1.2.840.10008.1.2.4.203": "High-Throughput JPEG 2000 Image Compression",
                   # JPEG XL (2024): pydicom 3.0 cannot name these either, and no pydicom plugin or GDCM decodes them.
                   "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
                   "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
                   "1.2.840.10008.1.2.4.112": "JPEG XL"}
# What a pip install cannot fix: no pydicom plugin or GDCM decodes these (JPEG XL; video syntaxes).
_NO_PYTHON_DECODER = ("1.2.840.10008.1.2.4.11", "1.2.840.10008.1.2.4.10")
_INSTALL_FIX = ("install the decoders (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pyjpegls) or "
                "decompress the files first (gdcmconv --raw IN OUT, or dcmdjpeg for JPEG)")
_RESEND_FIX = ("no Python decoder reads this compression: have the PACS or scanner send the series uncompressed "
               "(Explicit VR Little Endian), or decompress it with the vendor's tool")


def _decode_with_gdcm(path: str, ds, first_error: Exception) -> np.ndarray:
    try:
        reader = sitk.ImageFileReader()
        reader.SetImageIO("GDCMImageIO")
        reader.SetFileName(path)
        with _quiet_native_stderr():
            arr = sitk.GetArrayFromImage(reader.Execute()).astype(np.float64)
    except RuntimeError:
        meta = getattr(ds, "file_meta", None)
        syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
        kind = f"{_NEWER_SYNTAXES.get(syntax, syntax.name)} ({syntax})" if syntax else "an unknown transfer syntax"
        hopeless = bool(syntax) and str(syntax).startswith(_NO_PYTHON_DECODER)
        raise InputError(f"neither pydicom's installed decoders nor GDCM can decode its pixel data, compressed as "
                         f"{kind}", path, _RESEND_FIX if hopeless else _INSTALL_FIX) from None
    # GDCM applies the rescale itself; undo it so that every path returns stored values.
    slope = float(getattr(ds, "RescaleSlope", 1) or 1) if ds is not None else 1.0
    inter = float(getattr(ds, "RescaleIntercept", 0) or 0) if ds is not None else 0.0
    return np.rint((arr - inter) / slope)


def _read_native(frame: Frame) -> np.ndarray:
    loc = frame.pixel
    count = frame.rows * frame.cols
    try:
        raw = np.fromfile(frame.path, dtype=np.dtype(loc.dtype), count=count, offset=loc.offset)
    except OSError as exc:
        raise InputError(f"cannot read pixel data ({exc})", frame.label(), "check the file is readable") from None
    if raw.size != count:
        raise InputError("is truncated: the file ends inside its pixel data", frame.label(),
                         "re-send the series from the scanner or PACS")
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
        raise InputError(f"holds {int(np.count_nonzero(~np.isfinite(raw)))} NaN or infinite pixel value(s)",
                         frame.label(), "re-export the series; NaN/Inf are not valid MR intensities")
    bits_alloc = raw.dtype.itemsize * 8
    if loc.signed and loc.bits_stored < bits_alloc:
        shift = bits_alloc - loc.bits_stored  # sign-extend values stored in fewer bits
        raw = (raw.astype(raw.dtype.newbyteorder("=")) << shift) >> shift
    return raw.reshape(frame.rows, frame.cols)


def read_volume(volume: Volume, workers: int = 4) -> np.ndarray:
    """Rescaled float32 voxels of one phase, shape (slices, rows, cols), slices along the normal."""
    frames = volume.frames
    out = np.empty((len(frames), frames[0].rows, frames[0].cols), dtype=np.float32)
    native = [k for k, f in enumerate(frames) if f.pixel is not None and f.pixel.offset is not None]
    coded = [k for k, f in enumerate(frames) if f.pixel is not None and f.pixel.offset is None]
    missing = [k for k, f in enumerate(frames) if f.pixel is None]
    if missing:
        raise InputError("has no readable pixel data", frames[missing[0]].label(),
                         "re-send the series from the scanner or PACS")

    def fill(k: int, stored: np.ndarray) -> None:
        f = frames[k]
        np.multiply(stored, np.float32(f.slope), out=out[k], dtype=np.float32, casting="unsafe")
        if f.intercept:
            out[k] += np.float32(f.intercept)

    def native_one(k: int) -> None:
        fill(k, _read_native(frames[k]))

    if len(native) > 8 and workers > 1:
        with joined_pool(workers, "dicom-pixels") as pool:
            list(pool.map(native_one, native))
    else:
        for k in native:
            native_one(k)
    if coded:
        by_file: dict[str, list[int]] = defaultdict(list)
        for k in coded:
            by_file[frames[k].path].append(k)
        for path, ks in by_file.items():
            decoded = _decode_file(path)
            for k in ks:
                fi = frames[k].frame_index
                if fi >= decoded.shape[0] or decoded.shape[1:] != (frames[k].rows, frames[k].cols):
                    raise InputError(f"decoded pixel data has shape {decoded.shape}, frame {fi + 1} of "
                                     f"{frames[k].rows}x{frames[k].cols} expected", path,
                                     "re-export the series uncompressed")
                fill(k, decoded[fi])
    return out


def volume_image(volume: Volume, workers: int = 4) -> sitk.Image:
    """One phase as a float32 SimpleITK image with the DICOM geometry."""
    arr = read_volume(volume, workers)
    img = sitk.GetImageFromArray(arr)
    g = volume.geometry
    img.SetSpacing(g.spacing)
    img.SetOrigin(g.origin)
    img.SetDirection(g.direction)
    return img


# ------------------------------------------------------------------------------------ loading
_CASE_RE = re.compile(r"[^A-Za-z0-9._-]+")


def _default_case_id(folder: Path) -> str:
    name = _CASE_RE.sub("_", folder.resolve().name).strip("._") or "dicom_exam"
    return name


def load_dicom_exam(folder: str | os.PathLike | Sequence[str | os.PathLike],
                    times_min: Sequence[float] | None = None, case_id: str | None = None, *,
                    series: Sequence[int | str] | None = None,
                    progress: Callable[[float, str], None] | None = None, workers: int = 2) -> DCEExam:
    """Load the DCE exam below *folder* (searched recursively), or from a list of DICOM files.

    Parameters
    ----------
    times_min:
        Phase times in minutes; overrides the times read from the headers.
    case_id:
        Name for outputs; default the folder's name (never a DICOM patient attribute).
    series:
        Series numbers or SeriesInstanceUIDs to use as the phases, bypassing the automatic
        choice (e.g. to include a series the reader ignores).
    progress:
        ``progress(fraction, message)`` while headers and pixels are read.
    """
    plan = find_dce(folder, series, progress=(lambda f, m: progress(0.4 * f, m)) if progress else None)
    phases = []
    for i, vol in enumerate(plan.phases):
        if progress:
            progress(0.4 + 0.6 * i / len(plan.phases), f"reading pixels of phase {i}")
        phases.append(volume_image(vol, workers))
    times = plan.times_min
    if times_min is not None:
        times = [float(t) for t in times_min]
        if len(times) != len(phases):
            raise InputError(f"{len(times)} time(s) given for the {len(phases)} DCE phases found", plan.folder,
                             "give one time per phase (see `breasttumorseg dicom-list` for the phases found)")
    summary = plan.summary()
    summary["times_given_by_user"] = times_min is not None
    meta = {
        "dicom": summary,
        "dicom_source": _source(plan),
        "times_source": "user" if times_min is not None else plan.time_source,
    }
    if progress:
        progress(1.0, "DICOM exam loaded")
    return assemble_exam(phases, times, case_id or _default_case_id(plan.folder), [v.name() for v in plan.phases],
                         meta)


def _source(plan: DCEPlan) -> DicomSource:
    first = plan.phases[0].frames[0]
    return DicomSource(
        folder=str(plan.folder),
        phase_files=tuple(tuple((f.path, f.frame_index) for f in v.frames) for v in plan.phases),
        study_uid=first.study_uid,
        series_uids=tuple(dict.fromkeys(v.stack.series_uid for v in plan.phases)),
        frame_of_reference_uid=first.for_uid,
    )


# ------------------------------------------------------------------------------------ reporting
def _files_line(scan) -> str:
    return (f"files: {scan.n_files} ({scan.n_files - scan.not_dicom} DICOM"
            + (f", {len(scan.non_image)} non-image objects" if scan.non_image else "")
            + (f", {scan.duplicates} duplicate instances" if scan.duplicates else "") + ")")


def series_table(stacks: Sequence[Stack]) -> list[str]:
    """One line per series (or per stack of a series holding several): number, description, role."""
    lines = [f"{'series':>7}  {'description':<30} {'mod':<3} {'orientation':<22} {'matrix':>11} "
             f"{'frames':>6}  role"]
    for s in stacks:
        f = s.first
        num = "?" if s.series_number is None else str(s.series_number)
        desc = (s.series_description + s.sub_label)[:30]
        per_volume = len(s.frames) // max(s.n_volumes, 1)
        matrix = f"{f.cols}x{f.rows}x{per_volume}" if f.rows else "-"
        role = s.role if s.role == DCE else f"ignored: {s.role}"
        lines.append(f"{num:>7}  {desc:<30} {f.modality[:3]:<3} {orientation_name(f)[:22]:<22} {matrix:>11} "
                     f"{len(s.frames):>6}  {role} ({s.reason})")
    return lines


def describe_scan(scan) -> str:
    """The series table of a folder whose DCE could not be decided (for error reports)."""
    stacks = make_stacks(scan.frames)
    for s in stacks:
        s.role, s.reason = classify(s)
        s.n_volumes = estimated_volumes(s)
    return "\n".join([f"DICOM folder: {scan.folder}", _files_line(scan), ""] + series_table(stacks))


def describe_plan(plan: DCEPlan) -> str:
    """A table of the series found and the phase order, for users to check before running."""
    lines = [f"DICOM folder: {plan.folder}"]
    if plan.scan is not None:
        lines.append(_files_line(plan.scan))
    lines.append("")
    lines.extend(series_table(plan.stacks))
    lines.append("")
    lines.append(f"DCE: {len(plan.phases)} phases, {plan.layout}; times from {plan.time_source}")
    head = f"{'phase':>5}  {'role':<14} {'min':>7}"
    if plan.times_after_injection_min is not None:
        head += f" {'min after inj.':>14}"
    lines.append(head + "  source")
    for i, v in enumerate(plan.phases):
        t = "?" if plan.times_min is None else f"{plan.times_min[i]:.2f}"
        row = f"{i:>5}  {'pre-contrast' if i == 0 else 'post-contrast':<14} {t:>7}"
        if plan.times_after_injection_min is not None:
            row += f" {plan.times_after_injection_min[i]:>14.2f}"
        g = v.geometry
        row += f"  {v.name()}, {g.size[0]}x{g.size[1]}x{g.size[2]}"
        lines.append(row)
    g = plan.phases[0].geometry
    lines.append(f"grid: {g.size[0]}x{g.size[1]}x{g.size[2]} voxels of {g.spacing[0]:.4g} x {g.spacing[1]:.4g} x "
                 f"{g.spacing[2]:.4g} mm, {orientation_name(plan.phases[0].frames[0])}")
    lines.append(f"intensities: {plan.intensity_scale}")
    for w in plan.warnings:
        lines.append(f"warning: {w}")
    for n in plan.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)

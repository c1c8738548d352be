"""DICOM headers to per-frame records: the first step of reading a DICOM DCE exam.

Every 2D image in a folder becomes one :class:`Frame`, whether it is a classic single-frame
instance (MR Image Storage, the GE and Siemens way) or one frame of an enhanced multi-frame
instance (Enhanced MR Image Storage, the Philips way). Later steps (:mod:`.phases`) only
see frames, so the three vendor layouts share one code path.

Headers are read with pydicom using ``defer_size``: large values (the pixel data, vendor
private blobs) are skipped, not read, and pydicom records where in the file they start. For
uncompressed transfer syntaxes that offset is all :mod:`.reader` needs to read the pixels in
bulk with numpy afterwards, so every file is parsed once.

Nothing here keeps patient identifiers: a frame holds geometry, timing and sequence facts,
UIDs (needed to group and to reference the source in a DICOM SEG) and its file path.
"""
from __future__ import annotations

import datetime as _dt
import inspect
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag

from ...core.interrupts import joined_pool
from ...core.errors import InputError

# Values larger than this many bytes are skipped while parsing (pixel data, private blobs).
DEFER_BYTES = 2048
# The only top-level attributes read; the parser skips every other element (private ones included).
HEADER_KEYWORDS = (
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "StudyDate", "SeriesDate",
    "AcquisitionDate", "ContentDate", "AcquisitionDateTime", "AcquisitionTime", "ContentTime", "Modality",
    "Manufacturer", "SeriesDescription", "ContrastBolusAgent", "ScanningSequence", "SequenceVariant", "ScanOptions",
    "SequenceName", "RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "TriggerTime",
    "ContrastBolusStartTime", "DiffusionBValue", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber",
    "AcquisitionNumber", "InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID",
    "TemporalPositionIdentifier", "NumberOfTemporalPositions", "SamplesPerPixel", "NumberOfFrames", "Rows",
    "Columns", "PixelSpacing", "BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleIntercept",
    "RescaleSlope", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "FloatPixelData",
    "DoubleFloatPixelData", "PixelData",
)

UNCOMPRESSED_SYNTAXES = {
    "1.2.840.10008.1.2": "<",  # implicit VR little endian
    "1.2.840.10008.1.2.1": "<",  # explicit VR little endian
    "1.2.840.10008.1.2.2": ">",  # explicit VR big endian (retired, still met in old archives)
}
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
MR_IMAGE = "1.2.840.10008.5.1.4"
LEGACY_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.4"


@dataclass(frozen=True)
class PixelLocation:
    """Where one frame's stored values are, for uncompressed files (``offset`` is None otherwise)."""

    transfer_syntax: str
    offset: int | None  # byte offset of this frame's first pixel in the file
    nbytes: int  # bytes of one frame
    dtype: str  # numpy dtype string of the stored values, e.g. "<u2"
    bits_stored: int
    signed: bool


@dataclass
class Frame:
    """One 2D image: geometry, timing, sequence facts and where its pixels are.

    Times are seconds; ``acq_dt`` and ``content_dt`` are absolute (seconds since 0001-01-01 on
    the acquisition date, so differences are exact) and ``trigger_ms`` is the scanner's offset of
    the temporal position in milliseconds.
    """

    path: str
    frame_index: int  # 0-based frame number inside the file (0 for single-frame files)
    sop_uid: str
    sop_class: str
    series_uid: str
    study_uid: str
    for_uid: str
    series_number: int | None
    series_description: str
    modality: str
    image_type: tuple[str, ...]
    manufacturer: str
    rows: int
    cols: int
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) in mm
    iop: tuple[float, ...] | None  # row cosine (3) then column cosine (3), LPS
    ipp: tuple[float, float, float] | None  # centre of the first pixel, LPS mm
    slope: float = 1.0
    intercept: float = 0.0
    pixel: PixelLocation | None = None
    samples_per_pixel: int = 1
    temporal_index: int | None = None  # TemporalPositionIdentifier / TemporalPositionIndex
    n_temporal: int | None = None  # NumberOfTemporalPositions
    trigger_ms: float | None = None
    acq_number: int | None = None
    acq_dt: float | None = None
    content_dt: float | None = None
    instance_number: int | None = None
    stack_id: str | None = None
    sequence: tuple = ()  # (TR, TE, TI, flip, scan options, sequence name, scanning sequence, variant)
    diffusion: bool = False
    bolus_start: float | None = None  # ContrastBolusStartTime on the acquisition date (absolute s)
    contrast_agent: str = ""
    problem: str | None = None  # why the frame cannot be used, if it cannot

    @property
    def is_multiframe(self) -> bool:
        return self.sop_class in (ENHANCED_MR, LEGACY_ENHANCED_MR) or self.frame_index > 0

    def label(self) -> str:
        """Short description for messages: file, and frame number for multi-frame files."""
        return f"{self.path} (frame {self.frame_index + 1})" if self.is_multiframe else self.path


@dataclass
class ScanResult:
    """Every frame found in a folder, plus what was skipped and why."""

    folder: Path
    frames: list[Frame]
    n_files: int  # files looked at
    not_dicom: int  # files without the DICM preamble
    non_image: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    duplicates: int = 0  # instances met more than once (same SOP instance UID and frame)


# --------------------------------------------------------------------------------- values
_TAG_OF: dict[str, int] = {}
_NUMERIC_VR = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
# Text VRs whose values may use the dataset's character set: decoded by pydicom. The others are
# ASCII by definition and decoded here, which is several times faster than pydicom's conversion.
_ENCODED_VR = {"LO", "SH", "ST", "LT", "UT", "PN", "UC"}


def _stored(ds: Dataset, tag: int):
    """The element of *tag* as stored (a ``RawDataElement`` until converted; a deferred value not
    read), or None. pydicom 3 gives it with ``get_item(tag, keep_deferred=True)``; pydicom 2.4 (the
    one Slicer ships) has no ``keep_deferred`` and reads deferred values in ``get_item``, so its
    element mapping is read directly there (the same objects)."""
    if _KEEP_DEFERRED:
        return ds.get_item(tag, keep_deferred=True)
    return ds._dict.get(BaseTag(tag))


_KEEP_DEFERRED = "keep_deferred" in inspect.signature(Dataset.get_item).parameters


def _tag(keyword: str) -> int:
    tag = _TAG_OF.get(keyword)
    if tag is None:
        tag = _TAG_OF[keyword] = tag_for_keyword(keyword)
    return tag


def _decode_raw(raw: bytes, vr: str, little_endian: bool) -> Any:
    code = _NUMERIC_VR.get(vr)
    if code is not None:
        n = len(raw) // struct.calcsize(code)
        vals = struct.unpack(("<" if little_endian else ">") + code * n, raw[: n * struct.calcsize(code)])
        return vals[0] if n == 1 else list(vals)
    text = raw.decode("ascii", errors="replace").rstrip("\x00 ").strip()
    if "\\" in text:
        return [v.strip() for v in text.split("\\")]
    return text


_SIMPLE_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO 2022 IR 6": "latin-1", "ISO_IR 100": "latin-1",
                    "ISO_IR 192": "utf-8"}


def _text_codec(ds: Dataset) -> str | None:
    """Python codec for the dataset's text when it is a single-byte Latin-1 or UTF-8 set, else None."""
    raw = _stored(ds, 0x00080005)
    if raw is None:
        return "latin-1"
    value = raw.value if not isinstance(raw, RawDataElement) else (raw.value or b"").decode("ascii", "replace")
    if not isinstance(value, str):
        value = "\\".join(value) if value else ""
    return _SIMPLE_CHARSETS.get(value.strip("\x00 ").strip())


def _first(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """The value of *keyword* in *ds*, or *default* when absent or empty (never raises).

    Plain numbers and ASCII strings are decoded straight from the raw bytes pydicom kept.
    """
    tag = _tag(keyword)
    elem = _stored(ds, tag)
    if elem is None:
        return default
    value: Any
    if isinstance(elem, RawDataElement) and elem.value is not None:
        vr = elem.VR or dictionary_VR(tag)
        codec = _text_codec(ds) if vr in _ENCODED_VR else None
        if vr == "SQ" or (vr in _ENCODED_VR and codec is None):
            value = ds[tag].value
        elif codec is not None:
            value = elem.value.decode(codec, errors="replace").rstrip("\x00 ").strip()
        else:
            value = _decode_raw(elem.value, vr, elem.is_little_endian)
    else:
        value = ds[tag].value
    if value is None or value == "" or (hasattr(value, "__len__") and not isinstance(value, (str, bytes))
                                        and len(value) == 0):
        return default
    return value


def _float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == n else None


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip().upper() for v in value.split("\\"))
    return tuple(str(v).strip().upper() for v in value)


_TM_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


def parse_tm(text: Any) -> float | None:
    """Seconds since midnight from a DICOM TM value (``HHMMSS.FFFFFF``, shorter forms, or the
    old ``HH:MM:SS`` form); None when absent or malformed."""
    if text is None:
        return None
    s = str(text).strip().replace(":", "")
    m = _TM_RE.match(s)
    if not m:
        return None
    h, mi, se, frac = m.groups()
    secs = int(h) * 3600 + int(mi or 0) * 60 + int(se or 0)
    return secs + (float("0." + frac) if frac else 0.0)


def order_by_time(times: Sequence[float]) -> tuple[list[int], list[float]]:
    """Indices that sort *times* ascending (ties keep the given order), and each time relative
    to the earliest, in that order and in the unit given."""
    order = sorted(range(len(times)), key=lambda i: times[i])
    t0 = times[order[0]]
    return order, [times[i] - t0 for i in order]


def unwrap_midnight(seconds: Sequence[float]) -> list[float]:
    """Times of day (seconds after midnight, e.g. from :func:`parse_tm`) of one session that may
    run across midnight: when they span more than 12 hours, those before noon are taken to be on
    the next day."""
    seconds = list(seconds)
    if seconds and max(seconds) - min(seconds) > 12 * 3600:
        return [s + 86400.0 if s < 12 * 3600 else s for s in seconds]
    return seconds


def parse_da(text: Any) -> int | None:
    """Day number (proleptic ordinal) of a DICOM DA value ``YYYYMMDD``; None when absent."""
    if text is None:
        return None
    s = str(text).strip().replace(".", "")
    if len(s) != 8 or not s.isdigit():
        return None
    try:
        return _dt.date(int(s[:4]), int(s[4:6]), int(s[6:8])).toordinal()
    except ValueError:
        return None


def parse_dt(text: Any) -> float | None:
    """Absolute seconds from a DICOM DT value ``YYYYMMDDHHMMSS.FFFFFF`` (time-zone offset ignored)."""
    if text is None:
        return None
    s = re.split(r"[+-]", str(text).strip(), maxsplit=1)[0]
    if len(s) < 8:
        return None
    day = parse_da(s[:8])
    if day is None:
        return None
    tm = parse_tm(s[8:]) if len(s) > 8 else 0.0
    return None if tm is None else day * 86400.0 + tm


def _date_time(day: int | None, seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return (day or 0) * 86400.0 + seconds


# --------------------------------------------------------------------------------- pixels
def _pixel_location(ds: Dataset, path: str, rows: int, cols: int,
                    n_frames: int) -> tuple[PixelLocation | None, str | None]:
    """Locate the pixel data of *ds*; returns (location, problem)."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(_first(meta, "TransferSyntaxUID", "")) if meta is not None else ""
    bits_alloc = _int(_first(ds, "BitsAllocated"))
    bits_stored = _int(_first(ds, "BitsStored")) or bits_alloc
    signed = _int(_first(ds, "PixelRepresentation", 0)) == 1
    raw = _stored(ds, 0x7FE00010)
    if raw is None:
        for other in (0x7FE00008, 0x7FE00009):  # float / double float pixel data
            if _stored(ds, other) is not None:
                return None, "holds float pixel data, which MR images do not use"
        return None, "has no pixel data"
    if bits_alloc not in (8, 16, 32):
        return None, f"has {bits_alloc} bits allocated per pixel; 8, 16 or 32 are supported"
    order = UNCOMPRESSED_SYNTAXES.get(syntax)
    kind = "i" if signed else "u"
    dtype = f"{order or '<'}{kind}{bits_alloc // 8}"
    nbytes = rows * cols * (bits_alloc // 8)
    length = getattr(raw, "length", None)
    tell = getattr(raw, "value_tell", None)
    if order is None or length in (None, 0xFFFFFFFF) or tell is None:
        # Compressed (encapsulated) or deflated: decoded later by pydicom or GDCM.
        return PixelLocation(syntax, None, nbytes, dtype, bits_stored, signed), None
    if length < nbytes * n_frames:
        return None, (f"pixel data holds {length} bytes, {nbytes * n_frames} expected for "
                      f"{n_frames} frame(s) of {rows}x{cols} at {bits_alloc} bits")
    if tell + nbytes * n_frames > os.path.getsize(path):
        return None, "is truncated: the file ends inside its pixel data"
    return PixelLocation(syntax, int(tell), nbytes, dtype, bits_stored, signed), None


# --------------------------------------------------------------------------------- frames
def _sequence_facts(ds: Dataset) -> tuple:
    """Facts that are equal for every phase of one DCE acquisition and differ between sequences."""
    return (
        _round(_float(_first(ds, "RepetitionTime")), 1),
        _round(_float(_first(ds, "EchoTime")), 2),
        _round(_float(_first(ds, "InversionTime")), 1),
        _round(_float(_first(ds, "FlipAngle")), 1),
        "\\".join(_strings(_first(ds, "ScanOptions"))),
        str(_first(ds, "SequenceName", "")).strip(),
        "\\".join(_strings(_first(ds, "ScanningSequence"))),
        "\\".join(_strings(_first(ds, "SequenceVariant"))),
    )


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


def _common_fields(ds: Dataset, path: str) -> dict:
    acq_day = parse_da(_first(ds, "AcquisitionDate")) or parse_da(_first(ds, "SeriesDate")) \
        or parse_da(_first(ds, "StudyDate"))
    bolus = parse_tm(_first(ds, "ContrastBolusStartTime"))
    return dict(
        path=path,
        sop_class=str(_first(ds, "SOPClassUID", "")),
        series_uid=str(_first(ds, "SeriesInstanceUID", "")),
        study_uid=str(_first(ds, "StudyInstanceUID", "")),
        for_uid=str(_first(ds, "FrameOfReferenceUID", "")),
        series_number=_int(_first(ds, "SeriesNumber")),
        series_description=str(_first(ds, "SeriesDescription", "")).strip(),
        modality=str(_first(ds, "Modality", "")).strip().upper(),
        image_type=_strings(_first(ds, "ImageType")),
        manufacturer=str(_first(ds, "Manufacturer", "")).strip(),
        rows=_int(_first(ds, "Rows")) or 0,
        cols=_int(_first(ds, "Columns")) or 0,
        samples_per_pixel=_int(_first(ds, "SamplesPerPixel", 1)) or 1,
        n_temporal=_int(_first(ds, "NumberOfTemporalPositions")),
        acq_number=_int(_first(ds, "AcquisitionNumber")),
        instance_number=_int(_first(ds, "InstanceNumber")),
        bolus_start=_date_time(acq_day, bolus),
        contrast_agent=str(_first(ds, "ContrastBolusAgent", "")).strip(),
    ), acq_day


def _classic_frames(ds: Dataset, path: str) -> list[Frame]:
    common, acq_day = _common_fields(ds, path)
    rows, cols = common["rows"], common["cols"]
    pixel, problem = _pixel_location(ds, path, rows, cols, 1)
    acq_dt = parse_dt(_first(ds, "AcquisitionDateTime"))
    if acq_dt is None:
        acq_dt = _date_time(acq_day, parse_tm(_first(ds, "AcquisitionTime")))
    content_day = parse_da(_first(ds, "ContentDate")) or acq_day
    diffusion = _float(_first(ds, "DiffusionBValue")) not in (None, 0.0)
    frame = Frame(
        frame_index=0,
        sop_uid=str(_first(ds, "SOPInstanceUID", "")),
        pixel_spacing=_floats(_first(ds, "PixelSpacing"), 2),
        iop=_floats(_first(ds, "ImageOrientationPatient"), 6),
        ipp=_floats(_first(ds, "ImagePositionPatient"), 3),
        slope=_float(_first(ds, "RescaleSlope")) or 1.0,
        intercept=_float(_first(ds, "RescaleIntercept")) or 0.0,
        pixel=pixel,
        temporal_index=_int(_first(ds, "TemporalPositionIdentifier")),
        trigger_ms=_float(_first(ds, "TriggerTime")),
        acq_dt=acq_dt,
        content_dt=_date_time(content_day, parse_tm(_first(ds, "ContentTime"))),
        stack_id=None,
        sequence=_sequence_facts(ds),
        diffusion=diffusion,
        problem=problem,
        **common,
    )
    return [frame]


def _item(seq_parent: Dataset | None, keyword: str) -> Dataset | None:
    """First item of sequence *keyword* in *seq_parent*, or None."""
    if seq_parent is None:
        return None
    seq = seq_parent.get(keyword, None)  # a keyword gives the value: here a pydicom Sequence
    if not seq:
        return None
    return seq[0]


def _group_value(per_frame: Dataset | None, shared: Dataset | None, group: str, keyword: str) -> Any:
    """A functional-group attribute: the per-frame value wins over the shared one."""
    for parent in (per_frame, shared):
        item = _item(parent, group)
        if item is not None:
            v = _first(item, keyword)
            if v is not None:
                return v
    return None


def _enhanced_frames(ds: Dataset, path: str) -> list[Frame]:
    common, _ = _common_fields(ds, path)
    rows, cols = common["rows"], common["cols"]
    n = _int(_first(ds, "NumberOfFrames")) or 1
    pixel, problem = _pixel_location(ds, path, rows, cols, n)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame_seq = _first(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame_seq is None or len(per_frame_seq) != n:
        found = 0 if per_frame_seq is None else len(per_frame_seq)
        raise InputError(f"enhanced multi-frame image has {n} frames but {found} per-frame functional groups",
                         path, "re-export the series from the scanner or PACS")
    base_seq = _sequence_facts(ds)
    frames = []
    for k, pf in enumerate(per_frame_seq):
        def g(group: str, keyword: str, pf: Dataset = pf) -> Any:
            return _group_value(pf, shared, group, keyword)

        content = _item(pf, "FrameContentSequence")
        tr = _float(g("MRTimingAndRelatedParametersSequence", "RepetitionTime"))
        flip = _float(g("MRTimingAndRelatedParametersSequence", "FlipAngle"))
        te = _float(g("MREchoSequence", "EffectiveEchoTime"))
        ti = _float(g("MRModifierSequence", "InversionTimes"))
        sequence = (
            _round(tr, 1) if tr is not None else base_seq[0],
            _round(te, 2) if te is not None else base_seq[1],
            _round(ti, 1) if ti is not None else base_seq[2],
            _round(flip, 1) if flip is not None else base_seq[3],
            *base_seq[4:],
        )
        frame_type = _strings(g("MRImageFrameTypeSequence", "FrameType"))
        b_value = _float(g("MRDiffusionSequence", "DiffusionBValue"))
        offset_s = _float(g("TemporalPositionSequence", "TemporalPositionTimeOffset"))
        trigger = _float(g("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))
        frame_loc = None
        if pixel is not None and pixel.offset is not None:
            frame_loc = PixelLocation(pixel.transfer_syntax, pixel.offset + k * pixel.nbytes, pixel.nbytes,
                                      pixel.dtype, pixel.bits_stored, pixel.signed)
        elif pixel is not None:
            frame_loc = pixel
        fields = dict(common)
        if frame_type:
            fields["image_type"] = frame_type
        frames.append(Frame(
            frame_index=k,
            sop_uid=str(_first(ds, "SOPInstanceUID", "")),
            pixel_spacing=_floats(g("PixelMeasuresSequence", "PixelSpacing"), 2),
            iop=_floats(g("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            ipp=_floats(g("PlanePositionSequence", "ImagePositionPatient"), 3),
            slope=_float(g("PixelValueTransformationSequence", "RescaleSlope")) or 1.0,
            intercept=_float(g("PixelValueTransformationSequence", "RescaleIntercept")) or 0.0,
            pixel=frame_loc,
            temporal_index=_int(_first(content, "TemporalPositionIndex")) if content is not None else None,
            trigger_ms=offset_s * 1000.0 if offset_s is not None else trigger,
            acq_dt=parse_dt(_first(content, "FrameAcquisitionDateTime")) if content is not None else None,
            content_dt=parse_dt(_first(content, "FrameReferenceDateTime")) if content is not None else None,
            stack_id=str(_first(content, "StackID")) if content is not None and _first(content, "StackID") else None,
            sequence=sequence,
            diffusion=b_value not in (None, 0.0),
            problem=problem,
            **{k2: v for k2, v in fields.items() if k2 not in ("acq_number",)},
            acq_number=(_int(_first(content, "FrameAcquisitionNumber")) if content is not None else None)
            or common["acq_number"],
        ))
    return frames


def read_frames(path: str) -> tuple[list[Frame], str | None]:
    """Frames of one DICOM file, or ``([], reason)`` for a DICOM object that is not an image.

    Raises :class:`InputError` for a file that claims to be DICOM but cannot be parsed.
    """
    try:
        ds = pydicom.dcmread(path, defer_size=DEFER_BYTES, specific_tags=_header_tags())
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
        raise InputError(f"cannot parse this DICOM file ({type(exc).__name__}: {str(exc)[:120]})", path,
                         "the file is damaged or truncated; re-export it, or remove it if it is not part of "
                         "the exam") from None
    if "Rows" not in ds or "Columns" not in ds:
        meta = getattr(ds, "file_meta", None)
        sop = str(_first(ds, "SOPClassUID", "") or (_first(meta, "MediaStorageSOPClassUID", "") if meta else ""))
        name = pydicom.uid.UID(sop).name if sop else "unknown SOP class"
        if "Image Storage" in name or not sop:
            # An image object without an image size: the header was cut short or damaged.
            raise InputError(f"the header of this {name} file is incomplete (no image size); the file is "
                             "damaged or truncated", path,
                             "re-send the series from the scanner or PACS, or remove the file if it is not "
                             "part of the exam")
        return [], f"not an image ({name})"
    try:
        if _first(ds, "PerFrameFunctionalGroupsSequence") is not None:
            return _enhanced_frames(ds, path), None
        return _classic_frames(ds, path), None
    except InputError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, EOFError, OSError) as exc:
        raise InputError(f"cannot read the header of this DICOM file ({type(exc).__name__}: {str(exc)[:120]})",
                         path, "re-export the series; remove the file if it is not part of the exam") from None


# --------------------------------------------------------------------------------- folders
def _header_tags() -> list[BaseTag]:
    global _HEADER_TAGS
    if _HEADER_TAGS is None:
        _HEADER_TAGS = [BaseTag(_tag(k)) for k in HEADER_KEYWORDS]
    return _HEADER_TAGS


_HEADER_TAGS: list[BaseTag] | None = None


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file starts with the DICOM preamble (128 bytes, then ``DICM``)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def list_files(folder: Path) -> list[str]:
    """Every regular file below *folder*, hidden files and folders excluded, in a stable order."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        # os.path.isfile: pipes, devices and link loops are never opened (reading them could hang)
        out.extend(p for p in (os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
                   if os.path.isfile(p))
    return out


def _read_one(path: str) -> tuple[str, list[Frame], str | None]:
    if not is_dicom_file(path):
        return path, [], "not-dicom"
    frames, reason = read_frames(path)
    return path, frames, reason


def _input_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[Path, list[str]]:
    """(folder named in messages, files to read) for a folder or an explicit list of files."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.exists():
            raise InputError("folder does not exist", folder, "check the path")
        if not folder.is_dir():
            raise InputError("DICOM input must be a folder or a list of files", folder,
                             "pass the folder holding the exam's DICOM files")
        return folder, list_files(folder)
    paths = [str(p) for p in source]
    if not paths:
        raise InputError("no DICOM files given", None, "pass the exam's folder or its DICOM files")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{len(missing)} of the given DICOM files do not exist", missing[0], "check the paths")
    common = Path(os.path.commonpath([os.path.abspath(p) for p in paths]))
    return (common.parent if common.is_file() else common), paths


def scan_folder(folder: str | os.PathLike | Sequence[str | os.PathLike], workers: int | None = None,
                progress: Callable[[float, str], None] | None = None) -> ScanResult:
    """Read the header of every DICOM file below *folder* (recursively), or of the files listed.

    A list of files is what a host application has when it knows the series already (e.g. Slicer's
    DICOM database). Files without the DICOM preamble are counted and ignored; duplicate instances
    (the same SOP instance UID and frame met twice, e.g. a series copied into two sub-folders) are
    kept once.
    """
    folder, paths = _input_files(folder)
    workers = workers or min(4, (os.cpu_count() or 1) + 1)
    frames: list[Frame] = []
    non_image: list[tuple[str, str]] = []
    not_dicom = 0
    seen: set[tuple[str, int]] = set()
    duplicates = 0

    def consume(results: Iterable[tuple[str, list[Frame], str | None]]) -> None:
        nonlocal not_dicom, duplicates
        for i, (path, fr, reason) in enumerate(results):
            if reason == "not-dicom":
                not_dicom += 1
            elif reason:
                non_image.append((path, reason))
            for f in fr:
                key = (f.sop_uid, f.frame_index)
                if f.sop_uid and key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                frames.append(f)
            if progress and (i % 64 == 0 or i == len(paths) - 1):
                progress((i + 1) / max(len(paths), 1), f"reading DICOM headers {i + 1}/{len(paths)}")

    if workers > 1 and len(paths) > 32:
        with joined_pool(workers, "dicom-headers") as pool:
            consume(pool.map(_read_one, paths))
    else:
        consume(map(_read_one, paths))
    return ScanResult(folder, frames, len(paths), not_dicom, non_image, duplicates)

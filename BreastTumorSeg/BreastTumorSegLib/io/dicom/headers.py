"""DICOM headers to per-frame records: the first step of reading a DICOM DCE exam.

Every 2D image in a folder becomes one :class:`Frame`, whether it is a classic single-frame
instance (MR Image Storage, the GE and Siemens way) or one frame of an enhanced multi-frame
instance (Enhanced MR Image Storage, the Philips way). Later steps (:mod:`.phases`) only
see frames, so the three vendor layouts share one code path.

Headers are read with pydicom using ``defer_size``: large values (the pixel data, vendor
private blobs) are skipped, not read, and pydicom records where in the file they start. For
uncompressed transfer syntaxes that offset is all :mod:`.reader` needs to read the pixels in
bulk with numpy afterwards, so every file is parsed once.

Attribute values are read with :mod:`.elements`, dates and times with :mod:`.times`; :mod:`.scan`
reads every file of a folder into frames with :func:`read_frames`.

Nothing here keeps patient identifiers: a frame holds geometry, timing and sequence facts,
UIDs (needed to group and to reference the source in a DICOM SEG) and its file path.
"""
from __future__ import annotations

import hashlib
import math
import os
import struct
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag

from ...core.errors import InputError
from .elements import as_float, as_floats, as_int, as_strings, round_or_none, stored_element, tag_of, value_of
from .times import day_seconds, parse_da, parse_dt, parse_tm

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
    "DoubleFloatPixelData", "PixelData", "PatientID", "PatientName",
)
# Philips' private MR scale slope and intercept (group 2005, private creator "Philips MR Imaging DD 001"),
# read with the creator so that another vendor's element at the same tag is never taken for them.
PHILIPS_CREATOR = "Philips MR Imaging DD 001"
_PHILIPS_TAGS = (0x20050010, 0x2005100D, 0x2005100E)
_PHILIPS_FRAME_SEQUENCE = 0x2005140F  # per-frame private item of Philips enhanced MR

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
    has_rescale: bool = False  # RescaleSlope or RescaleIntercept written (else identity assumed)
    private_scale: float | None = None  # Philips MR scale slope (2005,100E), when written
    patient: str = ""  # a digest of PatientID and PatientName: tells patients apart, keeps no identifier

    @property
    def is_multiframe(self) -> bool:
        return self.sop_class in (ENHANCED_MR, LEGACY_ENHANCED_MR) or self.frame_index > 0

    def label(self) -> str:
        """Short description for messages: file, and frame number for multi-frame files."""
        return f"{self.path} (frame {self.frame_index + 1})" if self.is_multiframe else self.path


# --------------------------------------------------------------------------------- pixels
def _pixel_location(ds: Dataset, path: str, rows: int, cols: int,
                    n_frames: int) -> tuple[PixelLocation | None, str | None]:
    """Locate the pixel data of *ds*; returns (location, problem)."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(value_of(meta, "TransferSyntaxUID", "")) if meta is not None else ""
    bits_alloc = as_int(value_of(ds, "BitsAllocated"))
    bits_stored = as_int(value_of(ds, "BitsStored")) or bits_alloc
    signed = as_int(value_of(ds, "PixelRepresentation", 0)) == 1
    raw = stored_element(ds, 0x7FE00010)
    kind = "i" if signed else "u"
    if raw is None:
        # Float / double float pixel data: written by some research converters (Parametric Map style).
        raw, float_bits = next(((e, b) for e, b in ((stored_element(ds, 0x7FE00008), 32),
                                                    (stored_element(ds, 0x7FE00009), 64)) if e is not None),
                               (None, None))
        if raw is None:
            return None, "has no pixel data"
        kind, bits_alloc = "f", float_bits
        bits_stored, signed = float_bits, False
    if bits_alloc not in (8, 16, 32) and kind != "f":
        return None, f"has {bits_alloc} bits allocated per pixel; 8, 16 or 32 are supported"
    order = UNCOMPRESSED_SYNTAXES.get(syntax)
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
        round_or_none(as_float(value_of(ds, "RepetitionTime")), 1),
        round_or_none(as_float(value_of(ds, "EchoTime")), 2),
        round_or_none(as_float(value_of(ds, "InversionTime")), 1),
        round_or_none(as_float(value_of(ds, "FlipAngle")), 1),
        "\\".join(as_strings(value_of(ds, "ScanOptions"))),
        str(value_of(ds, "SequenceName", "")).strip(),
        "\\".join(as_strings(value_of(ds, "ScanningSequence"))),
        "\\".join(as_strings(value_of(ds, "SequenceVariant"))),
    )


def _common_fields(ds: Dataset, path: str) -> dict:
    acq_day = parse_da(value_of(ds, "AcquisitionDate")) or parse_da(value_of(ds, "SeriesDate")) \
        or parse_da(value_of(ds, "StudyDate"))
    bolus = parse_tm(value_of(ds, "ContrastBolusStartTime"))
    return dict(
        path=path,
        sop_class=str(value_of(ds, "SOPClassUID", "")),
        series_uid=str(value_of(ds, "SeriesInstanceUID", "")),
        study_uid=str(value_of(ds, "StudyInstanceUID", "")),
        for_uid=str(value_of(ds, "FrameOfReferenceUID", "")),
        series_number=as_int(value_of(ds, "SeriesNumber")),
        series_description=str(value_of(ds, "SeriesDescription", "")).strip(),
        modality=str(value_of(ds, "Modality", "")).strip().upper(),
        image_type=as_strings(value_of(ds, "ImageType")),
        manufacturer=str(value_of(ds, "Manufacturer", "")).strip(),
        rows=as_int(value_of(ds, "Rows")) or 0,
        cols=as_int(value_of(ds, "Columns")) or 0,
        samples_per_pixel=as_int(value_of(ds, "SamplesPerPixel", 1)) or 1,
        n_temporal=as_int(value_of(ds, "NumberOfTemporalPositions")),
        acq_number=as_int(value_of(ds, "AcquisitionNumber")),
        instance_number=as_int(value_of(ds, "InstanceNumber")),
        bolus_start=day_seconds(acq_day, bolus),
        contrast_agent=str(value_of(ds, "ContrastBolusAgent", "")).strip(),
        patient=_patient_digest(ds),
    ), acq_day


def _patient_digest(ds: Dataset) -> str:
    """A short digest of PatientID and PatientName: equal for one patient, and no identifier kept.

    The name is compared as archives rewrite it: upper case, its alphabetic form only (before any
    '='), empty trailing components dropped ("Doe^Jane^^^" is "DOE^JANE")."""
    pid = str(value_of(ds, "PatientID", "")).strip().upper()
    name = str(value_of(ds, "PatientName", "")).split("=")[0].strip().rstrip("^ ").upper()
    text = pid + "\x00" + name
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def _rescale(item: Dataset | None, where: str) -> tuple[float, float, bool, str | None]:
    """(slope, intercept, written, problem) of the Modality LUT in *item* (identity when absent)."""
    if item is None:
        return 1.0, 0.0, False, None
    raw_slope, raw_inter = value_of(item, "RescaleSlope"), value_of(item, "RescaleIntercept")
    slope, inter = as_float(raw_slope), as_float(raw_inter)
    written = raw_slope is not None or raw_inter is not None
    if raw_slope is not None and (slope is None or slope == 0 or not math.isfinite(slope)):
        return 1.0, 0.0, written, f"has RescaleSlope {raw_slope!r}{where}, which cannot scale its stored values"
    if raw_inter is not None and (inter is None or not math.isfinite(inter)):
        return 1.0, 0.0, written, f"has RescaleIntercept {raw_inter!r}{where}, which is not a number"
    return (slope if slope is not None else 1.0), (inter or 0.0), written, None


def philips_scale_slope(item: Dataset | None) -> float | None:
    """Philips' private MR scale slope (2005,100E) in *item*, or None (absent, another creator, not a
    positive number)."""
    if item is None:
        return None
    creator = stored_element(item, 0x20050010)
    if creator is None:
        return None
    name = creator.value
    if isinstance(name, bytes):
        name = name.decode("latin-1", "replace")
    if not str(name).strip("\x00 ").startswith(PHILIPS_CREATOR):
        return None
    elem = stored_element(item, 0x2005100E)
    if elem is None or elem.value is None:
        return None
    value = elem.value
    if isinstance(value, bytes):  # implicit VR: the value arrives as bytes (FL, 4 bytes)
        if len(value) < 4:
            return None
        value = struct.unpack("<f" if getattr(elem, "is_little_endian", True) else ">f", value[:4])[0]
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    v = as_float(value)
    return v if v is not None and math.isfinite(v) and v > 0 else None


def _classic_frames(ds: Dataset, path: str) -> list[Frame]:
    common, acq_day = _common_fields(ds, path)
    rows, cols = common["rows"], common["cols"]
    pixel, problem = _pixel_location(ds, path, rows, cols, 1)
    acq_dt = parse_dt(value_of(ds, "AcquisitionDateTime"))
    if acq_dt is None:
        acq_dt = day_seconds(acq_day, parse_tm(value_of(ds, "AcquisitionTime")))
    content_day = parse_da(value_of(ds, "ContentDate")) or acq_day
    diffusion = as_float(value_of(ds, "DiffusionBValue")) not in (None, 0.0)
    slope, intercept, has_rescale, rescale_problem = _rescale(ds, "")
    frame = Frame(
        frame_index=0,
        sop_uid=str(value_of(ds, "SOPInstanceUID", "")),
        pixel_spacing=as_floats(value_of(ds, "PixelSpacing"), 2),
        iop=as_floats(value_of(ds, "ImageOrientationPatient"), 6),
        ipp=as_floats(value_of(ds, "ImagePositionPatient"), 3),
        slope=slope,
        intercept=intercept,
        has_rescale=has_rescale,
        private_scale=philips_scale_slope(ds),
        pixel=pixel,
        temporal_index=as_int(value_of(ds, "TemporalPositionIdentifier")),
        trigger_ms=as_float(value_of(ds, "TriggerTime")),
        acq_dt=acq_dt,
        content_dt=day_seconds(content_day, parse_tm(value_of(ds, "ContentTime"))),
        stack_id=None,
        sequence=_sequence_facts(ds),
        diffusion=diffusion,
        problem=problem or rescale_problem,
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


def _private_item(per_frame: Dataset) -> Dataset | None:
    """First item of Philips' per-frame private sequence (2005,140F), where its enhanced MR keeps the
    MR scale slope, or None."""
    try:
        elem = per_frame[_PHILIPS_FRAME_SEQUENCE] if _PHILIPS_FRAME_SEQUENCE in per_frame else None
        seq = elem.value if elem is not None else None
        return seq[0] if seq and isinstance(seq[0], Dataset) else None
    except (KeyError, TypeError, ValueError, IndexError):
        return None


# Legacy Converted Enhanced MR (e.g. highdicom's converter) moves the classic per-slice tags that have no
# functional group of their own (TemporalPositionIdentifier, TriggerTime) into this per-frame sequence.
_UNASSIGNED = "UnassignedPerFrameConvertedAttributesSequence"


def _group_value(per_frame: Dataset | None, shared: Dataset | None, group: str, keyword: str) -> Any:
    """A functional-group attribute: the per-frame value wins over the shared one."""
    for parent in (per_frame, shared):
        item = _item(parent, group)
        if item is not None:
            v = value_of(item, keyword)
            if v is not None:
                return v
    return None


def _enhanced_frames(ds: Dataset, path: str) -> list[Frame]:
    common, _ = _common_fields(ds, path)
    rows, cols = common["rows"], common["cols"]
    n = as_int(value_of(ds, "NumberOfFrames")) or 1
    pixel, problem = _pixel_location(ds, path, rows, cols, n)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame_seq = value_of(ds, "PerFrameFunctionalGroupsSequence")
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
        tr = as_float(g("MRTimingAndRelatedParametersSequence", "RepetitionTime"))
        flip = as_float(g("MRTimingAndRelatedParametersSequence", "FlipAngle"))
        te = as_float(g("MREchoSequence", "EffectiveEchoTime"))
        ti = as_float(g("MRModifierSequence", "InversionTimes"))
        sequence = (
            round_or_none(tr, 1) if tr is not None else base_seq[0],
            round_or_none(te, 2) if te is not None else base_seq[1],
            round_or_none(ti, 1) if ti is not None else base_seq[2],
            round_or_none(flip, 1) if flip is not None else base_seq[3],
            *base_seq[4:],
        )
        frame_type = as_strings(g("MRImageFrameTypeSequence", "FrameType"))
        b_value = as_float(g("MRDiffusionSequence", "DiffusionBValue"))
        offset_s = as_float(g("TemporalPositionSequence", "TemporalPositionTimeOffset"))
        trigger = as_float(g("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))
        if trigger is None:  # legacy converted enhanced MR keeps the classic tag in the unassigned groups
            trigger = as_float(g(_UNASSIGNED, "TriggerTime"))
        frame_loc = None
        if pixel is not None and pixel.offset is not None:
            frame_loc = PixelLocation(pixel.transfer_syntax, pixel.offset + k * pixel.nbytes, pixel.nbytes,
                                      pixel.dtype, pixel.bits_stored, pixel.signed)
        elif pixel is not None:
            frame_loc = pixel
        transform = _item(pf, "PixelValueTransformationSequence") or _item(shared, "PixelValueTransformationSequence")
        slope, intercept, has_rescale, rescale_problem = _rescale(transform, f" (frame {k + 1})")
        private = _private_item(pf)
        fields = dict(common)
        if frame_type:
            fields["image_type"] = frame_type
        frames.append(Frame(
            frame_index=k,
            sop_uid=str(value_of(ds, "SOPInstanceUID", "")),
            pixel_spacing=as_floats(g("PixelMeasuresSequence", "PixelSpacing"), 2),
            iop=as_floats(g("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            ipp=as_floats(g("PlanePositionSequence", "ImagePositionPatient"), 3),
            slope=slope,
            intercept=intercept,
            has_rescale=has_rescale,
            private_scale=philips_scale_slope(private) or philips_scale_slope(ds),
            pixel=frame_loc,
            temporal_index=(as_int(value_of(content, "TemporalPositionIndex")) if content is not None else None)
            or as_int(g(_UNASSIGNED, "TemporalPositionIdentifier")),
            trigger_ms=offset_s * 1000.0 if offset_s is not None else trigger,
            acq_dt=parse_dt(value_of(content, "FrameAcquisitionDateTime")) if content is not None else None,
            content_dt=parse_dt(value_of(content, "FrameReferenceDateTime")) if content is not None else None,
            stack_id=(str(value_of(content, "StackID"))
                      if content is not None and value_of(content, "StackID") else None),
            sequence=sequence,
            diffusion=b_value not in (None, 0.0),
            problem=problem or rescale_problem,
            **{k2: v for k2, v in fields.items() if k2 not in ("acq_number",)},
            acq_number=(as_int(value_of(content, "FrameAcquisitionNumber")) if content is not None else None)
            or common["acq_number"],
        ))
    return frames


def read_frames(path: str) -> tuple[list[Frame], str | None]:
    """Frames of one DICOM file, or ``([], reason)`` for a DICOM object that is not an image.

    Raises :class:`InputError` for a file that claims to be DICOM but cannot be parsed.
    """
    try:
        ds = pydicom.dcmread(path, defer_size=DEFER_BYTES, specific_tags=_header_tags(), force=True)
        set_missing_transfer_syntax(ds)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
        raise InputError(f"cannot parse this DICOM file ({type(exc).__name__}: {str(exc)[:120]})", path,
                         "the file is damaged or truncated; re-export it, or remove it if it is not part of "
                         "the exam") from None
    if "Rows" not in ds or "Columns" not in ds:
        meta = getattr(ds, "file_meta", None)
        sop = str(value_of(ds, "SOPClassUID", "") or (value_of(meta, "MediaStorageSOPClassUID", "") if meta else ""))
        name = pydicom.uid.UID(sop).name if sop else "unknown SOP class"
        if "Image Storage" in name or not sop:
            # An image object without an image size: the header was cut short or damaged.
            raise InputError(f"the header of this {name} file is incomplete (no image size); the file is "
                             "damaged or truncated", path,
                             "re-send the series from the scanner or PACS, or remove the file if it is not "
                             "part of the exam")
        return [], f"not an image ({name})"
    try:
        if value_of(ds, "PerFrameFunctionalGroupsSequence") is not None:
            return _enhanced_frames(ds, path), None
        return _classic_frames(ds, path), None
    except InputError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, EOFError, OSError) as exc:
        raise InputError(f"cannot read the header of this DICOM file ({type(exc).__name__}: {str(exc)[:120]})",
                         path, "re-export the series; remove the file if it is not part of the exam") from None


def set_missing_transfer_syntax(ds: Dataset) -> None:
    """Give a data set read without file meta information (no preamble) the transfer syntax its
    elements were found in, so that its pixel data can be located and decoded.

    Only the uncompressed syntaxes are possible: encapsulated pixel data needs file meta.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    encoding = getattr(ds, "original_encoding", None)  # pydicom 3; pydicom 2.4 keeps the two flags
    implicit, little = encoding if encoding else (ds.is_implicit_VR, ds.is_little_endian)
    if implicit is None or little is None:
        return
    if meta is None:
        ds.file_meta = meta = pydicom.dataset.FileMetaDataset()
    meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit else
                              pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)


# ------------------------------------------------------------------------------ tags read
def _header_tags() -> list[BaseTag]:
    global _HEADER_TAGS
    if _HEADER_TAGS is None:
        _HEADER_TAGS = [BaseTag(tag_of(k)) for k in HEADER_KEYWORDS] + [BaseTag(t) for t in _PHILIPS_TAGS]
    return _HEADER_TAGS


_HEADER_TAGS: list[BaseTag] | None = None

"""Writing a tumor segmentation as a DICOM Segmentation object (SEG), with highdicom.

The SEG references the pre-contrast series the exam was loaded from (the grid every result is
on), so PACS and viewers (Slicer, OHIF, dcmqi) place it on the right images. The segment is
coded with SNOMED CT -- category "Morphologically Altered Structure" (49755003), type
"Neoplasm" (108369006), anatomic region "Breast" (76752008), the codes the Slicer bridge uses --
and carries the algorithm identification (name, engine version, model id).

With ``deidentify=True`` the patient and study identifiers copied from the source (name, ID,
birth date, sex, accession number, physicians, institution, study and acquisition dates) are
removed, the patient ID becomes the case id and the SEG is marked ``PatientIdentityRemoved``;
the UIDs are kept (the "retain UIDs" option of the DICOM Basic Application Level Confidentiality
Profile) so that the SEG still points at its source.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ... import __version__
from ...core.errors import InputError, OutputExistsError
from ..atomic import atomic_target
from ...core.exam import DCEExam
from ...core.imageutil import describe_grid, same_grid
from .headers import set_missing_transfer_syntax

ALGORITHM_NAME = "BreastTumorSeg"
# (value, scheme, meaning) -- the same codes as the MRML bridge's terminology entry.
CATEGORY = ("49755003", "SCT", "Morphologically Altered Structure")
PROPERTY_TYPE = ("108369006", "SCT", "Neoplasm")
ANATOMIC_REGION = ("76752008", "SCT", "Breast")
# Display colour (RGB 0-255), the one the Slicer bridge gives the tumor segment.
TUMOR_RGB = (230, 51, 38)

# Attributes highdicom copies from the source that identify a patient or visit: replaced by
# the value given, or removed (None).
IDENTIFYING = {
    "PatientName": "ANONYMOUS^",
    "PatientID": None,  # replaced by the case id
    "PatientBirthDate": "",
    "PatientSex": "",
    "AccessionNumber": "",
    "ReferringPhysicianName": "",
    "StudyID": "",
    "StudyDate": "",
    "StudyTime": "",
    "InstitutionName": None,
    "InstitutionAddress": None,
    "InstitutionalDepartmentName": None,
    "OtherPatientIDs": None,
    "OtherPatientNames": None,
    "IssuerOfPatientID": None,
    "PatientAge": None,
    "PatientWeight": None,
    "PatientSize": None,
    "PatientAddress": None,
    "PerformingPhysicianName": None,
    "OperatorsName": None,
    "StationName": None,
}
# Removed from the source headers only (highdicom would copy them into the contributing
# equipment of the SEG): acquisition dates and the scanner's serial number.
SOURCE_ONLY = ("AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime", "SeriesDate", "SeriesTime",
               "ContentDate", "ContentTime", "DeviceSerialNumber")


# Type-2 attributes of the Patient and General Study modules that a SEG copies from its source.
# De-identification tools often delete them although the standard wants them present (empty when
# unknown); highdicom then cannot build the SEG. They are added back empty, with a warning.
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")


class DicomSourceWarning(UserWarning):
    """The source series lacked attributes the SEG needs; they were written empty."""


def complete_type2(datasets: list, where: str = "source series") -> list[str]:
    """Add the missing :data:`TYPE2_COPIED` attributes to *datasets* as empty values, in place.

    Returns the keywords that were missing (and warns once, naming them and *where*)."""
    missing = sorted({kw for ds in datasets for kw in TYPE2_COPIED if kw not in ds},
                     key=TYPE2_COPIED.index)
    for ds in datasets:
        for kw in missing:
            if kw not in ds:
                setattr(ds, kw, "")
    if missing:
        warnings.warn(f"{where}: type-2 attribute(s) {', '.join(missing)} missing (removed by de-identification?); "
                      "written empty in the DICOM SEG, as the standard allows", DicomSourceWarning, stacklevel=3)
    return missing


def check_seg_writer() -> None:
    """Refuse, before any work, when highdicom (>= 0.28, with pydicom 3) cannot be imported: e.g. in
    Slicer's own Python, which keeps its pydicom 2.4 (there Slicer's DICOM module writes the SEG)."""
    try:
        import highdicom as hd
        ok = hasattr(hd, "Volume")
    except Exception:  # noqa: BLE001 - missing, or built for another pydicom
        ok = False
    if not ok:
        raise InputError("writing DICOM SEG needs highdicom >= 0.28 (with pydicom 3), which is not installed here",
                         "--dicom-seg", 'install it with: python -m pip install "highdicom>=0.28"; inside Slicer, '
                         "export the segmentation with Slicer's DICOM module instead (README \"DICOM SEG\")")


def _source_datasets(exam: DCEExam) -> list:
    """Headers (no pixels) of the pre-contrast phase's instances, in the exam's slice order."""
    import pydicom

    source = exam.metadata.get("dicom_source")
    if source is None:
        raise InputError("a DICOM SEG needs an exam loaded from DICOM (it must reference the source series)",
                         exam.case_id, "load the exam from its DICOM folder, or write NIfTI/NRRD results only")
    datasets = []
    seen = set()
    for path, _frame in source.reference_files:
        if path in seen:
            continue
        seen.add(path)
        if not os.path.exists(path):
            raise InputError("source DICOM file of the pre-contrast phase is gone", path,
                             "keep the DICOM folder in place until the results are written")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)  # force: files without preamble
            set_missing_transfer_syntax(ds)
            datasets.append(ds)
        except Exception as exc:
            raise InputError(f"cannot re-read the source DICOM header ({exc})", path,
                             "keep the DICOM folder unchanged until the results are written") from None
    return datasets


def _scrub(ds, case_id: str) -> None:
    """Replace or remove the identifying attributes of one dataset, in place."""
    for keyword, value in IDENTIFYING.items():
        if keyword == "PatientID":
            ds.PatientID = case_id
        elif value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)


def _deidentify(datasets: list, case_id: str) -> list:
    """Copies of *datasets* without patient/visit identifiers or acquisition dates (UIDs kept)."""
    out = []
    for ds in datasets:
        ds = ds.copy()
        _scrub(ds, case_id)
        for keyword in SOURCE_ONLY:
            if keyword in ds:
                delattr(ds, keyword)
        out.append(ds)
    return out


def _volume(label: sitk.Image, frame_of_reference_uid: str):
    """The label as a highdicom Volume: array axes (slice, row, column) with their LPS directions."""
    import highdicom as hd

    arr = (sitk.GetArrayFromImage(label) > 0).astype(np.uint8)
    d = np.asarray(label.GetDirection(), dtype=float).reshape(3, 3)
    sx, sy, sz = label.GetSpacing()
    return hd.Volume.from_components(
        arr, spacing=(sz, sy, sx), position=label.GetOrigin(), direction=d[:, [2, 1, 0]],
        coordinate_system="PATIENT", frame_of_reference_uid=frame_of_reference_uid or None)


def _atomic_save(ds, path: Path) -> None:
    with atomic_target(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def write_dicom_seg(label: sitk.Image, exam: DCEExam, path: str | os.PathLike, model_id: str, *,
                    model_version: str | None = None, segment_label: str = "Tumor",
                    series_description: str = "BreastTumorSeg tumor segmentation", series_number: int = 9901,
                    deidentify: bool = False, overwrite: bool = False) -> Path:
    """Write *label* (non-zero = tumor, on the exam's pre-contrast grid) as a binary DICOM SEG.

    Parameters
    ----------
    label:
        The segmentation, on ``exam.reference``'s grid (as :func:`segment_exam` returns it).
    exam:
        The exam loaded with :func:`BreastTumorSegLib.io.dicom.reader.load_dicom_exam`; its
        ``metadata["dicom_source"]`` says which instances to reference.
    model_id, model_version:
        Recorded in the Algorithm Identification (name ``BreastTumorSeg``, version = engine
        version, parameters = model id and version).
    deidentify:
        Remove patient/visit identifiers copied from the source (UIDs are kept).

    The file is written through a temporary file and an atomic rename; an existing file is only
    replaced with ``overwrite``.
    """
    check_seg_writer()
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code
    from pydicom.uid import generate_uid

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: result exists already. Fix: choose another output, or pass overwrite.")
    if label.GetDimension() != 3 or not same_grid(label, exam.reference):
        raise InputError(f"the label ({describe_grid(label)}) is not on the exam's pre-contrast grid "
                         f"({describe_grid(exam.reference)})", exam.case_id,
                         "write the label the engine returned for this exam, without resampling it")
    datasets = _source_datasets(exam)
    complete_type2(datasets, f"{exam.case_id}: pre-contrast series")
    if deidentify:
        datasets = _deidentify(datasets, exam.case_id)
    source = exam.metadata["dicom_source"]
    volume = _volume(label, source.frame_of_reference_uid)
    parameters = {"model_id": str(model_id)}
    if model_version:
        parameters["model_version"] = str(model_version)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, family=codes.cid7162.ArtificialIntelligence, version=__version__,
        parameters=parameters)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=segment_label,
        segmented_property_category=Code(*CATEGORY), segmented_property_type=Code(*PROPERTY_TYPE),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        anatomic_regions=[Code(*ANATOMIC_REGION)], tracking_id="tumor", tracking_uid=generate_uid(),
        display_color=hd.color.CIELabColor.from_rgb(*TUMOR_RGB))
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets, pixel_array=volume, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=series_number,
            sop_instance_uid=generate_uid(), instance_number=1, manufacturer=ALGORITHM_NAME,
            manufacturer_model_name=f"{ALGORITHM_NAME} {model_id}"[:64], software_versions=__version__,
            device_serial_number="0", content_label="TUMOR", content_creator_name=f"{ALGORITHM_NAME}^",
            content_description=series_description[:64],
            series_description=series_description[:64], omit_empty_frames=False)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"highdicom could not build the DICOM SEG ({exc})", exam.case_id,
                         "report this with the output of `breasttumorseg dicom-list` on the input folder") from None
    if deidentify:
        _scrub(seg, exam.case_id)
        seg.PatientIdentityRemoved = "YES"
        seg.DeidentificationMethod = "BreastTumorSeg: identifiers removed, UIDs kept"
    _atomic_save(seg, path)
    return path

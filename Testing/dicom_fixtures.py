"""DICOM DCE exams written from phantoms, in the layouts and tag styles real scanners use.

The tests (and ``benchmarks/bench_dicom.py``) write an exam whose voxels, geometry and phase
times are known, read it back with :mod:`BreastTumorSegLib.io.dicom.reader`, and compare. Three vendor
styles are imitated in simplified form (the tags each vendor commonly uses to tell DCE phases
apart; no vendor data is copied, private tags are left out):

* ``write_ge_multiphase``: GE style -- one series holding every phase, single-frame
  instances, TemporalPositionIdentifier + NumberOfTemporalPositions + TriggerTime (ms); the
  AcquisitionTime is the series start for every phase, so only TriggerTime gives the times;
  signed 16-bit storage.
* ``write_siemens_per_phase``: Siemens style -- one series per phase, each with its own
  AcquisitionTime, AcquisitionNumber and ContrastBolusStartTime; unsigned 16-bit storage.
  ``write_siemens_single_series`` puts all phases in one series told apart by
  AcquisitionNumber/AcquisitionTime only.
* ``write_philips_enhanced``: Philips style -- one Enhanced MR Image (multi-frame) instance, per-
  frame FrameContentSequence (TemporalPositionIndex, StackID, InStackPositionNumber,
  FrameAcquisitionDateTime), TemporalPositionSequence and a rescale that differs per phase.

Stored values use RescaleSlope/RescaleIntercept, so the loaded float image equals the phantom
within slope/2. Patient attributes are filled with made-up identifiers (``FAKE_PATIENT``) so that
tests can check none of them leaks into logs or JSON. Files get shuffled names in nested folders,
instance numbers run against the slice order, so nothing can rely on file order.
"""
from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from BreastTumorSegLib.core.exam import DCEExam
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

# Made-up identifiers; tests assert none of these strings appears in logs or JSON.
FAKE_PATIENT = {
    "PatientName": "Fakename^Jane",
    "PatientID": "FAKE-PID-0042",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "AccessionNumber": "FAKEACC77",
    "ReferringPhysicianName": "Doctor^Fake",
    "InstitutionName": "Fake Hospital",
    "StudyID": "FAKESTUDY9",
}
STUDY_DATE = "20240315"
SERIES_START = dt.datetime(2024, 3, 15, 9, 41, 7, 250000)


# ------------------------------------------------------------------------------------ phantom
@dataclass
class FixtureExam:
    """The truth a DICOM fixture is written from."""

    exam: DCEExam  # float32 phases on the intended grid, times in minutes
    tumor_mask: sitk.Image  # uint8 on the same grid
    seed: int = 0
    slopes: list[float] = field(default_factory=list)  # largest RescaleSlope used, per phase

    @property
    def times_min(self) -> list[float]:
        return list(self.exam.times_min)


def _rotation(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    ax, ay, az = np.radians([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


ORIENTATIONS = {
    "axial": np.eye(3),
    # image x runs anterior->posterior (+y), image y head->feet (-z), slices left->right (-x);
    # DICOM can only describe right-handed grids (slice normal = row x column direction).
    "sagittal": np.column_stack([(0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0)]),
    "oblique-axial": _rotation(14.0, -9.0, 6.0),
}


@functools.lru_cache(maxsize=16)
def _phantom(seed: int, n_phases: int, orientation: str, spacing: tuple[float, float, float]):
    """The project phantom (one tumor, no motion) on a grid of the given orientation and spacing."""
    from BreastTumorSegLib.training.phantom import make_phantom

    return make_phantom(seed, spacing=spacing, orientation=ORIENTATIONS[orientation], n_phases=n_phases,
                        n_tumors=1, motion_mm=0)


def _crop_box(mask: sitk.Image, size_xyz: tuple[int, int, int]) -> tuple[list[int], list[int]]:
    """Index and size of a box of at most *size_xyz* voxels centred on the tumor."""
    arr = sitk.GetArrayFromImage(mask)
    full = mask.GetSize()
    centre = np.argwhere(arr).mean(0)[::-1] if arr.any() else np.asarray(full) / 2  # (i, j, k)
    size = [min(int(s), int(f)) for s, f in zip(size_xyz, full)]
    index = [int(np.clip(round(c - s / 2), 0, f - s)) for c, s, f in zip(centre, size, full)]
    return index, size


def make_fixture_exam(seed: int = 2, n_phases: int = 4, size_xyz: tuple[int, int, int] = (48, 48, 16),
                      spacing: tuple[float, float, float] = (3.0, 3.0, 4.0), orientation: str = "axial",
                      times_min: list[float] | None = None) -> FixtureExam:
    """A phantom exam (``BreastTumorSegLib.training.phantom``) cropped around its tumor to at most *size_xyz*.

    The crop keeps the phantom's physical geometry (origin moves with the crop); *orientation* is
    a key of :data:`ORIENTATIONS`. *times_min* replaces the phantom's phase times in the exam
    (only the DICOM tags are affected; voxels are the phantom's).
    """
    ph = _phantom(seed, n_phases, orientation, tuple(float(s) for s in spacing))
    index, size = _crop_box(ph.tumor_mask, size_xyz)
    phases = [sitk.Cast(sitk.RegionOfInterest(p, size, index), sitk.sitkFloat32) for p in ph.exam.phases]
    mask = sitk.Cast(sitk.RegionOfInterest(ph.tumor_mask, size, index), sitk.sitkUInt8)
    times = list(times_min) if times_min is not None else [float(t) for t in ph.exam.effective_times()]
    exam = DCEExam(phases, times, f"phantom{seed}", metadata={"phantom_seed": seed})
    return FixtureExam(exam, mask, seed)


# ------------------------------------------------------------------------------------ encoding
def _ds(x: float) -> str:
    return format_number_as_ds(float(x))


def encode(arr: np.ndarray, signed: bool) -> tuple[np.ndarray, float, float]:
    """Integer storage of *arr* with a slope and intercept exactly as a reader will parse them."""
    lo, hi = float(arr.min()), float(arr.max())
    if signed:
        intercept = float(_ds(round((lo + hi) / 2, 3)))
        slope = float(_ds(max(hi - intercept, intercept - lo, 1e-6) / 32000.0))
        stored = np.clip(np.rint((arr.astype(np.float64) - intercept) / slope), -32768, 32767).astype(np.int16)
    else:
        intercept = float(_ds(math.floor(lo)))
        slope = float(_ds(max(hi - intercept, 1e-6) / 65000.0))
        stored = np.clip(np.rint((arr.astype(np.float64) - intercept) / slope), 0, 65535).astype(np.uint16)
    return stored, slope, intercept


def _tm(t: dt.datetime) -> str:
    return t.strftime("%H%M%S.%f")


def _uid(*parts) -> str:
    """A UID that depends only on *parts*: re-writing a fixture gives the same UIDs."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _grid_key(fx: FixtureExam) -> str:
    """Tells apart acquisitions of one phantom on different grids (their instances must differ)."""
    img = fx.exam.pre
    return repr((img.GetSize(), np.round(img.GetOrigin(), 3).tolist(), np.round(img.GetDirection(), 4).tolist()))


def _base_dataset(sop_class: str, sop_uid: str, study_uid: str, for_uid: str, modality: str = "MR") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = STUDY_DATE
    ds.SeriesDate = STUDY_DATE
    ds.AcquisitionDate = STUDY_DATE
    ds.ContentDate = STUDY_DATE
    ds.StudyTime = "093000"
    ds.Modality = modality
    for k, v in FAKE_PATIENT.items():
        setattr(ds, k, v)
    ds.StudyInstanceUID = study_uid
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "BREAST"
    ds.MagneticFieldStrength = "3"
    ds.ImagingFrequency = "127.7"
    ds.PatientPosition = "FFP"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


VENDORS = {
    "ge": dict(Manufacturer="GE MEDICAL SYSTEMS", ManufacturerModelName="SIGNA Premier",
               SeriesDescription="Ax VIBRANT MPh", ImageType=["ORIGINAL", "PRIMARY", "OTHER"],
               ScanningSequence="GR", SequenceVariant=["SS", "SK"], ScanOptions=["FAST_GEMS", "SEQ_GEMS"],
               SequenceName="vibrant", RepetitionTime="4.7", EchoTime="2.1", FlipAngle="12", signed=True),
    "siemens": dict(Manufacturer="SIEMENS", ManufacturerModelName="MAGNETOM Skyra",
                    SeriesDescription="t1_fl3d_tra_dyn_spair", ImageType=["ORIGINAL", "PRIMARY", "M", "ND", "NORM"],
                    ScanningSequence="GR", SequenceVariant=["SP", "SS"], ScanOptions="PFP",
                    SequenceName="*fl3d1", RepetitionTime="4.93", EchoTime="1.97", FlipAngle="10", signed=False),
}


def _slice_geometry(img: sitk.Image, k: int) -> tuple[list[str], list[str]]:
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    ipp = np.asarray(img.TransformIndexToPhysicalPoint((0, 0, k)), dtype=float)
    iop = list(d[:, 0]) + list(d[:, 1])
    return [_ds(v) for v in ipp], [_ds(v) for v in iop]


def save(ds: Dataset, path, implicit_vr: bool = False, little_endian: bool = True) -> None:
    """Write *ds* as a DICOM file with this encoding, with pydicom 3 or 2.4 (what Slicer ships)."""
    if int(pydicom.__version__.split(".")[0]) >= 3:
        if little_endian:
            pydicom.dcmwrite(path, ds, enforce_file_format=True, implicit_vr=implicit_vr, little_endian=True)
        else:  # retired big endian: pydicom 3 writes it only when forced
            pydicom.dcmwrite(path, ds, implicit_vr=implicit_vr, little_endian=False, force_encoding=True)
    else:  # pydicom 2.4: the encoding is set on the dataset
        ds.is_implicit_VR, ds.is_little_endian = implicit_vr, little_endian
        pydicom.dcmwrite(path, ds, write_like_original=False)


def rewrite_without_preamble(path, implicit_vr: bool, keep_file_meta: bool) -> None:
    """Rewrite a DICOM file as some older or research software writes it: no 128-byte preamble and
    no ``DICM`` marker; the data set starts at byte 0 (with or without its group-0002 file meta)."""
    ds = pydicom.dcmread(path)
    ds.preamble = None
    if keep_file_meta:
        ds.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit_vr
                                          else pydicom.uid.ExplicitVRLittleEndian)
    else:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=False, implicit_vr=implicit_vr, little_endian=True)
    else:  # pydicom 2.4
        ds.is_implicit_VR, ds.is_little_endian = implicit_vr, True
        ds.save_as(path, write_like_original=True)


def _write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save(ds, path)
    return path


def _classic_slice(vendor: str, img: sitk.Image, stored: np.ndarray, k: int, *, slope: float, intercept: float,
                   study_uid: str, for_uid: str, series_uid: str, series_number: int, description: str,
                   sop_uid: str, instance: int, tags: dict) -> Dataset:
    v = VENDORS[vendor]
    ds = _base_dataset(MR_IMAGE_STORAGE, sop_uid, study_uid, for_uid)
    for key in ("Manufacturer", "ManufacturerModelName", "ImageType", "ScanningSequence", "SequenceVariant",
                "ScanOptions", "SequenceName", "RepetitionTime", "EchoTime", "FlipAngle"):
        setattr(ds, key, v[key])
    ds.SeriesDescription = description
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance
    ds.MRAcquisitionType = "3D"
    ds.SeriesTime = _tm(SERIES_START)
    ipp, iop = _slice_geometry(img, k)
    ds.ImagePositionPatient = ipp
    ds.ImageOrientationPatient = iop
    sp = img.GetSpacing()
    ds.PixelSpacing = [_ds(sp[1]), _ds(sp[0])]
    ds.SliceThickness = _ds(sp[2])
    ds.SpacingBetweenSlices = _ds(sp[2])
    normal = np.asarray(img.GetDirection()).reshape(3, 3)[:, 2]
    ds.SliceLocation = _ds(float(np.dot(np.asarray(img.TransformIndexToPhysicalPoint((0, 0, k))), normal)))
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    ds.RescaleSlope = _ds(slope)
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleType = "US"
    ds.WindowCenter = "600"
    ds.WindowWidth = "1200"
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    return ds


def _file_names(n: int, rng: np.random.Generator) -> list[str]:
    """Shuffled, scanner-like file names: nothing may depend on them."""
    return [f"IM{v:05d}" for v in rng.permutation(n) + 1]


def write_ge_multiphase(fx: FixtureExam, folder: Path, *, series_number: int = 7,
                        tags_per_phase: list[str] | None = None) -> list[Path]:
    """GE style: one series, every phase; times only in TriggerTime.

    ``tags_per_phase`` chooses which temporal tags are written (default TemporalPositionIdentifier,
    NumberOfTemporalPositions and TriggerTime); the AcquisitionTime is the series start throughout.
    """
    if tags_per_phase is None:
        tags_per_phase = ["TemporalPositionIdentifier", "NumberOfTemporalPositions", "TriggerTime"]
    exam = fx.exam
    rng = np.random.default_rng(fx.seed + 101)
    study_uid, for_uid = _uid("study", fx.seed), _uid("for", fx.seed)
    series_uid = _uid("ge-series", fx.seed, series_number, _grid_key(fx))
    nz = exam.pre.GetSize()[2]
    names = _file_names(nz * exam.n_phases, rng)
    paths = []
    fx.slopes = []
    n = 0
    for p, img in enumerate(exam.phases):
        stored, slope, intercept = encode(sitk.GetArrayFromImage(img), signed=True)
        fx.slopes.append(slope)
        for k in range(nz):
            tags = {"AcquisitionTime": _tm(SERIES_START), "ContentTime": _tm(SERIES_START), "AcquisitionNumber": 1}
            all_tags = {"TemporalPositionIdentifier": p + 1, "NumberOfTemporalPositions": exam.n_phases,
                        "TriggerTime": _ds(round(exam.times_min[p] * 60000.0, 3))}
            tags.update({t: all_tags[t] for t in tags_per_phase if t in all_tags})
            # GE numbers instances phase by phase, but from head to feet: against the slice order.
            instance = p * nz + (nz - k)
            ds = _classic_slice("ge", img, stored[k], k, slope=slope, intercept=intercept, study_uid=study_uid,
                                for_uid=for_uid, series_uid=series_uid, series_number=series_number,
                                description=VENDORS["ge"]["SeriesDescription"],
                                sop_uid=_uid("ge", fx.seed, p, k, series_number, _grid_key(fx)), instance=instance,
                                tags=tags)
            paths.append(_write(ds, folder / f"{series_number:03d}" / names[n]))
            n += 1
    return paths


def write_siemens_per_phase(fx: FixtureExam, folder: Path, *, first_series: int = 10, bolus_after_pre_s: float = 20.0,
                            descriptions: list[str] | None = None) -> list[Path]:
    """Siemens style: one series per phase, AcquisitionTime per phase, ContrastBolusStartTime."""
    exam = fx.exam
    rng = np.random.default_rng(fx.seed + 202)
    study_uid, for_uid = _uid("study", fx.seed), _uid("for", fx.seed)
    nz = exam.pre.GetSize()[2]
    bolus = SERIES_START + dt.timedelta(seconds=bolus_after_pre_s)
    paths = []
    fx.slopes = []
    for p, img in enumerate(exam.phases):
        stored, slope, intercept = encode(sitk.GetArrayFromImage(img), signed=False)
        fx.slopes.append(slope)
        start = SERIES_START + dt.timedelta(minutes=exam.times_min[p])
        series_number = first_series + p
        series_uid = _uid("siemens-series", fx.seed, p, series_number, _grid_key(fx))
        desc = (descriptions[p] if descriptions else
                VENDORS["siemens"]["SeriesDescription"] + ("_pre" if p == 0 else f"_post{p}"))
        names = _file_names(nz, rng)
        for k in range(nz):
            # Siemens 3D: AcquisitionTime is the start of the measurement for every slice; ContentTime later.
            tags = {"AcquisitionTime": _tm(start), "ContentTime": _tm(start + dt.timedelta(seconds=75)),
                    "SeriesTime": _tm(start), "AcquisitionNumber": 1,
                    "ContrastBolusAgent": "Gadovist", "ContrastBolusStartTime": _tm(bolus)}
            ds = _classic_slice("siemens", img, stored[k], k, slope=slope, intercept=intercept, study_uid=study_uid,
                                for_uid=for_uid, series_uid=series_uid, series_number=series_number,
                                description=desc, sop_uid=_uid("siemens", fx.seed, p, k, series_number, _grid_key(fx)),
                                instance=nz - k, tags=tags)
            paths.append(_write(ds, folder / f"{series_number:03d}_{desc}" / f"{names[k]}.dcm"))
    return paths


def write_siemens_single_series(fx: FixtureExam, folder: Path, *, series_number: int = 20,
                                time_tag: str = "AcquisitionTime", with_acq_number: bool = True) -> list[Path]:
    """All phases in one series told apart by AcquisitionNumber and/or one time tag
    (``time_tag`` = "AcquisitionTime" or "ContentTime"; the other is left out)."""
    exam = fx.exam
    rng = np.random.default_rng(fx.seed + 303)
    study_uid, for_uid = _uid("study", fx.seed), _uid("for", fx.seed)
    series_uid = _uid("siemens-single", fx.seed, series_number, _grid_key(fx))
    nz = exam.pre.GetSize()[2]
    names = _file_names(nz * exam.n_phases, rng)
    paths = []
    fx.slopes = []
    n = 0
    for p, img in enumerate(exam.phases):
        stored, slope, intercept = encode(sitk.GetArrayFromImage(img), signed=False)
        fx.slopes.append(slope)
        start = SERIES_START + dt.timedelta(minutes=exam.times_min[p])
        for k in range(nz):
            tags = {time_tag: _tm(start)}
            if with_acq_number:
                tags["AcquisitionNumber"] = p + 1
            ds = _classic_slice("siemens", img, stored[k], k, slope=slope, intercept=intercept, study_uid=study_uid,
                                for_uid=for_uid, series_uid=series_uid, series_number=series_number,
                                description="t1_fl3d_tra_dynaVIEWS",
                                sop_uid=_uid("single", fx.seed, p, k, series_number, _grid_key(fx)), instance=n + 1,
                                tags=tags)
            if time_tag != "AcquisitionTime" and "AcquisitionTime" in ds:
                del ds.AcquisitionTime
            paths.append(_write(ds, folder / names[n]))
            n += 1
    return paths


def _seq(**kwargs) -> DicomSequence:
    item = Dataset()
    for k, v in kwargs.items():
        setattr(item, k, v)
    return DicomSequence([item])


def write_philips_enhanced(fx: FixtureExam, folder: Path, *, series_number: int = 1401) -> Path:
    """Philips style: one Enhanced MR Image instance holding every phase (frames slice-major)."""
    exam = fx.exam
    img0 = exam.pre
    nx, ny, nz = img0.GetSize()
    study_uid, for_uid = _uid("study", fx.seed), _uid("for", fx.seed)
    sop_uid = _uid("philips", fx.seed, series_number, _grid_key(fx))
    ds = _base_dataset(ENHANCED_MR_STORAGE, sop_uid, study_uid, for_uid)
    ds.Manufacturer = "Philips Medical Systems"
    ds.ManufacturerModelName = "Ingenia"
    ds.SeriesDescription = "sWIP DYN_eTHRIVE"
    ds.SeriesInstanceUID = _uid("philips-series", fx.seed, series_number, _grid_key(fx))
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"]
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.MRAcquisitionType = "3D"
    ds.AcquisitionDateTime = STUDY_DATE + _tm(SERIES_START)
    ds.ContentTime = _tm(SERIES_START)
    ds.SeriesTime = _tm(SERIES_START)
    ds.AcquisitionNumber = 1
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PresentationLUTShape = "IDENTITY"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.NumberOfTemporalPositions = exam.n_phases
    d = np.asarray(img0.GetDirection()).reshape(3, 3)
    sp = img0.GetSpacing()
    shared = Dataset()
    shared.PlaneOrientationSequence = _seq(ImageOrientationPatient=[_ds(v) for v in list(d[:, 0]) + list(d[:, 1])])
    shared.PixelMeasuresSequence = _seq(PixelSpacing=[_ds(sp[1]), _ds(sp[0])], SliceThickness=_ds(sp[2]),
                                        SpacingBetweenSlices=_ds(sp[2]))
    shared.MRTimingAndRelatedParametersSequence = _seq(RepetitionTime=4.4, FlipAngle=12.0, EchoTrainLength=1)
    shared.MREchoSequence = _seq(EffectiveEchoTime=2.2)
    shared.MRImageFrameTypeSequence = _seq(FrameType=["ORIGINAL", "PRIMARY", "M_FFE", "M"],
                                           PixelPresentation="MONOCHROME", VolumetricProperties="VOLUME",
                                           VolumeBasedCalculationTechnique="NONE", ComplexImageComponent="MAGNITUDE",
                                           AcquisitionContrast="T1")
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    dim_uid = _uid("dim", fx.seed)
    dims = []
    for pointer, group in ((0x00209056, 0x00209111), (0x00209057, 0x00209111), (0x00209128, 0x00209111)):
        it = Dataset()
        it.DimensionOrganizationUID = dim_uid
        it.DimensionIndexPointer = pointer
        it.FunctionalGroupPointer = group
        dims.append(it)
    ds.DimensionIndexSequence = DicomSequence(dims)
    dim_org = Dataset()
    dim_org.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = DicomSequence([dim_org])

    encoded = []
    fx.slopes = []
    for img in exam.phases:
        # 12-bit storage, a different scale per dynamic (as Philips does).
        arr = sitk.GetArrayFromImage(img).astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        intercept = float(_ds(math.floor(lo)))
        slope = float(_ds((hi - intercept) / 4000.0))
        stored = np.clip(np.rint((arr - intercept) / slope), 0, 4095).astype(np.uint16)
        encoded.append((stored, slope, intercept))
        fx.slopes.append(slope)
    per_frame = []
    pixels = []
    for k in range(nz):  # slice-major: all dynamics of slice 1, then slice 2, ...
        ipp = [_ds(v) for v in img0.TransformIndexToPhysicalPoint((0, 0, k))]
        for p in range(exam.n_phases):
            stored, slope, intercept = encoded[p]
            t = SERIES_START + dt.timedelta(minutes=exam.times_min[p])
            fg = Dataset()
            fg.FrameContentSequence = _seq(
                FrameAcquisitionNumber=p + 1, FrameReferenceDateTime=STUDY_DATE + _tm(t),
                FrameAcquisitionDateTime=STUDY_DATE + _tm(t), FrameAcquisitionDuration=60000.0,
                StackID="1", InStackPositionNumber=k + 1, TemporalPositionIndex=p + 1,
                DimensionIndexValues=[1, k + 1, p + 1])
            fg.PlanePositionSequence = _seq(ImagePositionPatient=ipp)
            fg.PixelValueTransformationSequence = _seq(RescaleIntercept=_ds(intercept), RescaleSlope=_ds(slope),
                                                       RescaleType="US")
            fg.TemporalPositionSequence = _seq(TemporalPositionTimeOffset=round(exam.times_min[p] * 60.0, 4))
            per_frame.append(fg)
            pixels.append(stored[k])
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.NumberOfFrames = len(per_frame)
    ds.PixelData = np.ascontiguousarray(np.stack(pixels)).tobytes()
    return _write(ds, folder / "DICOM" / "IM_0001")


# ------------------------------------------------------------------------------------ other series
def write_extras(fx: FixtureExam, folder: Path, vendor: str = "siemens") -> list[Path]:
    """Series a real exam holds besides the DCE: 3-plane localizer, T2, a scanner subtraction, an SR."""
    exam = fx.exam
    study_uid, for_uid = _uid("study", fx.seed), _uid("for", fx.seed)
    paths = []
    pre = exam.pre
    arr0 = sitk.GetArrayFromImage(exam.phases[0])
    arr1 = sitk.GetArrayFromImage(exam.phases[1])
    # 3-plane localizer: one slice per orientation, same series.
    loc_uid = _uid("loc", _grid_key(fx), fx.seed)
    for i, orient in enumerate(("axial", "sagittal", "oblique-axial")):
        img = sitk.Image(pre.GetSize(), sitk.sitkFloat32)
        img.SetSpacing((2.0, 2.0, 5.0))
        img.SetDirection(tuple(ORIENTATIONS[orient].ravel()))
        img.SetOrigin((-60.0, -60.0, 0.0))
        stored, slope, intercept = encode(arr0[len(arr0) // 2][None], signed=False)
        ds = _classic_slice(vendor, img, stored[0], 0, slope=slope, intercept=intercept, study_uid=study_uid,
                            for_uid=for_uid, series_uid=loc_uid, series_number=1, description="localizer",
                            sop_uid=_uid("loc", _grid_key(fx), fx.seed, i), instance=i + 1, tags={})
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        paths.append(_write(ds, folder / "extras" / "loc" / f"L{i}"))
    # T2-weighted TSE on the same grid.
    t2_uid = _uid("t2", _grid_key(fx), fx.seed)
    stored, slope, intercept = encode(arr0[::-1].copy(), signed=False)
    for k in range(stored.shape[0]):
        ds = _classic_slice(vendor, pre, stored[k], k, slope=slope, intercept=intercept, study_uid=study_uid,
                            for_uid=for_uid, series_uid=t2_uid, series_number=3, description="t2_tse_tra",
                            sop_uid=_uid("t2", _grid_key(fx), fx.seed, k), instance=k + 1,
                            tags={"EchoTime": "85", "RepetitionTime": "4200", "SequenceName": "*tse2d1_17",
                                  "ScanningSequence": "SE"})
        paths.append(_write(ds, folder / "extras" / "t2" / f"T{k}"))
    # Scanner-made subtraction (phase 1 - phase 0), same sequence tags as the DCE.
    sub_uid = _uid("sub", _grid_key(fx), fx.seed)
    stored, slope, intercept = encode(arr1 - arr0, signed=False)
    for k in range(stored.shape[0]):
        ds = _classic_slice(vendor, pre, stored[k], k, slope=slope, intercept=intercept, study_uid=study_uid,
                            for_uid=for_uid, series_uid=sub_uid, series_number=30,
                            description="t1_fl3d_tra_dyn_SUB1", sop_uid=_uid("sub", _grid_key(fx), fx.seed, k),
                            instance=k + 1,
                            tags={"AcquisitionTime": _tm(SERIES_START + dt.timedelta(minutes=exam.times_min[1]))})
        ds.ImageType = ["DERIVED", "PRIMARY", "M", "SUBTRACTION", "NORM"]
        paths.append(_write(ds, folder / "extras" / "sub" / f"S{k}"))
    # A non-image object (basic text SR) in the same study.
    sr = _base_dataset(BASIC_TEXT_SR, _uid("sr", _grid_key(fx), fx.seed), study_uid, for_uid, modality="SR")
    sr.SeriesInstanceUID = _uid("sr-series", _grid_key(fx), fx.seed)
    sr.SeriesNumber = 99
    sr.InstanceNumber = 1
    sr.ValueType = "CONTAINER"
    paths.append(_write(sr, folder / "extras" / "sr" / "SR1"))
    return paths


def write_ct_series(folder: Path, seed: int = 0, n: int = 8) -> list[Path]:
    """A small CT series (not MR): the reader must refuse it clearly."""
    study_uid, for_uid = _uid("ct-study", seed), _uid("ct-for", seed)
    series_uid = _uid("ct-series", seed)
    paths = []
    for k in range(n):
        ds = _base_dataset(CT_IMAGE_STORAGE, _uid("ct", seed, k), study_uid, for_uid, modality="CT")
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = ["0", "0", str(k * 2.5)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["0.7", "0.7"]
        ds.Rows = ds.Columns = 32
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleSlope = "1"
        ds.RescaleIntercept = "-1024"
        ds.PixelData = np.full((32, 32), 1000 + k, np.uint16).tobytes()
        paths.append(_write(ds, folder / f"CT{k}"))
    return paths


def parse_tm_seconds(tm: str) -> float:
    """Seconds since midnight of a TM string written by these fixtures."""
    return int(tm[:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:])


def seconds_to_tm(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"

"""Hostile input, third sweep (audit16): what a user gives that the first three corpora
(test_hostile_inputs.py, test_hostile_commands.py, test_hostile_commands_2.py) and the DICOM/NIfTI
"other software" tests do not try.

Refused before this sweep with a traceback, several lines or nothing (or read without a word): a ``<case>.json`` with a
byte-order mark (Notepad) or in Latin-1, acquisition times of 1e308 minutes (overflowed the kinetic
maps, exit 0), an output or ``--csv`` name longer than the file system takes (ENAMETOOLONG
traceback), ``--output ""`` (an unset shell variable: wrote into the current folder), DICOM
PixelSpacing 0 (ITK's traceback), and MetaImage/NRRD headers that claim more voxels than the file
holds (432 MB allocated per phase before MetaIO printed its own complaint), two files for one phase
(``case_0001.nii.gz`` beside ``case_0001.nrrd``: one was taken), the same file given twice as a
phase, and a DCE phase series without ImagePositionPatient (left out of the exam unsaid; now a
warning names it, as for a phase in another orientation). The other cases were
handled already and are kept here so that they stay so: 5D and flipped phases, NaN/Inf in
MHA/NRRD, a corrupt gzip stream, RGB DICOM, 65535 x 65535 rows, JPEG baseline without a decoder,
enhanced MR without positions, a DICOMDIR alone, a 32767^3 header, existing results of
followup/refine/reader-study/kinetics/phantom, non-ASCII paths.

Same harness as test_hostile_commands_2.py (cli_fixtures.run_hostile_case, check_hostile_result): a refused case exits 2
with ONE line holding ``error:``, ``Fix:`` and the expected text, no traceback, and leaves every
file of its folder as it was; a case that must work exits 0 and writes only under its output.
"""
from __future__ import annotations

import gzip
import json
import shutil
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_fixtures import EXAM_CASE as CASE  # noqa: E402
from cli_fixtures import KIN, SEG, check_hostile_result, run_hostile_case, write_small_exam  # noqa: E402

TIMEOUT_S = 120
CASES: dict[str, dict] = {}
LONG = "o" * 300  # one path component longer than the 255 bytes of ext4, xfs, tmpfs, NTFS


def case(name: str, expect: str, changes: str | None = None):
    """*expect*: text the one stderr line must hold (exit 2); *changes*: the only path that may
    change when the command must work (exit 0)."""
    def deco(fn):
        CASES[name] = {"build": fn, "expect": expect, "changes": changes}
        return fn
    return deco


# ------------------------------------------------------------------------------ input makers
def _exam(f: Path, exam: Path, name: str = "exam") -> Path:
    return Path(shutil.copytree(exam, f / name))


def _phase(exam: Path, i: int = 0) -> Path:
    return exam / f"{CASE}_{i:04d}.nii.gz"


def _rewrite(path: Path, change) -> None:
    img = sitk.ReadImage(str(path))
    arr = change(sitk.GetArrayFromImage(img))
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    sitk.WriteImage(out, str(path))


def _mask(path: Path, grid: Path) -> Path:
    _rewrite(Path(shutil.copy(grid, path)), lambda a: (np.arange(a.size).reshape(a.shape) % 7 == 0).astype(np.uint8))
    return path


def _other_format(f: Path, exam: Path, suffixes: list[str], compress: list[bool], change=None) -> Path:
    """The exam's phases written as c_000i<suffix> (MetaImage/NRRD), *change* applied to phase 1."""
    d = f / "ex"
    d.mkdir()
    for i, (suffix, packed) in enumerate(zip(suffixes, compress)):
        img = sitk.Cast(sitk.ReadImage(str(_phase(exam, i))), sitk.sitkFloat32)
        if change is not None and i == 1:
            out = sitk.GetImageFromArray(change(sitk.GetArrayFromImage(img)))
            out.CopyInformation(img)
            img = out
        sitk.WriteImage(img, str(d / f"c_{i:04d}{suffix}"), packed)
    return d


def _set(arr, index, value):
    arr = arr.astype(np.float32)
    arr[index] = value
    return arr


def _huge_nifti(path: Path, shape: tuple[int, ...]) -> Path:
    """A NIfTI-1 header claiming *shape* (int16) over 1 kB of data, gzip-compressed."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    hdr.set_data_shape((2,) * len(shape))
    hdr.set_qform(np.eye(4), 1)
    hdr.set_sform(np.eye(4), 1)
    raw = bytearray(hdr.binaryblock)
    struct.pack_into("<8h", raw, 40, len(shape), *shape, *([1] * (7 - len(shape))))
    path.write_bytes(gzip.compress(bytes(raw) + bytes(1004)))
    return path


def _dicom(f: Path, change=None) -> Path:
    """A small Siemens-style DICOM exam (one series per phase), *change(ds)* applied to every file."""
    import dicom_fixtures as dfx
    import pydicom

    paths = dfx.write_siemens_per_phase(dfx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(16, 16, 6)), f / "d")
    if change is not None:
        for p in paths:
            ds = pydicom.dcmread(p)
            change(ds)
            ds.save_as(p)
    return f / "d"


def _visits(f: Path, exam: Path, names=("v1", "v2")) -> tuple[Path, Path]:
    """Two visits: the exam and a copy whose pre-contrast differs by one voxel (not the same exam twice)."""
    a, b = _exam(f, exam, names[0]), _exam(f, exam, names[1])
    _rewrite(_phase(b), lambda arr: arr + (np.arange(arr.size).reshape(arr.shape) == 0))
    return a, b


def _reader_table(f: Path, exam: Path) -> Path:
    rows = ["case,reader,mask"]
    for c in ("a", "b"):
        for reader in ("r1", "r2", "model"):
            rows.append(f"{c},{reader},{_mask(f / f'{c}_{reader}.nii.gz', _phase(exam))}")
    (f / "t.csv").write_text("\n".join(rows) + "\n")
    return f / "t.csv"


def _click(exam: Path) -> str:
    x, y, z = sitk.ReadImage(str(_phase(exam))).TransformContinuousIndexToPhysicalPoint([10, 7, 5])
    return f"--click-lps={x},{y},{z},+"


# ------------------------------------------------------------------------------ refused before with a traceback or not at all
@case("seg_times_json_bom_works", "", changes="out")
def _(f, exam):
    ex = _exam(f, exam)
    (ex / f"{CASE}.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"acquisition_times_min": [0, 1.5, 3]}).encode())
    return SEG + [ex, "-o", f / "out"]


@case("seg_times_json_latin1", "not UTF-8")
def _(f, exam):
    ex = _exam(f, exam)
    (ex / f"{CASE}.json").write_bytes(b'{"acquisition_times_min": [0, 1.5, 3], "scanner": "Ing\xe9nia"}')
    return SEG + [ex, "-o", f / "out"]


@case("cls_times_json_1e308", "span at most a day")
def _(f, exam):
    ex = _exam(f, exam)
    (ex / f"{CASE}.json").write_text(json.dumps({"acquisition_times_min": [0, 1.5, 1e308]}))
    return ["classify", ex, "-o", f / "out", "--no-register", "--quiet"]


@case("kin_times_option_1e9", "more than a day")
def _(f, exam):
    return KIN + [_exam(f, exam), "--times", "0,1.5,1e9", "-o", f / "out"]


@case("seg_output_name_too_long", "bytes long")
def _(f, exam):
    return SEG + [_exam(f, exam), "-o", f / LONG]


@case("eval_csv_name_too_long", "bytes long")
def _(f, exam):
    m = _mask(f / "m.nii.gz", _phase(exam))
    return ["evaluate", "--pred", m, "--ref", m, "--csv", f / (LONG + ".csv")]


@case("export_table_name_too_long", "bytes long")
def _(f, exam):
    return ["study", "export", f.parent / "_study", "--partial", "--output", f / (LONG + ".csv")]


@case("seg_output_empty", "empty")
def _(f, exam):
    return SEG + [_exam(f, exam), "-o", ""]


@case("batch_output_empty", "empty")
def _(f, exam):
    _exam(f, exam, "exams/e1")
    return ["batch", f / "exams", "-o", "", "--model", "ftv", "--no-register", "--progress", "json"]


@case("dl_folder_empty_string", "empty")
def _(f, exam):
    return ["dicom-list", ""]


@case("seg_dicom_pixel_spacing_zero", "PixelSpacing")
def _(f, exam):
    def zero(ds):
        ds.PixelSpacing = ["0", "0"]
    return SEG + [_dicom(f, zero), "-o", f / "out"]


@case("seg_dicom_pixel_spacing_zero_chosen", "PixelSpacing")
def _(f, exam):
    def zero(ds):
        ds.PixelSpacing = ["0", "0"]
    return SEG + [_dicom(f, zero), "--series", "10", "11", "12", "-o", f / "out"]


@case("seg_mhd_header_larger_than_data", "truncated")
def _(f, exam):
    d = f / "ex"
    d.mkdir()
    for i in range(3):
        (d / f"c_{i:04d}.raw").write_bytes(bytes(100))
        (d / f"c_{i:04d}.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 600 600 600\nElementSpacing = 1 1 1\n"
                                          f"ElementType = MET_SHORT\nElementDataFile = c_{i:04d}.raw\n")
    return SEG + [d, "-o", f / "out"]


@case("seg_nrrd_4d_header_larger_than_data", "truncated")
def _(f, exam):
    p = f / "dce.nrrd"
    p.write_bytes(b"NRRD0004\ntype: short\ndimension: 4\nsizes: 100 100 100 30000\nspace: left-posterior-superior\n"
                  b"space directions: (1,0,0) (0,1,0) (0,0,1) none\nkinds: domain domain domain list\nendian: little\n"
                  b"encoding: raw\nspace origin: (0,0,0)\n\n" + bytes(100))
    return SEG + [p, "-o", f / "out"]


@case("kin_mha_cut_short", "truncated")
def _(f, exam):
    d = _other_format(f, exam, [".mha"] * 3, [False] * 3)
    data = (d / "c_0001.mha").read_bytes()
    (d / "c_0001.mha").write_bytes(data[:-500])
    return KIN + [d, "-o", f / "out"]


@case("seg_mha_nrrd_nhdr_phases_work", "", changes="out")
def _(f, exam):
    """MetaImage (data in the file), compressed NRRD and a detached .nhdr + raw: read, not refused."""
    return SEG + [_other_format(f, exam, [".mha", ".nrrd", ".nhdr"], [False, True, False]), "-o", f / "out"]


@case("seg_mhd_raw_phases_work", "", changes="out")
def _(f, exam):
    return SEG + [_other_format(f, exam, [".mhd", ".mha", ".nrrd"], [False, True, False]), "-o", f / "out"]


@case("seg_two_files_for_one_phase", "two files for phase")
def _(f, exam):
    ex = _exam(f, exam)
    sitk.WriteImage(sitk.ReadImage(str(_phase(ex, 1))), str(ex / f"{CASE}_0001.nrrd"))  # a second conversion
    return SEG + [ex, "-o", f / "out"]


@case("seg_same_file_twice", "given twice")
def _(f, exam):
    ex = _exam(f, exam)
    return SEG + [_phase(ex, 0), _phase(ex, 0), _phase(ex, 2), "-o", f / "out"]


@case("seg_dicom_phase_series_without_positions_warns", "no usable geometry", changes="out")
def _(f, exam):
    """The second post-contrast series lost ImagePositionPatient: left out, and said so (was left out unsaid)."""
    def drop(ds):
        if ds.SeriesNumber == 12:
            del ds.ImagePositionPatient
    return SEG + [_dicom(f, drop), "-o", f / "out"]


# ------------------------------------------------------------------------------ handled already, kept so
@case("seg_5d_phase", "not a scalar 3D volume")
def _(f, exam):
    import nibabel as nib

    ex = _exam(f, exam)
    img = nib.load(str(_phase(ex, 1)))
    a = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.stack([a, a], -1)[..., None, :], img.affine), str(_phase(ex, 1)))
    return SEG + [ex, "-o", f / "out"]


@case("seg_phase_flipped", "covers only")
def _(f, exam):
    ex = _exam(f, exam)
    sitk.WriteImage(sitk.Flip(sitk.ReadImage(str(_phase(ex, 2))), [True, False, False], True), str(_phase(ex, 2)))
    return SEG + [ex, "-o", f / "out"]


@case("seg_mha_nan_voxel", "NaN")
def _(f, exam):
    return SEG + [_other_format(f, exam, [".mha"] * 3, [True] * 3, lambda a: _set(a, (3, 3, 3), np.nan)), "-o", f / "out"]


@case("kin_nrrd_inf_voxel", "NaN")
def _(f, exam):
    return KIN + [_other_format(f, exam, [".nrrd"] * 3, [True] * 3, lambda a: _set(a, (3, 3, 3), np.inf)), "-o", f / "out"]


@case("seg_gzip_stream_corrupt", "cannot read")
def _(f, exam):
    ex = _exam(f, exam)
    data = bytearray(_phase(ex, 1).read_bytes())
    mid = len(data) // 2
    data[mid:mid + 40] = bytes(b ^ 0xFF for b in data[mid:mid + 40])
    _phase(ex, 1).write_bytes(bytes(data))
    return SEG + [ex, "-o", f / "out"]


@case("seg_huge_header_32767_cubed", "voxels per phase")
def _(f, exam):
    ex = _exam(f, exam)
    _huge_nifti(_phase(ex, 1), (32767, 32767, 32767))
    return SEG + [ex, "-o", f / "out"]


@case("fu_5d_header_of_32767_volumes", "truncated")
def _(f, exam):
    a, _b = _visits(f, exam)
    return ["followup", a, _huge_nifti(f / "v2.nii.gz", (20, 15, 10, 1, 32767)), "-o", f / "out", "--quiet"]


@case("seg_dicom_rgb", "grey-scale")
def _(f, exam):
    def rgb(ds):
        a = (ds.pixel_array % 256).astype(np.uint8)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.repeat(a[..., None], 3, -1).tobytes()
    return SEG + [_dicom(f, rgb), "-o", f / "out"]


@case("seg_dicom_rows_65535", "expected")
def _(f, exam):
    def big(ds):
        ds.Rows = ds.Columns = 65535
    return SEG + [_dicom(f, big), "-o", f / "out"]


@case("cls_dicom_jpeg_baseline_no_decoder", "decode")
def _(f, exam):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    def jpeg(ds):
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(50) + b"\xff\xd9"])
        ds["PixelData"].VR = "OB"
    return ["classify", _dicom(f, jpeg), "-o", f / "out", "--no-register", "--quiet"]


@case("seg_dicom_enhanced_without_positions", "ImagePositionPatient")
def _(f, exam):
    import dicom_fixtures as dfx
    import pydicom

    dfx.write_philips_enhanced(dfx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(16, 16, 6)), f / "d")
    for p in (f / "d").rglob("*"):
        if p.is_file():
            ds = pydicom.dcmread(p)
            for frame in ds.PerFrameFunctionalGroupsSequence:
                if "PlanePositionSequence" in frame:
                    del frame.PlanePositionSequence
            ds.save_as(p)
    return SEG + [f / "d", "-o", f / "out"]


@case("seg_dicomdir_alone", "no DICOM images")
def _(f, exam):
    from pydicom.dataset import Dataset, FileMetaDataset

    (f / "d").mkdir()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.FileSetID = "EXPORT"
    ds.DirectoryRecordSequence = []
    ds.save_as(f / "d" / "DICOMDIR", enforce_file_format=True)
    return SEG + [f / "d", "-o", f / "out"]


@case("fu_existing_results", "exists already")
def _(f, exam):
    a, b = _visits(f, exam)
    (f / "out").mkdir()
    (f / "out" / "followup.json").write_text("{}")
    return ["followup", a, b, "-o", f / "out", "--quiet"]


@case("fu_non_ascii_paths_with_spaces_work", "", changes="out ü")
def _(f, exam):
    a, b = _visits(f, exam, ("visite 1 é", "визит 2"))
    return ["followup", a, b, "-o", f / "out ü", "--quiet"]


@case("refine_existing_outputs", "exists already")
def _(f, exam):
    ex = _exam(f, exam)
    seg = _mask(f / f"{CASE}_seg.nii.gz", _phase(exam))
    (f / "out").mkdir()
    shutil.copy(seg, f / "out" / seg.name)
    return ["refine", ex, "--seg", seg, _click(ex), "-o", f / "out", "--quiet"]


@case("refine_damaged_summary", "summary")
def _(f, exam):
    ex = _exam(f, exam)
    seg = _mask(f / f"{CASE}_seg.nii.gz", _phase(exam))
    (f / f"{CASE}.json").write_bytes(b'{"settings": {"threshold": 0.\xff')  # cut off mid-write, bad byte
    return ["refine", ex, "--seg", seg, _click(ex), "-o", f / "out", "--quiet"]


@case("refine_summary_not_an_object", "summary")
def _(f, exam):
    ex = _exam(f, exam)
    seg = _mask(f / f"{CASE}_seg.nii.gz", _phase(exam))
    (f / f"{CASE}.json").write_text("[1, 2, 3]")
    return ["refine", ex, "--seg", seg, _click(ex), "-o", f / "out", "--quiet"]


@case("rs_existing_report", "exists already")
def _(f, exam):
    table = _reader_table(f, exam)
    (f / "out").mkdir()
    (f / "out" / "summary.md").write_text("a coordinator's own notes")
    return ["reader-study", table, "--output", f / "out"]


@case("kin_existing_outputs", "exists already")
def _(f, exam):
    (f / "out").mkdir()
    (f / "out" / f"{CASE}_ftv_mask.nii.gz").write_bytes(b"x")
    return KIN + [_exam(f, exam), "-o", f / "out"]


@case("ph_existing_phantom", "exists already")
def _(f, exam):
    (f / "out" / "phantom_0003").mkdir(parents=True)
    (f / "out" / "phantom_0003" / "phantom_0003_0000.nii.gz").write_bytes(b"mine")
    return ["phantom", "--seed", "3", "--output", f / "out"]


@case("ph_huge_seed_range", "more than 100,000 seeds")
def _(f, exam):  # refused at once, before a list of a billion seeds is built (it took 40 s)
    return ["phantom", "--seed", "0-999999999", "--output", f / "out"]


# ------------------------------------------------------------------------------ harness
def _run_case(name: str, root: Path, exam: Path) -> dict:
    return run_hostile_case(CASES[name], name, root, exam, TIMEOUT_S)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from BreastTumorSegLib.cli import main

    root = tmp_path_factory.mktemp("hostile_commands_3")
    exam = write_small_exam(root / "_exam")
    (root / "_cases.csv").write_text(f"case,path\nc1,{exam}\n")
    assert main(["study", "init", "--cases", str(root / "_cases.csv"), "--readers", "a,b", "--no-breast-region",
                 "--seed", "1", "--output", str(root / "_study")]) == 0
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(CASES, pool.map(lambda n: _run_case(n, root, exam), CASES)))


def test_every_command_family_is_tried():
    prefixes = {n.split("_")[0] for n in CASES}
    assert prefixes >= {"seg", "cls", "kin", "eval", "export", "batch", "dl", "fu", "refine", "rs", "ph"}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_command_3(results, name):
    check_hostile_result(results[name])

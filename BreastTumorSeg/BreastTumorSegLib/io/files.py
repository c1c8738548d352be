"""Loading DCE exams from NIfTI/NRRD and writing results atomically.

Accepted inputs (see :func:`load_exam`):

* a folder in MAMA-MIA / nnU-Net raw naming: ``<case>_0000.nii.gz`` (pre-contrast),
  ``<case>_0001.nii.gz`` (first post-contrast), ... with an optional ``<case>.json`` holding
  ``{"acquisition_times_min": [0, 1.5, ...]}``;
* the phase files themselves, pre-contrast first;
* one 4D NIfTI/NRRD whose 4th axis is the phase;
* a DICOM folder (handled by :mod:`BreastTumorSegLib.io.dicom.reader` when present).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import SimpleITK as sitk

from ..core import interrupts
from ..core.errors import InputError, OutputExistsError
from ..core.exam import DCEExam, assemble_exam
from .safety import check_input_path, created_dirs, remove_empty_dirs

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_PHASE_RE = re.compile(r"^(?P<case>.+)_(?P<idx>\d{4})$")
# Refuse volumes larger than this many voxels per phase (2**28; a clinical 512x512x200 phase is
# 5.2e7, a 1024x1024x256 one 2.7e8): beyond it an exam of several float32 phases does not fit.
MAX_VOXELS_PER_PHASE = 268_435_456
# Plausible voxel spacing in mm: anything outside is a broken header (metres, or microns).
SPACING_RANGE_MM = (0.01, 50.0)


def strip_image_suffix(name: str) -> str:
    for suf in IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike, what: str = "image") -> sitk.Image:
    """Read one image file; any failure becomes an :class:`InputError` naming the file."""
    path = check_input_path(path, what)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        check_header(reader, path, what)
        _check_complete(path, reader)
        img = _read_float_nifti(path, reader, what)
        if img is None:
            img = reader.Execute()
            _check_nifti_finite(path, reader, what)
    except InputError:
        raise
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in reversed(first) if ln.strip()), "unknown reader error")
        raise InputError(f"cannot read {what} ({detail.strip()[:160]})", path,
                         "make sure the file is a complete NIfTI/NRRD/MHA image; re-export it if it was truncated") from None
    return img


def check_header(reader: sitk.ImageFileReader, path: Path, what: str) -> None:
    """Refuse implausible geometry from the header alone, before any voxel is allocated."""
    size = reader.GetSize()
    n_vox = int(np.prod(size[:3], dtype=np.int64))  # per phase: a 4D file's 4th axis is the phase
    if n_vox > MAX_VOXELS_PER_PHASE:
        raise InputError(
            f"{what} has {n_vox:,} voxels per phase ({'x'.join(map(str, size))}), more than the supported "
            f"{MAX_VOXELS_PER_PHASE:,}", path, "crop or down-sample the volume before segmenting")
    spacing = np.asarray(reader.GetSpacing(), float)[:3]
    if not (np.all(np.isfinite(reader.GetOrigin())) and np.all(np.isfinite(reader.GetDirection()))
            and np.all(np.isfinite(spacing))):
        raise InputError(f"{what} has a non-finite origin, direction or spacing in its header", path,
                         "re-export the image; its geometry is corrupt")
    lo, hi = SPACING_RANGE_MM
    if np.any(spacing < lo) or np.any(spacing > hi):
        raise InputError(f"{what} has voxel spacing {', '.join(f'{v:g}' for v in spacing)} mm, outside the "
                         f"plausible {lo:g}-{hi:g} mm", path,
                         "fix the spacing in the header (units must be millimetres) or re-export the image")


_NIFTI_FLOAT = {16: "f4", 64: "f8"}


class _NiftiHeader(NamedTuple):
    end: str  # struct byte order of the file: "<" or ">"
    code: int  # datatype code
    vox_offset: int  # where the voxels start
    slope: float
    inter: float


def _nifti_header(header: bytes) -> _NiftiHeader:
    """The fields of a NIfTI-1 header (its first 348 bytes) that the readers here need."""
    import struct

    end = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
    slope, inter = struct.unpack(end + "ff", header[112:120])
    return _NiftiHeader(end, struct.unpack(end + "h", header[70:72])[0],
                        int(struct.unpack(end + "f", header[108:112])[0]), slope, inter)


def _refuse_non_finite(bad: int, what: str, path: Path) -> None:
    if bad:
        raise InputError(f"{what} stores {bad} NaN or infinite voxel value(s)", path,
                         "re-export the image; NaN/Inf are not valid MR intensities")


def _check_nifti_finite(path: Path, reader: sitk.ImageFileReader, what: str) -> None:
    """ITK's NIfTI reader silently turns NaN and +-Inf into 0; look at the stored floats instead."""
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")) or reader.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return
    with (gzip_open(path) if name.endswith(".gz") else open(path, "rb")) as fh:
        h = _nifti_header(fh.read(348))
        if h.code not in _NIFTI_FLOAT:
            return
        fh.read(max(0, h.vox_offset - 348))
        dtype = np.dtype(h.end + _NIFTI_FLOAT[h.code])
        bad = 0
        while chunk := fh.read(dtype.itemsize << 20):
            usable = len(chunk) - len(chunk) % dtype.itemsize
            bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(chunk[:usable], dtype))))
    _refuse_non_finite(bad, what, path)


def _inflate_module():
    """ISA-L's zlib-compatible module when installed (a dependency: ~1.7x faster inflate, measured on
    the benchmark phases), else the standard library's zlib: the same bytes either way."""
    try:
        from isal import isal_zlib
        return isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps working without it
        import zlib
        return zlib


def _read_float_nifti(path: Path, reader: sitk.ImageFileReader, what: str) -> sitk.Image | None:
    """A float 3D NIfTI read with one decompression: voxels from the file, geometry from ITK's header.

    ITK's reader turns NaN/Inf into 0, so a float NIfTI must be looked at as stored; reading it
    here and checking it on the way costs one decompression instead of two (ITK's, then ours).
    Only the plain case is taken (NIfTI-1, float32/64, 3D, no intensity scaling, one gzip
    member); anything else returns None and goes through ITK plus :func:`_check_nifti_finite`.
    The voxel order is the file's (i fastest), which is what ``GetImageFromArray`` expects of a
    (k, j, i) array, and origin, spacing and direction are ITK's own reading of the header, so
    the image equals ``reader.Execute()`` wherever the data are finite (tested).
    """
    import struct

    name = path.name.lower()
    if (not name.endswith((".nii", ".nii.gz")) or reader.GetDimension() != 3
            or reader.GetNumberOfComponents() != 1
            or reader.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64)):
        return None
    raw = path.read_bytes()
    if name.endswith(".gz"):
        zlib = _inflate_module()
        d = zlib.decompressobj(wbits=31)
        try:
            data = d.decompress(raw)
        except zlib.error:
            return None  # let ITK's reader say what is wrong
        if not d.eof or d.unused_data:
            return None  # cut short, or several gzip members
    else:
        data = raw
    del raw
    if len(data) < 348 or struct.unpack("<i", data[:4])[0] not in (348, 0x5C010000):  # NIfTI-1, either order
        return None
    h = _nifti_header(data[:348])
    if h.code not in _NIFTI_FLOAT or h.slope not in (0.0, 1.0) or h.inter != 0.0:
        return None
    dtype = np.dtype(h.end + _NIFTI_FLOAT[h.code])
    size = reader.GetSize()
    n = int(np.prod(size, dtype=np.int64))
    if len(data) < h.vox_offset + n * dtype.itemsize:
        return None
    arr = np.frombuffer(data, dtype, count=n, offset=h.vox_offset)
    _refuse_non_finite(int(np.count_nonzero(~np.isfinite(arr))), what, path)
    img = sitk.GetImageFromArray(arr.reshape(size[::-1]).astype(dtype.newbyteorder("="), copy=False))
    img.SetOrigin(reader.GetOrigin())
    img.SetSpacing(reader.GetSpacing())
    img.SetDirection(reader.GetDirection())
    return img


_BYTES = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2,
          sitk.sitkUInt32: 4, sitk.sitkInt32: 4, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8,
          sitk.sitkUInt64: 8, sitk.sitkInt64: 8}


def _check_complete(path: Path, reader: sitk.ImageFileReader) -> None:
    """Refuse truncated NIfTI files, which ITK would otherwise read with zero-filled voxels.

    The header says how many bytes the file must hold. For ``.nii`` that is the file size; for
    ``.nii.gz`` the gzip trailer stores the uncompressed size (mod 2**32), read in O(1) from
    the last four bytes — a truncated stream has no trailer, so those bytes are compressed data
    and match the expected size with a chance of 1 in 2**32.
    """
    import struct

    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    gz = name.endswith(".gz")
    try:
        with (gzip_open(path) if gz else open(path, "rb")) as fh:
            header = fh.read(348)
    except (OSError, EOFError) as exc:
        raise InputError(f"file is truncated or not gzip-compressed ({exc})", path,
                         "re-export or re-copy the complete file") from None
    if len(header) < 348:
        raise InputError("file is truncated (incomplete NIfTI header)", path, "re-export or re-copy the complete file")
    vox_offset = _nifti_header(header).vox_offset
    per_voxel = _BYTES.get(reader.GetPixelID(), 0) * reader.GetNumberOfComponents()
    if not per_voxel:
        return
    need = vox_offset + int(np.prod(reader.GetSize())) * per_voxel
    if gz:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            stored = struct.unpack("<I", fh.read(4))[0]
        if stored != need % 2 ** 32 and _gzip_length(path) < need:  # slow path only when in doubt
            raise InputError("file is truncated (the compressed stream does not hold the whole image)", path,
                             "re-export or re-copy the complete file")
    elif path.stat().st_size < need:
        raise InputError(f"file is truncated ({path.stat().st_size:,} of {need:,} bytes)", path,
                         "re-export or re-copy the complete file")


def _gzip_length(path: Path) -> int:
    """Uncompressed length of a gzip file; -1 when the stream is cut short or corrupt."""
    import zlib

    d = zlib.decompressobj(wbits=31)
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            try:
                n += len(d.decompress(chunk))
            except zlib.error:
                return -1
    return n if d.eof else -1


def gzip_open(path):
    import gzip

    return gzip.open(path, "rb")


def read_mask(path: str | os.PathLike, what: str = "mask", threshold: float | None = None) -> sitk.Image:
    """A binary 3D mask (uint8 0/1) from a label-map file: voxels > 0 are inside.

    Refused, naming the file: a 4D or multi-component image, non-finite or negative values,
    fractional values (a probability map: binarize it with *threshold*, ``p >= threshold``)
    and several different labels (a multi-label map is not one mask)."""
    img = read_image(path, what)
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        dims = f"{img.GetDimension()}D" + ("" if img.GetNumberOfComponentsPerPixel() == 1
                                            else f" with {img.GetNumberOfComponentsPerPixel()} components per voxel")
        raise InputError(f"{what} is {dims}, not a 3D label map", path,
                         "give one 3D mask (export the segment as a label map; split a 4D file first)")
    arr = sitk.GetArrayViewFromImage(img)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InputError(f"{what} holds NaN or infinite values", path, "give a label map of 0 and 1")
    if threshold is not None:
        return sitk.Cast(img >= threshold, sitk.sitkUInt8)
    if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
        raise InputError(f"{what} has fractional values (a probability map?)", path,
                         "pass --threshold (e.g. 0.5) to binarize it, or give the label map")
    inside = arr[arr != 0]
    if inside.size and inside.min() < 0:
        raise InputError(f"{what} holds negative values ({float(inside.min()):g})", path, "give a label map of 0 and 1")
    if inside.size and inside.min() != inside.max():
        raise InputError(f"{what} is not binary: it holds labels {float(inside.min()):g} to {float(inside.max()):g}",
                         path, "give a mask of 0 and 1 (export the tumor segment alone)")
    return sitk.Cast(img != 0, sitk.sitkUInt8)


def _split_4d(img: sitk.Image, path: Path) -> list[sitk.Image]:
    size = img.GetSize()
    phases = []
    for t in range(size[3]):
        extractor = sitk.ExtractImageFilter()
        extractor.SetSize([size[0], size[1], size[2], 0])
        extractor.SetIndex([0, 0, 0, t])
        phases.append(extractor.Execute(img))
    return phases


def _read_times(json_path: Path, n: int) -> list[float] | None:
    if not os.path.lexists(json_path):
        return None
    check_input_path(json_path, "acquisition-time file")
    try:
        data = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot parse acquisition-time file ({exc})", json_path,
                         'write it as {"acquisition_times_min": [0, 1.5, 3.0]}') from None
    times = data.get("acquisition_times_min") if isinstance(data, dict) else None
    if times is None:
        raise InputError('no "acquisition_times_min" list in acquisition-time file', json_path,
                         'write it as {"acquisition_times_min": [0, 1.5, 3.0]}')
    if not isinstance(times, list) or len(times) != n or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
        raise InputError(f'"acquisition_times_min" must list {n} numbers (one per phase), got {times!r}',
                         json_path, f"give {n} times in minutes, e.g. [0, 1.5, 3.0], or pass --times")
    return [float(t) for t in times]


def find_phase_files(folder: Path) -> tuple[str, list[Path]]:
    """Phase files of a MAMA-MIA style folder, ordered by their 4-digit index."""
    groups: dict[str, dict[int, Path]] = {}
    images = [p for p in sorted(folder.iterdir()) if p.name.lower().endswith(IMAGE_SUFFIXES)]
    for p in images:
        m = _PHASE_RE.match(strip_image_suffix(p.name))
        if m:
            check_input_path(p, "phase file")  # a pipe, device, folder or link loop: refused by name
            groups.setdefault(m["case"], {})[int(m["idx"])] = p
    if not groups:
        if len(images) == 1:
            raise InputError(f"no phase files named <case>_0000, <case>_0001, ... found; the folder holds one "
                             f"image, {images[0].name}", folder,
                             "if it is a 4D exam (all phases in one file), pass that file instead of the folder")
        images_dir = Path(folder) / "images"
        if images_dir.is_dir():  # a MAMA-MIA root: images/<case>/<case>_0000.nii.gz ...
            first = next((d.name for d in sorted(images_dir.iterdir()) if d.is_dir()), "<case>")
            raise InputError("this is a dataset root (MAMA-MIA layout: images/<case>/...), not one exam", folder,
                             f"point at one exam, e.g. {images_dir / first}, or run `breasttumorseg batch {folder}` "
                             "for every exam")
        raise InputError("no phase files named <case>_0000, <case>_0001, ... found", folder,
                         "name the pre-contrast <case>_0000.nii.gz and post-contrast phases _0001, _0002, ...; "
                         "or pass the phase files in order")
    if len(groups) > 1:
        raise InputError(f"the folder holds phase files of several cases ({', '.join(sorted(groups))})", folder,
                         "put one exam per folder, or pass the phase files explicitly")
    case, by_idx = next(iter(groups.items()))
    idx = sorted(by_idx)
    if idx[0] != 0:
        raise InputError(f"pre-contrast phase {case}_0000 is missing", folder,
                         "add the pre-contrast image as <case>_0000")
    missing = sorted(set(range(idx[-1] + 1)) - set(idx))
    if missing:
        raise InputError(f"phase(s) {', '.join(f'{case}_{m:04d}' for m in missing)} missing between "
                         f"{case}_0000 and {case}_{idx[-1]:04d}", folder, "add the missing phase files")
    return case, [by_idx[i] for i in idx]


def load_exam(inputs: Sequence[str | os.PathLike] | str | os.PathLike,
              times_min: Sequence[float] | None = None, case_id: str | None = None,
              series: Sequence[str | int] | None = None) -> DCEExam:
    """Load a DCE exam from a folder, a list of phase files, one 4D file, or a DICOM folder.

    ``series`` (DICOM only): series numbers or UIDs to use as the phases, overriding the
    automatic choice (see ``breasttumorseg dicom-list``).

    Phases on a grid other than the pre-contrast one are resampled onto it (linear); this is
    recorded in ``exam.metadata["resampled_phases"]``.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input given", None, "pass an exam folder or the phase files in order")
    for p in paths:
        check_input_path(p, "input", kind="any")

    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        try:
            case, files = find_phase_files(folder)
            if series:
                raise InputError("--series selects DICOM series, but this folder holds NIfTI/NRRD phase files",
                                 "--series", "drop --series; the phase files are used in their _0000, _0001 order")
        except InputError as exc:
            if exc.source == "--series":
                raise
            from .dicom import reader as dicom  # DICOM folders have no phase naming
            if dicom.folder_has_dicom(folder):
                return dicom.load_dicom_exam(folder, times_min=times_min, case_id=case_id, series=series)
            raise
        times = list(times_min) if times_min is not None else _read_times(folder / f"{case}.json", len(files))
        return _check_signal(_load_phase_list(files, times, case_id or case))

    if series:
        raise InputError("--series selects DICOM series and needs a DICOM folder as input", "--series",
                         "pass the DICOM folder, or drop --series for image files")
    if len(paths) == 1:
        img = read_image(paths[0], "exam")
        if img.GetDimension() == 4:
            phases = _split_4d(img, paths[0])
            name = case_id or strip_image_suffix(paths[0].name)
            return _check_signal(assemble_exam(phases, times_min, name,
                                               [f"{paths[0].name}[{i}]" for i in range(len(phases))]))
        raise InputError(
            "a single 3D file is only one phase; a DCE exam needs a pre-contrast and at least one "
            "post-contrast phase", paths[0],
            "pass the exam folder, every phase file in order, or a 4D file")

    for p in paths:
        if p.is_dir():
            raise InputError("expected phase files but found a folder among them", p,
                             "pass either one exam folder or the phase files, not both")
    name = case_id
    if name is None:
        m = _PHASE_RE.match(strip_image_suffix(paths[0].name))
        name = m["case"] if m else strip_image_suffix(paths[0].name)
    return _check_signal(_load_phase_list(paths, list(times_min) if times_min is not None else None, name))


def _check_signal(exam: DCEExam) -> DCEExam:
    """Refuse phases without any signal (all voxels equal, e.g. all zero): nothing can be segmented."""
    for i, img in enumerate(exam.phases):
        arr = sitk.GetArrayViewFromImage(img)
        lo, hi = float(arr.min()), float(arr.max())
        if lo == hi:
            raise InputError(f"phase {i} holds no image (every voxel is {lo:g})", exam.sources[i],
                             "check the export; this phase is empty")
    return exam


def _read_phases(files: list[Path]) -> list[sitk.Image]:
    """Read the phase files two at a time (decompression releases the GIL); the first error wins."""
    from ..core.interrupts import joined_pool

    with joined_pool(min(2, os.cpu_count() or 1), "phase-reader") as pool:  # joined on every exit path
        futures = [pool.submit(read_image, f, f"phase {i}") for i, f in enumerate(files)]
        return [fut.result() for fut in futures]


def _load_phase_list(files: list[Path], times: list[float] | None, case_id: str) -> DCEExam:
    phases = []
    for i, (f, img) in enumerate(zip(files, _read_phases(files))):
        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"phase {i} is not a scalar 3D volume (dimension {img.GetDimension()}, "
                f"{img.GetNumberOfComponentsPerPixel()} component(s))", f,
                "give one 3D volume per phase, or a single 4D file holding all phases")
        phases.append(img)
    return assemble_exam(phases, times, case_id, [str(f) for f in files])


# --------------------------------------------------------------------------------- writing
def _default_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


@contextmanager
def atomic_target(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to *path*; on success it replaces *path* atomically.

    The temporary file lives in the destination folder (so the rename is atomic) and gets the
    permissions an ordinary new file would get (``mkstemp`` alone makes it private). On any
    error it is removed and *path* is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = next((s for s in IMAGE_SUFFIXES + (".seg.nrrd",) if path.name.lower().endswith(s)), path.suffix)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_image_atomic(img: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write *img* to *path* through a temporary file in the same folder and an atomic rename."""
    with atomic_target(path) as tmp:
        sitk.WriteImage(img, str(tmp), compress)
    return Path(path)


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    return write_bytes_atomic(text.encode("utf-8"), path)


def write_json_atomic(data, path: str | os.PathLike) -> Path:
    return write_text_atomic(json.dumps(data, indent=2, default=_json_default) + "\n", path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_no_overwrite(paths: Iterable[Path], overwrite: bool, option: str = "--output folder") -> None:
    """Refuse to replace existing results unless *overwrite* is set (*option* names what to change)."""
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{existing[0]}: result exists already ({len(existing)} file(s)). "
            f"Fix: choose another {option}, or pass --overwrite to replace it.")


# Staged outputs made and not yet committed or aborted: a signal that lands between making one and
# entering its ``with`` block would leave its staging folder behind; the command line aborts these
# on its way out (:func:`abort_unfinished_outputs`).
_UNFINISHED: set = set()


def abort_unfinished_outputs() -> None:
    """Abort every :class:`StagedOutputs` not committed or aborted yet (nothing of them stays)."""
    for staged in list(_UNFINISHED):
        staged.abort()


class StagedOutputs:
    """Write several result files so that either all of them appear or none does.

    Files are first written into a hidden staging folder next to the destination, then moved
    into place one by one with atomic renames once every file has been written.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self._planned: dict[str, Path] = {}
        interrupts.note_work()
        self._stage = None
        self._created = []
        try:
            with interrupts.signals_deferred():  # the folders made here are always known to abort()
                self._created = created_dirs(self.out_dir)
                try:
                    self._stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.out_dir))
                except OSError:
                    remove_empty_dirs(self._created)
                    raise
                _UNFINISHED.add(self)
        except BaseException:  # a signal held back above acts when the block ends: clean up first
            self.abort()
            raise

    def path(self, name: str) -> Path:
        """Where to write *name* now; it appears under ``out_dir`` on :meth:`commit`."""
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise InputError(f"output name {name!r} is not a plain file name", self.out_dir,
                             "use a case id without path separators or '..'")
        self._planned[name] = self.out_dir / name
        return self._stage / name

    def commit(self) -> list[Path]:
        """Move every staged file into place. SIGINT/SIGTERM wait until all are moved."""
        check_no_overwrite(self._planned.values(), self.overwrite)
        done = []
        with interrupts.signals_deferred():
            for name, dest in self._planned.items():
                os.replace(self._stage / name, dest)
                done.append(dest)
            self.abort()
            interrupts.note_commit()
        return done

    def abort(self) -> None:
        """Remove the staging folder, and the output folders made for it if they stayed empty."""
        import shutil

        with interrupts.signals_deferred():
            if self._stage is not None:
                shutil.rmtree(self._stage, ignore_errors=True)
            remove_empty_dirs(self._created)
            _UNFINISHED.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.abort()  # after a commit only the (already removed) staging folder; otherwise everything
        return False

"""Reading one image or mask file, refusing what would be misread.

:func:`read_image` refuses, naming the file: implausible header geometry (size, spacing,
non-finite origin/direction) before any voxel is allocated, truncated NIfTI files (which ITK would
zero-fill), a qform and an sform that disagree (:mod:`.nifti_xform`), a sheared orientation, and
NaN/Inf voxels (which ITK's NIfTI reader silently turns into 0). A float NIfTI is read with one
decompression. :func:`read_mask` reads a binary label map.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.exam import MAX_PHASES, SPACING_RANGE_MM
from .nifti_xform import check_dims_and_type, check_voxel_size, check_xforms_agree
from .raw_size import check_raw_size
from .safety import check_input_path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# Refuse volumes larger than this many voxels per phase (2**28; a clinical 512x512x200 phase is
# 5.2e7, a 1024x1024x256 one 2.7e8): beyond it an exam of several float32 phases does not fit.
MAX_VOXELS_PER_PHASE = 268_435_456
# SPACING_RANGE_MM (core.exam): plausible voxel spacing in mm, refused outside (metres, or microns).


def strip_image_suffix(name: str) -> str:
    for suf in IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def read_image(path: str | os.PathLike, what: str = "image") -> sitk.Image:
    """Read one image file; any failure becomes an :class:`InputError` naming the file."""
    path = check_input_path(path, what)
    _check_file_kind(path, what)
    check_dims_and_type(path, what)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        _check_header(reader, path, what)
        _check_complete(path, reader)
        check_raw_size(path)
        check_xforms_agree(path, what)
        check_voxel_size(path, what)
        img = _read_float_nifti(path, reader, what)
        if img is None:
            img = reader.Execute()
            _check_nifti_finite(path, reader, what)
        _check_fits_float32(img, path, what)
    except InputError:
        raise
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in reversed(first) if ln.strip()), "unknown reader error")
        if _is_nifti2(path):
            raise InputError(f"{what} is a NIfTI-2 file, which this reader does not support", path,
                             "save it as NIfTI-1 (dcm2niix writes NIfTI-1 unless asked for -2; nibabel: "
                             "nib.save(nib.Nifti1Image(img.dataobj, img.affine, img.header), path))") from None
        if "orthonormal" in detail:  # a sheared or skewed sform/qform: ITK holds only rotations
            raise InputError(f"{what} has a sheared or skewed orientation in its header (the axes are not at "
                             "right angles), which cannot be read as a 3D grid", path,
                             "resample the image onto a grid with perpendicular axes, or re-convert the DICOM "
                             "with dcm2niix") from None
        raise InputError(f"cannot read {what} ({detail.strip()[:160]})", path,
                         "make sure the file is a complete NIfTI/NRRD/MHA image; re-export it if it was truncated") from None
    return img


# First bytes of files that are no 3D image but are sometimes renamed or saved as one.
_OTHER_KINDS = ((b"\x89PNG", "a PNG picture"), (b"\xff\xd8\xff", "a JPEG picture"), (b"GIF8", "a GIF picture"),
                (b"II*\x00", "a TIFF picture"), (b"MM\x00*", "a TIFF picture"), (b"%PDF", "a PDF document"),
                (b"PK\x03\x04", "a ZIP archive"))


def _check_file_kind(path: Path, what: str) -> None:
    """Refuse an empty file, and a picture, document, archive or DICOM file whose name says it is a
    NIfTI/NRRD/MHA image, by what it is (ITK would report a reader or gzip failure instead)."""
    if path.stat().st_size == 0:
        raise InputError(f"{what} is an empty file (0 bytes)", path,
                         "copy or export the file again; the copy or download did not complete")
    if not path.name.lower().endswith(IMAGE_SUFFIXES):
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:  # unreadable: the image reader below says so, naming the file
        return
    kind = next((k for magic, k in _OTHER_KINDS if head.startswith(magic)), None)
    if kind is None and head[128:132] == b"DICM":
        raise InputError(f"{what} is a DICOM file, not a NIfTI/NRRD/MHA image (only its name says so)", path,
                         "pass the folder that holds the exam's DICOM files, or convert them with dcm2niix")
    if kind is not None:
        raise InputError(f"{what} is {kind}, not a NIfTI/NRRD/MHA image (only its name says so)", path,
                         "give the 3D image itself (a screenshot or picture cannot be segmented; dcm2niix "
                         "converts DICOM to NIfTI)")


def _is_nifti2(path: Path) -> bool:
    """True for a NIfTI-2 header (sizeof_hdr 540, either byte order), gzip-compressed or not."""
    import struct

    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return False
    try:
        with (_gzip_open(path) if path.name.lower().endswith(".gz") else open(path, "rb")) as fh:
            head = fh.read(4)
    except (OSError, EOFError):
        return False
    return len(head) == 4 and 540 in (struct.unpack("<i", head)[0], struct.unpack(">i", head)[0])


def _check_header(reader: sitk.ImageFileReader, path: Path, what: str) -> None:
    """Refuse implausible geometry from the header alone, before any voxel is allocated."""
    if reader.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(f"{what} stores complex voxel values (real and imaginary parts), not MR magnitudes", path,
                         "export the magnitude image from the scanner or reconstruction")
    size = reader.GetSize()
    n_vox = int(np.prod(size[:3], dtype=np.int64))  # per phase: a 4D file's 4th axis is the phase
    if n_vox > MAX_VOXELS_PER_PHASE:
        raise InputError(
            f"{what} has {n_vox:,} voxels per phase ({'x'.join(map(str, size))}), more than the supported "
            f"{MAX_VOXELS_PER_PHASE:,}", path, "crop or down-sample the volume before segmenting")
    if int(np.prod(size, dtype=np.int64)) > MAX_PHASES * MAX_VOXELS_PER_PHASE:  # a 4D/5D header of absurd length
        raise InputError(f"{what} has {'x'.join(map(str, size))} voxels in all, more than {MAX_PHASES} phases of the "
                         f"supported {MAX_VOXELS_PER_PHASE:,}", path, "give one DCE exam of at most "
                         f"{MAX_PHASES} phases, or split the file")
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


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_fits_float32(img: sitk.Image, path: Path, what: str) -> None:
    """Every image is computed on in float32: a float64 image holding finite values beyond its range
    (about 3.4e38) would turn into infinities there, and be refused later as holding NaN/Inf that
    the file does not hold."""
    if img.GetPixelID() not in (sitk.sitkFloat64, sitk.sitkVectorFloat64):
        return
    arr = sitk.GetArrayViewFromImage(img)
    finite = arr[np.isfinite(arr)]
    top = float(np.abs(finite).max()) if finite.size else 0.0
    if top > FLOAT32_MAX:
        raise InputError(f"{what} stores values up to {top:.3g}, beyond the float32 range ({FLOAT32_MAX:.3g}) "
                         "the engine computes in", path,
                         "rescale the image to ordinary MR intensities (e.g. divide it by a power of ten) and save it "
                         "as float32 or int16")


def _refuse_non_finite(bad: int, what: str, path: Path) -> None:
    if bad:
        raise InputError(f"{what} stores {bad} NaN or infinite voxel value(s)", path,
                         "re-export the image; NaN/Inf are not valid MR intensities")


def _check_nifti_finite(path: Path, reader: sitk.ImageFileReader, what: str) -> None:
    """ITK's NIfTI reader silently turns NaN and +-Inf into 0; look at the stored floats instead."""
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")) or reader.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return
    with (_gzip_open(path) if name.endswith(".gz") else open(path, "rb")) as fh:
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


# Bytes per stored component of each NIfTI-1 datatype code (RGB24/RGBA32: per colour component).
# The stored type, not ITK's pixel type: ITK reads integers with scl_slope/scl_inter as floats.
_NIFTI_COMPONENT_BYTES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 128: 1, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8,
                          2304: 1}


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
        with (_gzip_open(path) if gz else open(path, "rb")) as fh:
            header = fh.read(348)
    except (OSError, EOFError) as exc:
        raise InputError(f"file is truncated or not gzip-compressed ({exc})", path,
                         "re-export or re-copy the complete file") from None
    if len(header) < 348:
        raise InputError("file is truncated (incomplete NIfTI header)", path, "re-export or re-copy the complete file")
    h = _nifti_header(header)
    vox_offset = h.vox_offset
    per_voxel = _NIFTI_COMPONENT_BYTES.get(h.code, 0) * reader.GetNumberOfComponents()
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


def _gzip_open(path):
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

"""The two orientations a NIfTI-1 header can hold (qform and sform), checked for agreement.

A NIfTI-1 file may store its voxel-to-scanner transform twice: as a quaternion plus offset (the
qform) and as a 3x4 matrix (the sform). dcm2niix and ITK write the same transform in both. When
both are set and differ (an sform edited by a registration tool, a hand-made header), readers
disagree about where the image is: ITK picks one by its own rules, nibabel and FSL prefer the
sform, so a mask written by one program lands elsewhere in another. :func:`check_xforms_agree`
refuses such a file, naming both origins and the fix, before any voxel is read.
:func:`check_dims_and_type` refuses, before ITK's reader opens the file, a header whose size has a
zero (or negative) axis or whose voxel type no reader here can read (nifti1_io would print its own
complaint to stderr, or read a zero-size axis as one voxel).
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ..core.errors import InputError

# Agreement tolerances: the header stores float32 values, so identical transforms written by
# dcm2niix or ITK differ by ~1e-5 relative (a few thousandths of a mm at 300 mm from the origin).
TRANSLATION_TOL_MM = 0.1
LINEAR_TOL_MM = 1e-3  # per voxel step, on each entry of the 3x3 part


# NIfTI-1 datatype codes (nifti1.h) that ITK's reader reads; complex ones are read, then refused by name.
READABLE_TYPES = {2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1792, 2304}
_TYPE_NAMES = {0: "unknown (datatype 0)", 1: "1-bit binary (DT_BINARY)", 1536: "128-bit float (DT_FLOAT128)",
               2048: "256-bit complex (DT_COMPLEX256)"}


def _header_bytes(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        return fh.read(348)


def xforms(header: bytes) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(qform, sform) of a NIfTI-1 header as 4x4 RAS matrices; None where its code is 0."""
    end = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
    qcode, scode = struct.unpack(end + "hh", header[252:256])
    pixdim = struct.unpack(end + "8f", header[76:108])
    qform = sform = None
    if qcode > 0:
        b, c, d, qx, qy, qz = struct.unpack(end + "6f", header[256:280])
        # As nifti1_io.c reads it: a 180-degree rotation (a = 0, e.g. a coronal exam with flipped axes)
        # stored as float32 leaves 1 - (b^2 + c^2 + d^2) at ~3e-8, whose root would tilt the axes by 2e-4.
        a2 = 1.0 - (b * b + c * c + d * d)
        if a2 < 1e-7:
            b, c, d = np.array([b, c, d]) / np.sqrt(b * b + c * c + d * d)
        a = 0.0 if a2 < 1e-7 else np.sqrt(a2)
        rot = np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        qform = np.eye(4)
        qform[:3, :3] = rot @ np.diag([pixdim[1], pixdim[2], qfac * pixdim[3]])
        qform[:3, 3] = (qx, qy, qz)
    if scode > 0:
        sform = np.eye(4)
        sform[:3, :] = np.asarray(struct.unpack(end + "12f", header[280:328]), float).reshape(3, 4)
    return qform, sform


def check_xforms_agree(path: Path, what: str) -> None:
    """Refuse a NIfTI-1 file whose qform and sform are both set and place the image differently."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return
    header = _header_bytes(path)
    if len(header) < 348 or 348 not in (struct.unpack("<i", header[:4])[0], struct.unpack(">i", header[:4])[0]):
        return  # not NIfTI-1 (NIfTI-2 or damaged): left to ITK's reader
    qform, sform = xforms(header)
    if qform is None or sform is None:
        return
    shift = float(np.abs(qform[:3, 3] - sform[:3, 3]).max())
    linear = float(np.abs(qform[:3, :3] - sform[:3, :3]).max())
    if shift <= TRANSLATION_TOL_MM and linear <= LINEAR_TOL_MM:
        return
    # NIfTI is RAS; report LPS like the rest of the program (x and y negated).
    q0, s0 = qform[:3, 3] * (-1, -1, 1), sform[:3, 3] * (-1, -1, 1)
    differs = (f"origin {', '.join(f'{v:.1f}' for v in q0)} vs {', '.join(f'{v:.1f}' for v in s0)} mm"
               + ("" if linear <= LINEAR_TOL_MM else "; the axes (direction or spacing) differ too"))
    raise InputError(f"{what} has a qform and an sform that disagree ({differs}), so programs place it "
                     "differently", path,
                     "re-convert the DICOM with dcm2niix, or make the two agree: keep the one that is right "
                     "(e.g. nibabel: img.set_qform(img.get_sform()), or fslorient -copysform2qform)")


def check_voxel_size(path: Path, what: str) -> None:
    """Refuse a NIfTI-1 file without an sform whose pixdim holds a zero or non-finite voxel size:
    ITK would read it as 1 mm, a size nobody wrote."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return
    header = _header_bytes(path)
    if len(header) < 348 or 348 not in (struct.unpack("<i", header[:4])[0], struct.unpack(">i", header[:4])[0]):
        return
    end = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
    if struct.unpack(end + "h", header[254:256])[0] > 0:
        return  # the sform gives the voxel size
    pixdim = np.asarray(struct.unpack(end + "3f", header[80:92]), float)
    if np.all(np.isfinite(pixdim)) and np.all(pixdim != 0):
        return
    raise InputError(f"{what} has no voxel size in its header (pixdim {', '.join(f'{v:g}' for v in pixdim)} and "
                     "no sform), so its size in mm is unknown", path,
                     "re-convert the DICOM with dcm2niix, or write the voxel size in mm into the header "
                     "(nibabel: img.header.set_zooms((dx, dy, dz)))")


def check_dims_and_type(path: Path, what: str) -> None:
    """Refuse a NIfTI-1 header with a zero or negative size on one of its axes (ITK reads 0 as 1: one
    slice of the data, the rest ignored), an axis count outside 1-7, or a voxel type ITK cannot read
    (its reader then prints a nifti1_io complaint on stderr and says only "not recognized")."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return
    try:
        header = _header_bytes(path)
    except Exception:  # noqa: BLE001 - a damaged gzip stream: the reader's own checks name it
        return
    if len(header) < 348 or 348 not in (struct.unpack("<i", header[:4])[0], struct.unpack(">i", header[:4])[0]):
        return
    end = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
    dim = struct.unpack(end + "8h", header[40:56])
    code = struct.unpack(end + "h", header[70:72])[0]
    if not 1 <= dim[0] <= 7:
        raise InputError(f"{what} has a NIfTI header that declares {dim[0]} axes (1 to 7 are possible)", path,
                         "re-export or re-convert the image; its header is damaged")
    sizes = dim[1:dim[0] + 1]
    if min(sizes) <= 0:
        raise InputError(f"{what} has a NIfTI header with a zero-size axis (size {' x '.join(map(str, sizes))}), so "
                         "its voxels cannot be placed", path, "re-export or re-convert the image; its header is damaged")
    if code not in READABLE_TYPES:
        name = _TYPE_NAMES.get(code, f"code {code}, not a NIfTI-1 type")
        raise InputError(f"{what} stores its voxels as NIfTI datatype {name}, which cannot be read", path,
                         "save it as uint8, int16 or float32 (nibabel: nib.save(nib.Nifti1Image("
                         "np.asarray(img.dataobj, np.float32), img.affine), path))")

"""Slicer segmentation files (``.seg.nrrd``) written without Slicer.

A ``.seg.nrrd`` is a NRRD volume in LPS space whose header describes the segments (``Segment0_ID``,
``_Name``, ``_Color``, ``_LabelValue``, ``_Extent``, ``_Tags`` with the terminology entry) and the
segmentation (master representation, reference image geometry). The maintained ``slicerio``
library writes it with ``pynrrd``; Slicer opens the result exactly on the exam's grid, with the
segment named "Tumor", its colour, and the SNOMED CT code of a breast neoplasm. The Slicer module
puts the same segment (same ID, colour and terminology) into a segmentation node
(:mod:`..slicer.mrml_bridge`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from .atomic import atomic_target

TUMOR_SEGMENT_ID = "Tumor"
TUMOR_SEGMENT_NAME = "Tumor"
# A warm red that stands out on grey-scale MR and on Slicer's default segment colours.
TUMOR_COLOR = (0.90, 0.20, 0.15)

# Standard codes, as in DICOM CID 7150 / 7159 / 4031 and Slicer's "DICOM master list" terminologies.
CATEGORY_CONTEXT = "Segmentation category and type - DICOM master list"
REGION_CONTEXT = "Anatomic codes - DICOM master list"
TUMOR_CATEGORY = ("SCT", "49755003", "Morphologically Altered Structure")
TUMOR_TYPE = ("SCT", "108369006", "Neoplasm")
BREAST_REGION = ("SCT", "76752008", "Breast")
SIDE_MODIFIERS = {"right": ("SCT", "24028007", "Right"), "left": ("SCT", "7771000", "Left")}

_NO_CODE = ("", "", "")
# Slicer's description of the reference-geometry conversion parameter (kept as Slicer writes it).
_REFERENCE_GEOMETRY = "Reference image geometry"
_REFERENCE_GEOMETRY_HELP = ("Image geometry description string determining the geometry of the labelmap that is "
                            "created in course of conversion. Can be copied from a volume, using the button.")


def tumor_terminology(side: str | None = None) -> str:
    """Slicer terminology entry string for a breast neoplasm (with laterality for "left"/"right").

    The format (``context~category~type~type modifier~region context~region~region modifier``,
    codes as ``scheme^value^meaning``) is Slicer's ``SerializeTerminologyEntry``.
    """
    mod = SIDE_MODIFIERS.get((side or "").lower(), _NO_CODE)
    codes = [TUMOR_CATEGORY, TUMOR_TYPE, _NO_CODE]
    region = [BREAST_REGION, mod]
    return "~".join([CATEGORY_CONTEXT, *("^".join(c) for c in codes), REGION_CONTEXT, *("^".join(c) for c in region)])


def ijk_to_lps(img: sitk.Image) -> np.ndarray:
    """4x4 IJK-to-LPS matrix of a 3D SimpleITK image (columns: voxel axes scaled by spacing)."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(img.GetDirection(), float).reshape(3, 3) @ np.diag(img.GetSpacing())
    m[:3, 3] = img.GetOrigin()
    return m


def _reference_geometry(img: sitk.Image) -> str:
    """Slicer's serialized reference image geometry: IJK-to-RAS row by row, then the extent."""
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijk_to_lps(img)
    extent = [v for n in img.GetSize() for v in (0, n - 1)]
    return "".join(f"{float(v)!r};" for v in ras.ravel()) + "".join(f"{v};" for v in extent)


def write_seg_nrrd(label: sitk.Image, path: str | os.PathLike, segment_name: str = TUMOR_SEGMENT_NAME,
                   color: Sequence[float] = TUMOR_COLOR, terminology: str | None = None) -> Path:
    """Write a binary label map (voxels > 0 inside) as a one-segment Slicer ``.seg.nrrd``.

    The segment has ID and name *segment_name*, the given colour and *terminology* (default:
    :func:`tumor_terminology`); the file holds *label*'s whole grid (origin, spacing, direction)
    and names it as the reference geometry, so Slicer opens it voxel for voxel on the exam. It is
    written to a temporary file in the destination folder and renamed into place, so a reader
    never sees a partial file.
    """
    from slicerio import write_segmentation  # the .seg.nrrd format, written with pynrrd

    path = Path(path)
    if not path.name.lower().endswith(".seg.nrrd"):
        raise InputError("a Slicer segmentation file name must end in .seg.nrrd", path)
    if label.GetDimension() != 3 or label.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"expected a scalar 3D label map, got dimension {label.GetDimension()} with "
                         f"{label.GetNumberOfComponentsPerPixel()} component(s)", path)
    mask = (sitk.GetArrayViewFromImage(label) > 0).astype(np.uint8).transpose(2, 1, 0)  # (k,j,i) -> (i,j,k)
    inside = np.argwhere(mask)
    if inside.size:
        extent = [int(v) for lo, hi in zip(inside.min(0), inside.max(0)) for v in (lo, hi)]
    else:  # an empty segment spans the whole grid, as Slicer writes it
        extent = [v for n in mask.shape for v in (0, n - 1)]
    segmentation = {
        "voxels": mask,
        "ijkToLPS": ijk_to_lps(label),
        "masterRepresentation": "Binary labelmap",
        "containedRepresentationNames": ["Binary labelmap"],
        # Written as Slicer writes it: Slicer reads a parameter only when "&" ends it.
        "Segmentation_ConversionParameters":
            f"{_REFERENCE_GEOMETRY}|{_reference_geometry(label)}|{_REFERENCE_GEOMETRY_HELP}&",
        "referenceImageExtentOffset": [0, 0, 0],
        "segments": [{
            "id": segment_name, "name": segment_name, "labelValue": 1, "layer": 0,
            "color": [float(c) for c in color], "nameAutoGenerated": False, "colorAutoGenerated": False,
            "extent": extent, "tags": {"TerminologyEntry": terminology or tumor_terminology()},
        }],
    }
    with atomic_target(path) as tmp:
        write_segmentation(str(tmp), segmentation, compression_level=6)
    return path

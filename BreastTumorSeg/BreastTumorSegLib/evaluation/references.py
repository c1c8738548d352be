"""Leave-one-out consensus references of a multi-reader study (Hirsch et al. 2022).

Each reader is scored against a consensus of the *other* readers: their intersection (as Hirsch
et al.), majority vote or STAPLE. A reader is never scored against a reference that contains
their own mask (an intersection is a subset of each of its members).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from .masks import binary_mask, check_same_grid, crop_to_foreground

REFERENCE_METHODS = ("intersection", "majority", "staple")
CROP_PAD = 2  # voxels around the union of all masks of a case


def reference_name(left_out: str) -> str:
    """Name of the reference built from every reader except *left_out*."""
    return f"excl-{left_out}"


# ------------------------------------------------------------------------------ references
def _uint8(img: sitk.Image) -> sitk.Image:
    return binary_mask(img)


def combine_masks(masks: Sequence[sitk.Image], method: str = "intersection",
                  names: Sequence[str] | None = None) -> sitk.Image:
    """Consensus of several masks on one grid (uint8 0/1).

    * ``intersection``: voxels every mask contains (Hirsch et al.);
    * ``majority``: voxels more than half of the masks contain (a tie is background);
    * ``staple``: SimpleITK's STAPLE posterior ≥ 0.5. STAPLE estimates the foreground prior from the
      image it is given, so it is computed on the union of the masks' bounding box grown by
      ``CROP_PAD`` voxels, which makes it independent of how much empty space surrounds a lesion.
    """
    if method not in REFERENCE_METHODS:
        raise ValueError(f"reference method must be one of {', '.join(REFERENCE_METHODS)}, not {method!r}")
    if not masks:
        raise ValueError("no masks to combine")
    names = list(names) if names is not None else [f"mask {i + 1}" for i in range(len(masks))]
    for m, n in zip(masks[1:], names[1:]):
        check_same_grid(masks[0], m, names[0], n)
    arrays = np.stack([sitk.GetArrayFromImage(m) > 0 for m in masks])
    if method == "intersection":
        out = arrays.all(axis=0)
    elif method == "majority":
        out = arrays.sum(axis=0) * 2 > len(masks)
    else:
        out = _staple(masks, arrays)
    img = sitk.GetImageFromArray(out.astype(np.uint8))
    img.CopyInformation(masks[0])
    return img


def _staple(masks: Sequence[sitk.Image], arrays: np.ndarray) -> np.ndarray:
    if len(masks) < 2:
        raise ValueError("STAPLE needs at least two masks; use intersection with two readers")
    out = np.zeros(arrays.shape[1:], bool)
    union = arrays.any(axis=0)
    if not union.any():
        return out
    cropped = crop_to_foreground(*[_uint8(m) for m in masks], pad=CROP_PAD)
    post = sitk.GetArrayFromImage(sitk.STAPLE(cropped, 1.0)) >= 0.5
    # place the cropped result back: find the crop's offset from its origin
    offset = masks[0].TransformPhysicalPointToIndex(cropped[0].GetOrigin())
    sl = tuple(slice(o, o + n) for o, n in zip(offset[::-1], post.shape))
    out[sl] = post
    return out


def leave_one_out_references(readers: Mapping[str, sitk.Image], method: str = "intersection"
                             ) -> dict[str, sitk.Image]:
    """For each reader, the consensus of all *other* readers, keyed by the left-out reader."""
    if len(readers) < 2:
        raise ValueError("a leave-one-out reference needs at least two readers")
    names = list(readers)
    return {name: combine_masks([readers[o] for o in names if o != name], method,
                                [o for o in names if o != name]) for name in names}


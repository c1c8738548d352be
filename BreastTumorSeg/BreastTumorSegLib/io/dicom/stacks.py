"""From DICOM frames to stacks, and the role of each stack: a DCE candidate or why it is ignored.

Frames are grouped by series, image orientation, stack ID (enhanced MR) and image type, so that
e.g. the three planes of a localizer or the water/fat images of a Dixon series are never mixed.
Each stack then gets a role: :data:`DCE` for a candidate, or a reason it is ignored (not MR,
localizer, scanner-made subtraction/MIP/reformat, diffusion, long-TE T2-weighted, too few slices).
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..images import SPACING_RANGE_MM
from .geometry import MIN_SLICES, position_clusters
from .headers import Frame

# Echo times above this are not T1-weighted DCE (ms).
MAX_DCE_ECHO_TIME_MS = 30.0
MAX_DCE_REPETITION_TIME_MS = 1500.0

_LOCALIZER_RE = re.compile(r"(?<![a-z])(loc|localizer|localiser|scout|survey|3[- ]?plane|tri[- ]?pilot|aahead)"
                           r"(?![a-z])", re.IGNORECASE)
_DERIVED_RE = re.compile(r"(?<![a-z])(sub|subs|subtraction|subtract|mip|mips|mpr|reformat\w*|moco\w*|cad)"
                         r"(?![a-z])", re.IGNORECASE)
_DIFFUSION_RE = re.compile(r"(?<![a-z])(dwi|diff\w*|adc|ivim|resolve|trace\w*)(?![a-z])", re.IGNORECASE)
_T2_RE = re.compile(r"(?<![a-z])(t2\w*|stir|tirm|haste|flair)(?![a-z])", re.IGNORECASE)
_DERIVED_TYPES = {"SUBTRACTION", "SUB", "MIP", "PROJECTION IMAGE", "MPR", "REFORMATTED", "MOCO", "CAD",
                  "COLLAPSE", "SUBTRACT", "MNIP"}
_DIFFUSION_TYPES = {"DIFFUSION", "ADC", "TRACEW", "TRACE", "FA", "EADC", "CALC_BVALUE"}

DCE = "DCE"


@dataclass
class Stack:
    """Frames of one series that share orientation, stack ID and image type."""

    frames: list[Frame]
    series_number: int | None
    series_description: str
    series_uid: str
    sub_label: str = ""  # set when a series holds several stacks
    role: str = ""
    reason: str = ""
    n_volumes: int = 0

    @property
    def first(self) -> Frame:
        return self.frames[0]

    def name(self) -> str:
        num = "?" if self.series_number is None else str(self.series_number)
        desc = f" '{self.series_description}'" if self.series_description else ""
        return f"series {num}{self.sub_label}{desc}"

    @property
    def enhanced(self) -> bool:
        return self.first.is_multiframe


def orientation_key(f: Frame) -> tuple | None:
    """The frame's orientation rounded so that frames of one stack compare equal; None without one."""
    return None if f.iop is None else tuple(round(v, 3) for v in f.iop)


def make_stacks(frames: Sequence[Frame]) -> list[Stack]:
    """Group frames into stacks (series x orientation x stack ID x image type)."""
    by_key: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        by_key[(f.series_uid, orientation_key(f) or (), f.stack_id or "", f.image_type)].append(f)
    keys_of_series: dict[str, list[tuple]] = defaultdict(list)
    for key in by_key:
        keys_of_series[key[0]].append(key)
    stacks = []
    for key in sorted(by_key, key=lambda k: (_series_sort_key(by_key[k][0]), str(k))):
        fr = by_key[key]
        s = Stack(fr, fr[0].series_number, fr[0].series_description, fr[0].series_uid)
        siblings = keys_of_series[key[0]]
        if len(siblings) > 1:
            s.sub_label = f" ({_sub_label(key, siblings, fr[0])})"
        stacks.append(s)
    return stacks


def _series_sort_key(f: Frame) -> tuple:
    return (f.study_uid, f.series_number if f.series_number is not None else 10 ** 9, f.series_uid)


def _sub_label(key: tuple, siblings: list[tuple], f: Frame) -> str:
    """What tells this stack apart from the other stacks of its series."""
    if len({k[1] for k in siblings}) > 1:
        return orientation_name(f)
    if len({k[2] for k in siblings}) > 1:
        return f"stack {key[2]}"
    return "/".join(f.image_type[2:]) or "/".join(f.image_type)


def orientation_name(f: Frame) -> str:
    """'axial', 'sagittal', 'coronal', or e.g. 'oblique axial (12 deg)' from the slice normal."""
    if f.iop is None:
        return "unknown"
    n = np.cross(np.asarray(f.iop[:3]), np.asarray(f.iop[3:]))
    k = int(np.argmax(np.abs(n)))
    name = ("sagittal", "coronal", "axial")[k]
    angle = float(np.degrees(np.arccos(min(1.0, abs(n[k]) / max(np.linalg.norm(n), 1e-12)))))
    return name if angle < 0.5 else f"oblique {name} ({angle:.0f} deg)"


# ------------------------------------------------------------------------------------ roles
def classify(stack: Stack) -> tuple[str, str]:
    """(role, reason): ``DCE`` for a candidate, else a short role and why it is ignored."""
    f = stack.first
    types = set(f.image_type)
    desc = stack.series_description
    if f.modality != "MR":
        return "not MR", f"modality {f.modality or 'missing'}"
    if f.samples_per_pixel != 1:
        return "not a grey-scale image", f"{f.samples_per_pixel} samples per pixel"
    if "LOCALIZER" in types or _LOCALIZER_RE.search(desc):
        return "localizer", "image type or description says localizer"
    missing = [k for k, v in (("ImagePositionPatient", f.ipp), ("ImageOrientationPatient", f.iop),
                              ("PixelSpacing", f.pixel_spacing)) if v is None]
    if missing:
        return "no geometry", f"{', '.join(missing)} missing"
    if min(np.linalg.norm(f.iop[:3]), np.linalg.norm(f.iop[3:])) < 0.5:  # e.g. all zeros
        return "no geometry", f"ImageOrientationPatient {list(f.iop)} holds no direction"
    lo, hi = SPACING_RANGE_MM
    if not all(lo <= v <= hi for v in f.pixel_spacing):  # zero, negative, NaN or metres: no grid to build
        return "no geometry", f"PixelSpacing {[float(v) for v in f.pixel_spacing]} mm is outside {lo:g}-{hi:g} mm"
    if types & _DERIVED_TYPES or _DERIVED_RE.search(desc):
        return "derived", "subtraction, MIP or reformat made by the scanner"
    if (f.image_type[:1] == ("DERIVED",)) and not types & {"PRIMARY"}:
        return "derived", "image type DERIVED\\SECONDARY"
    if any(fr.diffusion for fr in stack.frames[:8]) or types & _DIFFUSION_TYPES or _DIFFUSION_RE.search(desc):
        return "diffusion", "diffusion-weighted or ADC"
    tr, te = f.sequence[0] if f.sequence else None, f.sequence[1] if len(f.sequence) > 1 else None
    if (te is not None and te > MAX_DCE_ECHO_TIME_MS) or (tr is not None and tr > MAX_DCE_REPETITION_TIME_MS):
        return "not T1-weighted", f"TE {te} ms, TR {tr} ms"
    if _T2_RE.search(desc):
        return "not T1-weighted", "description says T2/STIR"
    n_pos = len(position_clusters(stack.frames)[1])
    if n_pos < MIN_SLICES:
        return "too few slices", f"{n_pos} slice position(s)"
    return DCE, "T1-weighted volume"

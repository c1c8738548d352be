"""Result types of the engine: lesions and the segmentation result."""
from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk


@dataclass
class Lesion:
    """One connected tumor component."""

    label: int
    volume_ml: float
    longest_diameter_mm: float
    centroid_lps: tuple[float, float, float]
    side: str  # "left", "right" or "unknown"
    voxels: int
    max_probability: float
    extra: dict = field(default_factory=dict)  # e.g. kinetics from the FTV method
    # Decisions the engine took about this lesion but did not act on silently, e.g.
    # "outside_breast_mask" (kept although the breast mask disagrees); reasons in ``notes``.
    flags: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def centroid_ras(self) -> tuple[float, float, float]:
        x, y, z = self.centroid_lps
        return (-x, -y, z)

    def as_dict(self) -> dict:
        d = {
            "label": self.label,
            "volume_ml": round(self.volume_ml, 4),
            "longest_diameter_mm": round(self.longest_diameter_mm, 2),
            "centroid_lps_mm": [round(c, 2) for c in self.centroid_lps],
            "centroid_ras_mm": [round(c, 2) for c in self.centroid_ras],
            "side": self.side,
            "voxels": self.voxels,
            "max_probability": round(self.max_probability, 4),
            "flags": list(self.flags),
        }
        if self.notes:
            d["notes"] = list(self.notes)
        for key, value in self.extra.items():  # extras never replace the measured core fields
            d.setdefault(key, value)
        return d


@dataclass
class SegmentationResult:
    """Everything one run produces, on the exam's (pre-contrast) grid."""

    case_id: str
    label: sitk.Image  # uint8, 1 = tumor
    probability: sitk.Image  # float32 in [0, 1]
    lesions: list[Lesion]
    model_id: str
    timings: dict[str, float] = field(default_factory=dict)
    breast_mask: sitk.Image | None = None
    registration_qa: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    breast_mask_qa: dict | None = None  # plausibility of the breast mask(s) and which one was used
    subtraction: sitk.Image | None = None  # early subtraction (first post - pre), motion-corrected
    registered_phases: list[sitk.Image] | None = None  # the phases after motion correction (None: not registered)

    def summary(self) -> dict:
        return {
            "case_id": self.case_id,
            "model_id": self.model_id,
            "n_lesions": len(self.lesions),
            "total_volume_ml": round(sum(les.volume_ml for les in self.lesions), 4),
            "lesions": [les.as_dict() for les in self.lesions],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "registration_qa": self.registration_qa,
            "settings": self.settings,
            "breast_mask_qa": self.breast_mask_qa,
        }

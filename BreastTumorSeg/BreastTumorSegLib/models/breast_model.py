"""Learned whole-breast mask: a small 3D U-Net on the pre-contrast image.

Hirsch et al. and Zhang et al. both segment the whole breast first and use it to remove
tumor false positives outside the breast (heart, vessels, arms). This module runs such a
network, stored like the tumor models as ``<name>.safetensors`` + model card ``<name>.json``
with ``"task": "breast_mask"`` (see :mod:`BreastTumorSegLib.training.trainer`, task ``breast``).

    model = BreastMaskModel.load("breastmask-demo")
    mask = model.predict(exam.pre)          # sitk uint8 on the pre-contrast grid

The input is the pre-contrast image on an LPS grid at the card's spacing (3 mm for the demo
model: the breast outline needs no finer grid), divided by the 95th percentile of its voxels
above zero. The probability is resampled linearly to the input grid and thresholded there;
components smaller than ``min_component_fraction`` of the largest one are dropped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.errors import ModelError
from ..preprocess.harmonize import breast_model_input, canonical_grid
from .cards import iter_cards
from .network import CardNetwork

BREAST_TASK = "breast_mask"
DEFAULT_BREAST_MODEL = "breastmask-demo"


def find_breast_card(name: str, extra_dirs=None) -> Path:
    """Path of the card of the whole-breast model *name* (first models folder that has it)."""
    seen = []
    for card_path, card in iter_cards(extra_dirs):
        if card.get("task") == BREAST_TASK:
            seen.append(card["name"])
            if card["name"] == name:
                return card_path
    raise ModelError(f"unknown whole-breast model '{name}'. Available: {', '.join(sorted(set(seen))) or 'none'}. "
                     "Fix: pick one of these, or add a folder with --models-dir")


class BreastMaskModel(CardNetwork):
    """A whole-breast segmentation network with the preprocessing its card prescribes."""

    task = BREAST_TASK

    @classmethod
    def load(cls, name: str = DEFAULT_BREAST_MODEL, extra_dirs=None) -> "BreastMaskModel":
        return cls.from_card(find_breast_card(name, extra_dirs))

    @property
    def threshold(self) -> float:
        return float(self.card.get("postprocess", {}).get("threshold", 0.5))

    def probability(self, pre: sitk.Image, device: str = "auto") -> sitk.Image:
        """Breast probability (float32) on *pre*'s grid."""
        x = breast_model_input(pre, self.spacing_mm)["pre_coarse"].astype(np.float32)[None]
        return self.probability_on(x, canonical_grid(pre, self.spacing_mm), pre, device=device)

    def predict(self, pre: sitk.Image, device: str = "auto", threshold: float | None = None,
                min_component_fraction: float = 0.05) -> sitk.Image:
        """Whole-breast mask (uint8, 1 = breast) on *pre*'s grid."""
        prob = self.probability(pre, device)
        mask = sitk.BinaryThreshold(prob, self.threshold if threshold is None else float(threshold), 2.0, 1, 0)
        cc = sitk.RelabelComponent(sitk.ConnectedComponent(mask, True), sortByObjectSize=True)
        sizes = np.bincount(sitk.GetArrayViewFromImage(cc).ravel())
        if len(sizes) <= 1:
            return sitk.Cast(mask, sitk.sitkUInt8)
        keep = int(np.sum(sizes[1:] >= min_component_fraction * sizes[1]))
        out = sitk.Cast(sitk.BinaryThreshold(cc, 1, keep, 1, 0), sitk.sitkUInt8)
        out.CopyInformation(pre)
        return out

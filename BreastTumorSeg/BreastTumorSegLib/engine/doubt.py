"""How much to doubt one result: an uncertainty score and the reasons a reader should look first.

Written into every exam's JSON (key ``"doubt"``) by :func:`..pipeline.write_result`, and sorted
into ``worklist.csv`` by the batch runner. Costs one pass over the probability map (no second
network run; milliseconds next to seconds for the exam):

* ``uncertainty`` in [0, 1]: the mean binary entropy (bits) of the probability inside the
  lesions found, i.e. how far from a clear yes the network was where it said yes; with no lesion,
  the entropy of the highest probability inside the breast mask (how close the most suspicious
  voxel came to being called a lesion). Measured with ``st-demo`` on 8 phantoms (5 of our
  family, 3 randomised; 2.5 mm, no motion): Spearman 0.71 between this score and 1 - Dice, 0.50
  for the soft-Dice disagreement between probability and label (``soft_disagreement``, kept for
  reference), which sits near 1 because of diffuse low probability outside the lesions.
* ``flags``: registration rejected for a phase, breast mask implausible (learned mask replaced
  or classical mask failing its check), a lesion kept outside the breast mask (the breast gate,
  :mod:`.postprocess`), acquisition times assumed, no lesion found.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.results import SegmentationResult

P_FLOOR = 0.05  # probability below this counts as background noise, not doubt
# Flags that say the result itself may be wrong (sorted first in the worklist).
SERIOUS_FLAGS = ("registration_rejected", "breast_mask_implausible")


def _entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def uncertainty_terms(prob: np.ndarray, label: np.ndarray, region: np.ndarray | None = None) -> dict:
    """Uncertainty of a probability map *prob* and the label map made from it (see the module
    docstring); *region* (e.g. the breast mask) bounds where a missed lesion is looked for."""
    p = prob.astype(np.float64, copy=False)
    inside = label > 0
    if inside.any():
        uncertainty = float(np.mean(_entropy(p[inside])))
    else:
        where = p if region is None else p[region > 0]
        uncertainty = float(_entropy(where.max())) if where.size else 0.0
    mass = float(p[p >= P_FLOOR].sum()) + float(inside.sum())
    soft = 0.0 if mass == 0 else 1.0 - 2.0 * float(p[inside].sum()) / mass
    return {"uncertainty": round(min(max(uncertainty, 0.0), 1.0), 4),
            "soft_disagreement": round(min(max(soft, 0.0), 1.0), 4)}


def doubt_report(result: SegmentationResult) -> dict:
    """The ``"doubt"`` entry of the exam's JSON (see the module docstring)."""
    prob = sitk.GetArrayViewFromImage(result.probability)
    label = sitk.GetArrayViewFromImage(result.label)
    region = None if result.breast_mask is None else sitk.GetArrayViewFromImage(result.breast_mask)
    terms = uncertainty_terms(prob, label, region)
    flags = []
    rejected = [q.get("phase") for q in result.registration_qa or [] if q.get("accepted") is False]
    if rejected:
        flags.append("registration_rejected")
    qa = result.breast_mask_qa or {}
    learned_bad = qa.get("learned") is not None and not qa["learned"].get("plausible", True)
    classical_bad = qa.get("classical") is not None and not qa["classical"].get("plausible", True)
    if learned_bad or classical_bad:
        flags.append("breast_mask_implausible")
    if any("outside_breast_mask" in les.flags for les in result.lesions):
        flags.append("lesion_outside_breast_mask")  # kept by the gate although the mask disagrees
    if result.settings.get("times_assumed"):
        flags.append("times_assumed")
    if not result.lesions:
        flags.append("no_lesion_found")
    return {**terms, "flags": flags, "rejected_registration_phases": rejected}


def worklist_key(doubt: dict) -> tuple:
    """Sort key, most doubtful first: serious flags, then uncertainty, then any flag."""
    flags = doubt.get("flags", [])
    return (-sum(f in SERIOUS_FLAGS for f in flags), -float(doubt.get("uncertainty", 0.0)), -len(flags))

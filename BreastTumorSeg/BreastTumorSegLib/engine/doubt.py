"""How much to doubt one result: an uncertainty score and the reasons a reader should look first.

Written into every exam's JSON (key ``"doubt"``) by :func:`..pipeline.write_result`, and sorted
into ``worklist.csv`` by the batch runner. Costs one pass over the probability map (no second
network run):

* ``uncertainty`` in [0, 1]: the soft-Dice disagreement between the probability map and the
  label map made from it, ``1 - 2 sum(p * L) / (sum(p over p >= 0.05) + sum(L))``. A sharp,
  confident map gives ~0; probability spread beyond the lesions, or mass that never reached the
  threshold (a lesion missed), raises it; 1 when there is probability mass but no lesion.
* ``entropy_in_lesions``: mean binary entropy (bits) of ``p`` over the lesion voxels.
* ``flags``: registration rejected for a phase, breast mask implausible (learned mask replaced
  or classical mask failing its check), acquisition times assumed, no lesion found.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.results import SegmentationResult

P_FLOOR = 0.05  # probability below this counts as background noise, not doubt
# Flags that say the result itself may be wrong (sorted first in the worklist).
SERIOUS_FLAGS = ("registration_rejected", "breast_mask_implausible")


def uncertainty_terms(prob: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """(soft-Dice disagreement, mean entropy in bits inside the label) of a probability map."""
    p = prob.astype(np.float64, copy=False)
    inside = label > 0
    mass = float(p[p >= P_FLOOR].sum()) + float(inside.sum())
    overlap = float(p[inside].sum())
    disagreement = 0.0 if mass == 0 else 1.0 - 2.0 * overlap / mass
    q = np.clip(p[inside], 1e-6, 1 - 1e-6)
    entropy = float(np.mean(-(q * np.log2(q) + (1 - q) * np.log2(1 - q)))) if q.size else 0.0
    return min(max(disagreement, 0.0), 1.0), entropy


def doubt_report(result: SegmentationResult) -> dict:
    """The ``"doubt"`` entry of the exam's JSON (see the module docstring)."""
    prob = sitk.GetArrayViewFromImage(result.probability)
    label = sitk.GetArrayViewFromImage(result.label)
    disagreement, entropy = uncertainty_terms(prob, label)
    flags = []
    rejected = [q.get("phase") for q in result.registration_qa or [] if q.get("accepted") is False]
    if rejected:
        flags.append("registration_rejected")
    qa = result.breast_mask_qa or {}
    learned_bad = qa.get("learned") is not None and not qa["learned"].get("plausible", True)
    classical_bad = qa.get("classical") is not None and not qa["classical"].get("plausible", True)
    if learned_bad or classical_bad:
        flags.append("breast_mask_implausible")
    if result.settings.get("times_assumed"):
        flags.append("times_assumed")
    if not result.lesions:
        flags.append("no_lesion_found")
    return {"uncertainty": round(disagreement, 4), "entropy_in_lesions": round(entropy, 4), "flags": flags,
            "rejected_registration_phases": rejected}


def worklist_key(doubt: dict) -> tuple:
    """Sort key, most doubtful first: serious flags, then uncertainty, then any flag."""
    flags = doubt.get("flags", [])
    return (-sum(f in SERIOUS_FLAGS for f in flags), -float(doubt.get("uncertainty", 0.0)), -len(flags))

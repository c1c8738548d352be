"""The model's per-breast malignancy scores for a reader study (one adapter, wired at merge).

:func:`breast_scores` returns ``{"left": p, "right": p}`` (p in [0, 1]) for one exam:

* from the per-breast malignancy model (``engine.classify.classify_exam``, Gong et al.) when this
  installation has it;
* otherwise derived from the segmentation model's output: per side, the highest probability of
  the lesions the model found on that side (0 when it found none there). Sides come from patient
  coordinates as in the lesion table (+x of LPS = patient left of the breast midline).

The study stores these scores with the model's masks (``study.json``, ``cases[].model.scores``);
the assisted arm shows them to the readers, and ``study export`` always writes them.
"""
from __future__ import annotations

from typing import Any, Mapping

import SimpleITK as sitk

SIDES = ("left", "right")


def breast_scores(exam=None, label: sitk.Image | None = None, probability: sitk.Image | None = None,
                  breast_mask: sitk.Image | None = None, lesions=None) -> dict[str, float]:
    """Per-breast malignancy score of the model for *exam* (see the module docstring).

    *label* / *probability* / *breast_mask* / *lesions* are the segmentation's outputs (from
    ``segment_exam`` or a ``--model-outputs`` folder); *exam* is needed only by the classifier."""
    scores = _classifier_scores(exam) if exam is not None else None
    if scores is not None:
        return scores
    if lesions is None:
        if label is None:
            raise ValueError("breast_scores needs the model's lesions or its label map")
        from ..engine.postprocess import lesion_table, midline_x

        cc = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.Cast(label > 0, sitk.sitkUInt8), True))
        mid = midline_x(breast_mask) if breast_mask is not None else None
        if mid is None:  # no breast mask: the middle of the volume's x extent
            size = label.GetSize()
            mid = 0.5 * (label.TransformIndexToPhysicalPoint((0, 0, 0))[0]
                         + label.TransformIndexToPhysicalPoint((size[0] - 1, size[1] - 1, size[2] - 1))[0])
        lesions = lesion_table(cc, probability, mid)
    out = {side: 0.0 for side in SIDES}
    for les in lesions:
        if les.side in out:
            p = les.max_probability if les.max_probability is not None else 1.0
            out[les.side] = max(out[les.side], float(min(max(p, 0.0), 1.0)))
    return out


def _classifier_scores(exam) -> dict[str, float] | None:
    try:
        from ..engine.classify import classify_exam  # type: ignore[import-not-found]
    except ImportError:
        return None
    return _as_sides(classify_exam(exam))


def _as_sides(result: Any) -> dict[str, float]:
    """``{"left": p, "right": p}`` from a mapping or an object with ``probabilities`` /
    ``left``/``right`` (a side the classifier did not score is left out)."""
    if not isinstance(result, Mapping):
        probs = getattr(result, "probabilities", None)
        result = probs if isinstance(probs, Mapping) else {s: getattr(result, s, None) for s in SIDES}
    out = {}
    for side in SIDES:
        v = result.get(side, result.get(side[0].upper()))
        if v is not None:
            out[side] = float(getattr(v, "probability", v))
    return out

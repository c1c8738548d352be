"""How :func:`.pipeline.segment_exam` runs, apart from the model and the device: one settings object.

    from BreastTumorSegLib.engine.settings import SegmentSettings
    segment_exam(exam, model="ftv", settings=SegmentSettings(registration="none", threshold=0.4))

Registration (``registration``: auto, sitk or none, i.e. no motion correction; ``motion``: rigid,
affine or deformable), post-processing (``threshold``, ``mode``, ``min_lesion_ml``,
``restrict_to_breast``, ``fp_reduction``, ``breast_model``, ``tissue_wrap``; None: the model card's choice) and the
kind of output (``raw``: the model's own label map, nothing of ours). :func:`split_settings` sorts
flat keywords (the Slicer logic's, ``register=False`` included) into settings and the rest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

@dataclass(frozen=True)
class SegmentSettings:
    # registration
    registration: str = "auto"  # auto, sitk, none (no motion correction)
    motion: str | None = None  # rigid, affine, deformable (None: the engine's default)
    # post-processing (None: the model card's)
    threshold: float | None = None
    mode: str | None = None  # absolute or relative threshold
    min_lesion_ml: float | None = None
    restrict_to_breast: bool | None = None  # None: yes, unless a reader's seed_lps chose the lesion
    fp_reduction: bool | None = None  # None: the card's choice, off when a seed_lps chose the lesion
    fp_rescue: bool | None = None  # second look at a rejected component (engine/fprescue.py); None: the card's choice
    breast_model: object = None  # a whole-breast model name or a loaded BreastMaskModel (None: the card's)
    # the breast region's tissue wrap (preprocess/chestwall.py: lateral breast tissue in front of the
    # chest-wall muscle); None: the card's choice (postprocess "tissue_wrap_mm"; no shipped card: off)
    tissue_wrap: bool | None = None
    # output
    raw: bool = False  # the model's own answer: no registration, gate, threshold or size filter of ours

    def __post_init__(self):
        """The values a caller of the Python API types, checked as the command line checks its options."""
        from ..core.errors import InputError
        from ..core.values import check_threshold
        from ..io.safety import check_range

        check_threshold(self.threshold, "SegmentSettings.threshold")
        check_range(self.min_lesion_ml, "SegmentSettings.min_lesion_ml", 0.0, math.inf,
                    "give a volume in mL, 0 or more (None: the model card's)")
        if self.mode not in (None, "absolute", "relative"):
            raise InputError(f"unknown threshold mode {self.mode!r}", "SegmentSettings.mode",
                             "use 'absolute' or 'relative' (None: the model card's)")

    @property
    def registers(self) -> bool:
        return self.registration != "none"


FIELDS = frozenset(f.name for f in fields(SegmentSettings))


def split_settings(settings: SegmentSettings | None = None, **keywords) -> tuple[SegmentSettings, dict]:
    """(settings, the other keywords): the keywords naming a :class:`SegmentSettings` field, and
    ``register`` (``register=False`` is ``registration="none"``), update *settings*."""
    chosen = {k: keywords.pop(k) for k in list(keywords) if k in FIELDS}
    if "register" in keywords and not keywords.pop("register"):
        chosen["registration"] = "none"
    return replace(settings or SegmentSettings(), **chosen), keywords


def refuse_moved_keywords(keywords: dict) -> None:
    """A clear error for the keywords ``segment_exam`` took before it took a settings object."""
    moved = sorted(k for k in keywords if k in FIELDS or k == "register")
    if moved:
        hint = " (register=False is registration='none')" if "register" in moved else ""
        raise TypeError(f"segment_exam() no longer takes {', '.join(moved)}: pass "
                        f"settings=SegmentSettings({', '.join(f'{k}=...' for k in moved)}){hint}, "
                        "from BreastTumorSegLib.engine.settings")

"""One registry of the synthetic exam families.

* ``phantom``: :func:`make_phantom`, our original family (the shipped demo models were trained
  on it, and only on it);
* ``randomized``: :func:`make_randomized`, domain-randomised anatomy, contrast and acquisition,
  for training models that must not memorise one look;
* ``ellipse``: :func:`make_ellipse_family`, a held-out family mimicking an independent
  generator, for evaluation only (never train on it);
* ``heterogeneous``, ``vessels``, ``irregular`` (:mod:`.heterogeneous`): lesion-free randomised
  anatomy with inserted heterogeneous tumors (moderate, rim-enhancing and necrotic parts) and
  enhancing vessels 1-4 mm wide, some touching a tumor; ``irregular`` uses a held-out tumor
  shape model (random-walk lobes and spicules) and is for evaluation only.

Every family returns a :class:`~.Phantom`.
"""
from __future__ import annotations

from ...core.errors import InputError
from . import Phantom, make_phantom
from .ellipse import make_ellipse_family
from .heterogeneous import make_heterogeneous_family, make_irregular_family, make_vessel_family
from .randomized import make_randomized

FAMILIES = {"phantom": make_phantom, "randomized": make_randomized, "ellipse": make_ellipse_family,
            "heterogeneous": make_heterogeneous_family, "vessels": make_vessel_family,
            "irregular": make_irregular_family}
EVALUATION_ONLY = ("ellipse", "irregular")


def make_exam(family: str, seed: int, **overrides) -> Phantom:
    """The exam of *seed* from *family* (a key of :data:`FAMILIES`), with the family's overrides."""
    if family not in FAMILIES:
        raise InputError(f"unknown phantom family {family!r}", "make_exam", f"use one of {', '.join(FAMILIES)}")
    return FAMILIES[family](seed, **overrides)

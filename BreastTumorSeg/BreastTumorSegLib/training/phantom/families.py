"""One registry of the synthetic exam families.

* ``phantom``: :func:`make_phantom`, our original family (the shipped demo models were trained
  on it, and only on it);
* ``randomized``: :func:`make_randomized`, domain-randomised anatomy, contrast and acquisition,
  for training models that must not memorise one look;
* ``ellipse``: :func:`make_ellipse_family`, a held-out family mimicking an independent
  generator, for evaluation only (never train on it).

Every family returns a :class:`~.Phantom`.
"""
from __future__ import annotations

from ...core.errors import InputError
from . import Phantom, make_phantom
from .ellipse import make_ellipse_family
from .randomized import make_randomized

FAMILIES = {"phantom": make_phantom, "randomized": make_randomized, "ellipse": make_ellipse_family}
EVALUATION_ONLY = ("ellipse",)


def make_exam(family: str, seed: int, **overrides) -> Phantom:
    """The exam of *seed* from *family* (a key of :data:`FAMILIES`), with the family's overrides."""
    if family not in FAMILIES:
        raise InputError(f"unknown phantom family {family!r}", "make_exam", f"use one of {', '.join(FAMILIES)}")
    return FAMILIES[family](seed, **overrides)

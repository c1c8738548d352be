"""Benign and malignant lesions, per breast: the exam families of the per-breast malignancy model.

Every breast of an exam is drawn independently as *malignant* (one malignant lesion, sometimes a
benign one beside it), *benign* (one benign lesion) or *normal* (no lesion), and the lesions are
inserted by the existing generators through their overrides (:func:`~.make_phantom`,
:func:`~.randomized.make_randomized`, :func:`~.ellipse.make_ellipse_family`,
:func:`~.hybrid.make_hybrid`). Benign and malignant lesions differ as in breast MRI, by
tendency, not by rule (the classes overlap):

==================  =================================  =================================
                    malignant                          benign
==================  =================================  =================================
kinetic curve       washout 55 %, plateau 35 %,        persistent 70 %, plateau 25 %,
                    persistent 10 %                    washout 5 %
margin (mass)       spiculated 55 %, lobulated 45 %    smooth 65 %, lobulated 35 %
rim enhancement     35 %                               5 %
size (radius)       5-16 mm                            3-9 mm
non-mass            15 % (clumped, same kinetics)      25 % (non-mass enhancement as a confounder)
==================  =================================  =================================

Confounders: benign non-mass enhancement, background parenchymal enhancement drawn per exam from
none to marked (the same for both classes), enhancing vessels, lymph nodes and the heart of the
base generators, and normal breasts. Exams are motion-free (the classifier is not a registration
test). Each family's :class:`~.Phantom` carries ``breast_truth`` (side -> 1 malignant / 0 not, for
the breasts in the field of view) and every tumor dict its ``malignant`` flag.

Families (:data:`CLASS_FAMILIES`): ``malignancy`` (our phantom generator) and
``malignancy-randomized`` (domain-randomised), the training families (:data:`TRAIN_FAMILIES`,
training seeds only), ``malignancy-ellipse`` (the independent ellipse generator) and
``malignancy-hybrid`` (real anatomy, axial volume, with inserts), held out: never used for
training or model selection (:data:`HELD_OUT`). The seeds :data:`HELD_OUT_SEEDS` of every family
are the evaluation seeds, never trained on; :data:`FRESH_HELD_OUT_SEEDS` a second evaluation set,
first measured on Dec 6 (the first had been measured with several models), and
:data:`THIRD_HELD_OUT_SEEDS` a third, first measured on Dec 7, :data:`FOURTH_HELD_OUT_SEEDS` a fourth
(Dec 7, classify-v7-body.md), :data:`FIFTH_HELD_OUT_SEEDS` a fifth (Dec 7, classify-v8.md) and
:data:`SIXTH_HELD_OUT_SEEDS` a sixth (Dec 7, classify-v9.md), :data:`SEVENTH_HELD_OUT_SEEDS` a seventh
(Dec 7, classify-v11.md); :func:`held_out_seed` tells any.
"""
from __future__ import annotations

import numpy as np

from ...core.errors import InputError

BREAST_CLASSES = ("malignant", "benign", "normal")
BREAST_CLASS_P = (0.4, 0.35, 0.25)
TRAIN_FAMILY = "malignancy"
TRAIN_FAMILIES = (TRAIN_FAMILY, "malignancy-randomized")
HELD_OUT = ("malignancy-ellipse", "malignancy-hybrid")
HELD_OUT_SEEDS = range(5000, 5030)  # the benchmark's seeds, of every family
FRESH_HELD_OUT_SEEDS = range(5100, 5130)  # a second, fresh evaluation set of every family
THIRD_HELD_OUT_SEEDS = range(5200, 5230)  # a third one, first measured on Dec 7 (classify-v6-region.md)
FOURTH_HELD_OUT_SEEDS = range(5300, 5330)  # a fourth one, first measured on Dec 7 (classify-v7-body.md)
FIFTH_HELD_OUT_SEEDS = range(5400, 5430)  # a fifth one, first measured on Dec 7 (classify-v8.md)
SIXTH_HELD_OUT_SEEDS = range(5500, 5530)  # a sixth one, first measured on Dec 7 (classify-v9.md)
SEVENTH_HELD_OUT_SEEDS = range(5600, 5630)  # a seventh one, registered unread on Dec 7 (classify-v11.md)
EVALUATION_SEEDS = (HELD_OUT_SEEDS, FRESH_HELD_OUT_SEEDS, THIRD_HELD_OUT_SEEDS, FOURTH_HELD_OUT_SEEDS,
                    FIFTH_HELD_OUT_SEEDS, SIXTH_HELD_OUT_SEEDS, SEVENTH_HELD_OUT_SEEDS)


def held_out_seed(seed: int) -> bool:
    """True for an evaluation seed (:data:`EVALUATION_SEEDS`, of any family): never trained on."""
    return any(int(seed) in r for r in EVALUATION_SEEDS)


def evaluation_seeds_text() -> str:
    """``"5000-5029, 5100-5129, 5200-5229, 5300-5329, 5400-5429, 5500-5529, 5600-5629"``: the evaluation seeds, for messages and cards."""
    return ", ".join(f"{r.start}-{r.stop - 1}" for r in EVALUATION_SEEDS)
_CURVES = ("persistent", "plateau", "washout")


def draw_lesion(rng: np.random.Generator, malignant: bool, side: str) -> dict:
    """One lesion's class-conditional description (module docstring)."""
    if malignant:
        curve = _CURVES[int(rng.choice(3, p=[0.1, 0.35, 0.55]))]
        margin = "spiculated" if rng.uniform() < 0.55 else "lobulated"
        rim = bool(rng.uniform() < 0.35)
        radius = float(np.exp(rng.uniform(np.log(5.0), np.log(16.0))))
        nonmass = bool(rng.uniform() < 0.15)
    else:
        curve = _CURVES[int(rng.choice(3, p=[0.7, 0.25, 0.05]))]
        margin = "smooth" if rng.uniform() < 0.65 else "lobulated"
        rim = bool(rng.uniform() < 0.05)
        radius = float(np.exp(rng.uniform(np.log(3.0), np.log(9.0))))
        nonmass = bool(rng.uniform() < 0.25)
    return {"malignant": malignant, "side": side, "curve": curve, "margin": margin, "rim": rim and not nonmass,
            "radius_mm": radius, "kind": "nonmass" if nonmass else "mass"}


def draw_plan(seed: int, sides=("left", "right")) -> tuple[dict, list[dict], float]:
    """(breast class per side, lesions, BPE 0-1) of exam *seed*; deterministic."""
    rng = np.random.default_rng([int(seed), 2929])
    classes, lesions = {}, []
    for side in sides:
        cls = BREAST_CLASSES[int(rng.choice(3, p=BREAST_CLASS_P))]
        classes[side] = cls
        if cls == "malignant":
            lesions.append(draw_lesion(rng, True, side))
            if rng.uniform() < 0.2:
                lesions.append(draw_lesion(rng, False, side))
        elif cls == "benign":
            lesions.append(draw_lesion(rng, False, side))
    bpe = float(rng.choice([0.05, 0.2, 0.45, 0.8], p=[0.3, 0.3, 0.25, 0.15]) * rng.uniform(0.7, 1.3))
    return classes, lesions, bpe


def _truth(ph, lesions: list[dict], sides_present) -> None:
    """Attach ``breast_truth`` and the lesions' ``malignant`` flags (a lesion that was not placed
    does not count)."""
    placed = set()
    for t in ph.tumors:
        req = t.get("request", None)
        if req is not None and req < len(lesions):
            t["malignant"] = bool(lesions[req]["malignant"])
            t["requested"] = {k: v for k, v in lesions[req].items() if k != "malignant"}
            placed.add(req)
    ph.breast_truth = {s: int(any(lesions[i]["malignant"] and lesions[i]["side"] == s for i in placed))
                       for s in sides_present}
    ph.params["malignancy"] = {"lesions": lesions, "placed": sorted(placed), "breast_truth": ph.breast_truth}


def _phantom(seed: int):
    from . import make_phantom

    _, lesions, bpe = draw_plan(seed)
    kw = {}
    if lesions:
        kw = dict(tumor_kind=[les["kind"] for les in lesions], curve=[les["curve"] for les in lesions],
                  tumor_radius_mm=[max(2.0, les["radius_mm"]) if les["kind"] == "mass" else 2 * les["radius_mm"] + 4
                                   for les in lesions],
                  tumor_side=[les["side"] for les in lesions], tumor_margin=[les["margin"] for les in lesions],
                  tumor_rim=[les["rim"] for les in lesions])
    ph = make_phantom(seed, n_tumors=len(lesions), bpe=bpe, motion_mm=0, **kw)
    for i, t in enumerate(ph.tumors):  # make_phantom places every tumor, in order
        t["request"] = i
    _truth(ph, lesions, ("left", "right"))
    return ph


def _randomized(seed: int):
    from .randomized import make_randomized

    _, lesions, bpe = draw_plan(seed)
    lesions = lesions[:3]  # the generator's maximum
    kinds = [("nonmass" if les["kind"] == "nonmass" else "spiculated" if les["margin"] == "spiculated"
              else "rim" if les["rim"] else "lobulated") for les in lesions]
    ph = make_randomized(seed, n_lesions=len(lesions), lesion_kind=kinds or None,
                         curve=[les["curve"] for les in lesions] or None,
                         lesion_radius_mm=[les["radius_mm"] for les in lesions] or None,
                         lesion_side=[les["side"] for les in lesions] or None, bpe=bpe,
                         motion_mm=0, nonrigid_mm=0)
    sides = ("left", "right") if ph.params.get("fov", "bilateral") == "bilateral" else (ph.params["fov_side"],)
    _truth(ph, lesions, sides)
    return ph


def _ellipse(seed: int):
    from .ellipse import make_ellipse_family

    _, lesions, bpe = draw_plan(seed)
    spec = [{"side": les["side"], "radius_mm": min(les["radius_mm"], 14.0), "curve": les["curve"], "rim": les["rim"],
             "spicules": 8 if les["margin"] == "spiculated" else 0} for les in lesions]
    ph = make_ellipse_family(seed, lesions=spec, bpe=bpe)
    _truth(ph, lesions, ("left", "right"))
    return ph


def _hybrid(seed: int):
    from .hybrid import make_hybrid

    _, lesions, bpe = draw_plan(seed)
    spec = [{"side": les["side"], "volume_ml": 4 / 3 * np.pi * les["radius_mm"] ** 3 / 1000, "curve": les["curve"],
             "rim": les["rim"], "margin": les["margin"]} for les in lesions]
    ph = make_hybrid(seed, anatomy="axial", lesions=spec, bpe_percent=100 * bpe)
    _truth(ph, lesions, ("left", "right"))
    return ph


CLASS_FAMILIES = {TRAIN_FAMILY: _phantom, "malignancy-randomized": _randomized, "malignancy-ellipse": _ellipse,
                  "malignancy-hybrid": _hybrid}


def make_class_exam(family: str, seed: int):
    """The exam of *seed* from a family of :data:`CLASS_FAMILIES`, with ``breast_truth``."""
    if family not in CLASS_FAMILIES:
        raise InputError(f"unknown malignancy family {family!r}", "make_class_exam",
                         f"use one of {', '.join(CLASS_FAMILIES)}")
    return CLASS_FAMILIES[family](int(seed))

"""Follow-up (issue 31): two touching tumors without a neck (a small tumor embedded in a larger one) are split
by their own enhancement when a later visit shows them apart (followup/kinetic_split.py, through
followup/evidence.py); a tumor that broke up under treatment enhances alike on both sides and stays one
lesion, and with the setting off nothing changes."""
from __future__ import annotations

import numpy as np

from BreastTumorSegLib.followup.evidence import EvidenceSettings, baseline_corrections, split_lesion
from BreastTumorSegLib.followup.kinetic_split import kinetic_parts
from BreastTumorSegLib.followup.match import match_visits

from test_followup_evidence import SHAPE, SLAB, SPACING, WHOLE, _ball, _labels, _visit

# a 9 mm ball with a 6 mm ball half inside it: one convex-looking lesion, no neck between them
BIG, SMALL = _ball((20, 24, 28), (9, 9, 9)), _ball((20, 24, 38), (6, 6, 6))
KINETIC = EvidenceSettings(split=True, join=False, kinetic_split=True, kinetic_spread=4.0)


def _pe(regions_values, sd: float, seed: int = 0) -> np.ndarray:
    """An early-PE map (%): each (mask, value) in order, later masks over earlier ones, Gaussian noise."""
    pe = np.full(SHAPE, 5.0, np.float32)
    for mask, value in regions_values:
        pe[mask] = value
    return pe + np.random.default_rng(seed).normal(0, sd, SHAPE).astype(np.float32)


def _later_embedded():
    return _labels(_ball((20, 24, 27), (5, 5, 5)), _ball((20, 24, 40), (3, 3, 3)))


def _corrected(base, later, pe, s=KINETIC):
    visits = [_visit(base), _visit(later)]
    tracks = match_visits(visits, spacing_zyx=SPACING)
    return baseline_corrections(base, visits, tracks, base > 0, SPACING, s, pe)


def test_an_embedded_tumor_has_no_neck_but_its_own_enhancement_divides_it():
    lesion = BIG | SMALL
    seeds = [_ball((20, 24, 27), (5, 5, 5)), _ball((20, 24, 40), (3, 3, 3))]
    assert split_lesion(lesion, seeds, SPACING, 0.6) is None  # no neck: the distance rule keeps it whole
    pe = _pe([(BIG, 160.0), (SMALL & ~BIG, 110.0)], sd=8.0)
    parts, info = kinetic_parts(lesion, seeds, pe, SPACING, 0.15, 4.0)
    assert parts is not None, info
    small_only = SMALL & ~BIG
    assert np.count_nonzero((parts == 2) & small_only) > 0.85 * np.count_nonzero(small_only)
    assert np.count_nonzero((parts == 1) & BIG) > 0.9 * np.count_nonzero(BIG)
    # the whole follow-up step: two baseline lesions, two tracks with one lesion each at the later visit
    base, later = _labels(lesion), _later_embedded()
    out = _corrected(base, later, pe)
    assert out is not None and int(out[0].max()) == 2 and set(out[1].values()) == {"split_by_later_visit"}
    tracks = match_visits([_visit(out[0]), _visit(later)], spacing_zyx=SPACING)
    assert len(tracks) == 2 and all(len(t.members[1]) == 1 for t in tracks)
    # off, or without the PE map: the lesion stays whole
    assert EvidenceSettings().kinetic_split
    assert _corrected(base, later, pe, EvidenceSettings(split=True, join=False, kinetic_split=False)) is None
    assert _corrected(base, later, None) is None


def test_two_tumors_enhancing_alike_or_one_noisy_tumor_are_not_split():
    lesion = BIG | SMALL
    seeds = [_ball((20, 24, 27), (5, 5, 5)), _ball((20, 24, 40), (3, 3, 3))]
    alike = _pe([(lesion, 150.0)], sd=8.0)
    parts, info = kinetic_parts(lesion, seeds, alike, SPACING, 0.15, 4.0)
    assert parts is None and info["relative_difference"] < 0.15
    # a heterogeneous tumor: a PE difference as large as the spread inside each part is texture, not two tumors
    rng = np.random.default_rng(3)
    texture = _pe([(BIG, 160.0), (SMALL & ~BIG, 120.0)], sd=0.0) + rng.normal(0, 45, SHAPE).astype(np.float32)
    parts, info = kinetic_parts(lesion, seeds, texture, SPACING, 0.15, 4.0)
    assert parts is None and info["difference_over_spread"] < 4.0


def test_a_tumor_that_broke_up_under_treatment_stays_one_lesion_with_the_kinetic_split_on():
    ends = [WHOLE & ~SLAB & (np.arange(SHAPE[2]) < 32), WHOLE & ~SLAB & (np.arange(SHAPE[2]) >= 32)]
    pe = _pe([(WHOLE, 140.0)], sd=8.0, seed=1)
    assert _corrected(_labels(WHOLE), _labels(*ends), pe) is None

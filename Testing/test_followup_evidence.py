"""Follow-up (issue 31): the later visits as evidence about the baseline's segmentation (followup/evidence.py).
Two touching tumors the baseline took as one lesion are split when a later visit shows them apart; a tumor
that broke up under treatment (a slab cut through one convex lesion) is not; baseline pieces of one tumor
that one later lesion covers are joined only when the baseline's enhancing tissue connects them."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.engine.postprocess import lesion_table
from BreastTumorSegLib.followup.evidence import EvidenceSettings, baseline_corrections, split_lesion
from BreastTumorSegLib.followup.guided import empty_places
from BreastTumorSegLib.followup.match import VisitLesions, match_visits
from BreastTumorSegLib.followup.prior import neighbourhoods

SHAPE = (40, 48, 64)  # z, y, x; 1 mm isotropic
SPACING = np.ones(3)
ON = EvidenceSettings(split=True, join=True)


def _ball(centre, radii) -> np.ndarray:
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return (((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
            + ((x - centre[2]) / radii[2]) ** 2) <= 1.0


def _labels(*masks) -> np.ndarray:
    out = np.zeros(SHAPE, np.int32)
    for i, m in enumerate(masks):
        out[m & (out == 0)] = i + 1
    return out


def _visit(labels: np.ndarray) -> VisitLesions:
    img = sitk.GetImageFromArray(labels.astype(np.uint16))
    lesions = lesion_table(img)
    return VisitLesions(lesions, labels, [np.asarray(les.centroid_lps) for les in lesions])


def _corrected(base: np.ndarray, later: np.ndarray, enhancing: np.ndarray, s=ON):
    visits = [_visit(base), _visit(later)]
    tracks = match_visits(visits, spacing_zyx=SPACING)
    return baseline_corrections(base, visits, tracks, enhancing, SPACING, s)


# two balls of radius 7 mm, centres 12 mm apart: one lesion with a neck
LEFT, RIGHT = _ball((20, 24, 26), (7, 7, 7)), _ball((20, 24, 38), (7, 7, 7))
# one ellipsoid 28 x 14 x 14 mm, and its two pieces after a 4 mm slab through the middle
WHOLE = _ball((20, 24, 32), (7, 7, 14))
SLAB = np.zeros(SHAPE, bool)
SLAB[:, :, 30:34] = True


def test_a_lesion_with_a_neck_is_split_between_two_later_seeds_a_convex_one_is_not():
    parts = split_lesion(LEFT | RIGHT, [_ball((20, 24, 26), (3, 3, 3)), _ball((20, 24, 38), (3, 3, 3))], SPACING, 0.6)
    assert parts is not None and set(np.unique(parts)) == {0, 1, 2}
    for p, tumor in ((1, LEFT & ~RIGHT), (2, RIGHT & ~LEFT)):
        assert np.count_nonzero((parts == p) & tumor) > 0.9 * np.count_nonzero(tumor)
    ends = [WHOLE & ~SLAB & (np.arange(SHAPE[2]) < 32), WHOLE & ~SLAB & (np.arange(SHAPE[2]) >= 32)]
    assert split_lesion(WHOLE, ends, SPACING, 0.6) is None


def test_two_tumors_merged_at_the_baseline_are_two_tracks_after_the_split():
    base = _labels(LEFT | RIGHT)
    later = _labels(_ball((20, 24, 26), (5, 5, 5)), _ball((20, 24, 38), (5, 5, 5)))  # both shrank: apart now
    out = _corrected(base, later, base > 0)
    assert out is not None
    labels, flags = out
    assert int(labels.max()) == 2 and set(flags.values()) == {"split_by_later_visit"}
    visits = [_visit(labels), _visit(later)]
    tracks = match_visits(visits, spacing_zyx=SPACING)
    assert len(tracks) == 2 and all(len(t.members[1]) == 1 for t in tracks)
    # off: nothing changes
    assert _corrected(base, later, base > 0, EvidenceSettings(split=False, join=False)) is None


def test_a_tumor_that_broke_up_under_treatment_stays_one_baseline_lesion():
    base = _labels(WHOLE)
    later = _labels(WHOLE & ~SLAB & (np.arange(SHAPE[2]) < 32), WHOLE & ~SLAB & (np.arange(SHAPE[2]) >= 32))
    assert _corrected(base, later, base > 0) is None


def test_baseline_pieces_of_one_tumor_are_joined_only_when_the_baseline_enhances_between_them():
    gap = np.zeros(SHAPE, bool)
    gap[:, :, 31:33] = True
    base = _labels(WHOLE & ~gap & (np.arange(SHAPE[2]) < 32), WHOLE & ~gap & (np.arange(SHAPE[2]) >= 32))
    later = _labels(_ball((20, 24, 32), (6, 6, 12)))  # one lesion over both pieces' places
    out = _corrected(base, later, WHOLE)  # the gap enhances at the baseline: one tumor cut by its segmentation
    assert out is not None
    labels, flags = out
    assert int(labels.max()) == 1 and flags == {1: "joined_by_later_visit"}
    assert np.array_equal(labels > 0, base > 0)
    assert _corrected(base, later, base > 0) is None  # nothing enhances between them: not joined


def test_only_the_known_lesions_whose_extent_holds_nothing_are_looked_for_again():
    ref = sitk.GetImageFromArray(np.zeros(SHAPE, np.uint8))
    known = _labels(_ball((20, 24, 14), (3, 3, 3)), _ball((20, 24, 50), (3, 3, 3)))
    extent = neighbourhoods(known, SPACING, 5.0)
    wide = neighbourhoods(known, SPACING, 8.0)
    visit = sitk.GetImageFromArray(_labels(_ball((20, 24, 15), (2, 2, 2))).astype(np.uint16))  # only the first
    visit.CopyInformation(ref)
    out = empty_places(visit, extent, wide, ref, ref, None)
    assert set(np.unique(out)) == {0, 2} and np.array_equal(out == 2, wide == 2)

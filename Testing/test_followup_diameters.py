"""Follow-up (issue 31): a tumor the segmentation cuts into pieces at one visit is measured across its whole
extent with followup/diameters.py's DiameterSettings(union=True) (the default fu12-fu16), not as the sum of its pieces'
diameters, so a stable tumor cut in three is not read as progression. Since fu17 the default adds the pieces'
diameters (RECIST 1.1's fragment rule; docs/decisions/followup-recist-issue31.md): a tumor cut in two by treatment is
measured as the truth measures it, and a tumor the segmentation cuts reads as the pieces add up."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.imageutil import from_array
from BreastTumorSegLib.followup.diameters import DiameterSettings, union_diameter, union_diameters
from BreastTumorSegLib.followup.match import Track
from BreastTumorSegLib.followup.measure import MeasureSettings
from BreastTumorSegLib.followup.run import follow_segmented, run_followup
from BreastTumorSegLib.training.phantom.series import make_visit_series

SMALL = dict(size=(128, 96, 40), spacing=(2.4, 2.4, 4.0))  # as test_followup: seconds per visit
UNION = DiameterSettings(union=True)
SUM = DiameterSettings(union=False)  # the pieces' diameters added (before fu12)


def _image(arr: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    return img


class _Visit:
    def __init__(self, components):
        self.components = components


def test_union_diameter_of_a_bar_cut_in_three_is_the_bar_s_length():
    """A 30 mm bar (1 mm voxels along x) cut by two one-voxel gaps: three pieces of 9.x mm, their union 30 mm."""
    comp = np.zeros((6, 12, 40), np.int32)
    comp[2:4, 5:7, 5:15] = 1
    comp[2:4, 5:7, 16:25] = 2
    comp[2:4, 5:7, 26:35] = 3
    like = _image(comp)
    length = union_diameter(comp > 0, like)
    truth = np.sqrt(29 ** 2 + 1 ** 2 + 2 ** 2)  # corner to corner of the 30 x 2 x 2-voxel box (voxel centres)
    assert abs(length - truth) < 0.01
    track = Track(track_id=1, first_visit=0, members={0: [1], 1: [1, 2, 3]})
    visits = [_Visit(from_array(comp.clip(0, 1).astype(np.uint32), like)), _Visit(from_array(comp.astype(np.uint32), like))]
    measured = {(1, 0): {"volume_ml": 1.0}, (1, 1): {"volume_ml": 1.0}}
    assert union_diameters([track], visits, measured, SUM) is measured  # off: nothing changes
    out = union_diameters([track], visits, measured, UNION)
    assert abs(out[(1, 1)]["longest_diameter_mm"] - truth) < 0.01 and out[(1, 1)]["volume_ml"] == 1.0
    assert "longest_diameter_mm" not in out[(1, 0)]  # one lesion: its own diameter stays
    assert "longest_diameter_mm" not in measured[(1, 1)]  # the input is left as it was
    # a diameter measured already (the outline's, measure.py) is kept
    again = union_diameters([track], visits, {(1, 1): {"longest_diameter_mm": 12.0}}, UNION)
    assert again[(1, 1)]["longest_diameter_mm"] == 12.0


@pytest.fixture(scope="module")
def stable():
    """The ellipse family's seed 5000 (one 2.5 mL tumor; the series of test_followup_consistency), stable at visit 2."""
    series = make_visit_series("ellipse", 5000, n_visits=2, fates=["stable"], **SMALL)
    res = run_followup([v.exam for v in series.visits], dates=series.dates, model="ftv", register=False)
    assert res.table["targets"], "the series needs a measurable tumor"
    return series, res


def _cut_in_three(result, target_labels):
    """*result* with each lesion of *target_labels* cut by two one-voxel slabs across its longest in-plane
    axis at a third and two thirds of its extent (tissue the segmentation left out inside one tumor)."""
    lab = sitk.GetArrayFromImage(result.label)
    cc = sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(result.label > 0, True),
                                                       sortByObjectSize=True))
    cut = lab.copy()
    for t in target_labels:
        zyx = np.nonzero(cc == t)
        axis = 1 + int(np.argmax([np.ptp(zyx[1]), np.ptp(zyx[2])]))
        lo, hi = int(zyx[axis].min()), int(zyx[axis].max())
        for at in (lo + (hi - lo) // 3, lo + 2 * (hi - lo) // 3):
            sl = [slice(None)] * 3
            sl[axis] = at
            region = np.zeros(lab.shape, bool)
            region[tuple(sl)] = True
            cut[region & (cc == t)] = 0
    out = copy.copy(result)
    out.label = sitk.GetImageFromArray(cut)
    out.label.CopyInformation(result.label)
    return out


def test_a_stable_tumor_cut_in_three_at_visit_2_is_stable_with_the_union(stable):
    series, res = stable
    targets = res.table["targets"]
    later = [lab for t in res.tracks if t.track_id in targets for lab in t.members.get(1, [])]
    assert res.table["exams"][1]["recist"] == "SD"  # the truth: stable
    results = [res.visits[0].result, _cut_in_three(res.visits[1].result, later)]
    regs = [v.registration for v in res.visits]
    exams = [v.exam for v in series.visits]

    def recist(**kw):
        _, tracks, table, _, _ = follow_segmented(exams, series.dates, results, regs, **kw)
        pieces = max(len(t.members.get(1, [])) for t in tracks if t.track_id in table["targets"])
        return table["exams"][1]["recist"], table["exams"][1]["sum_target_diameters_mm"], table["exams"][0][
            "sum_target_diameters_mm"], pieces

    cat, now, base, pieces = recist(diameters=SUM)  # the pieces' diameters added as RECIST fragments
    assert pieces >= 3 and cat == "PD" and now > 1.2 * base  # the segmentation's cut read as progression
    cat, now, base, pieces = recist(diameters=UNION)  # the union (the default fu12-fu16)
    assert pieces >= 3 and cat == "SD" and abs(now - base) < 0.1 * base  # measured across the whole tumor
    # the default since fu17 adds the pieces (RECIST's fragment rule): the segmentation's cut is read as it adds up
    assert recist() == recist(diameters=SUM)
    # the outline's diameters (measure.py) taken over the whole outline: stable too
    cat, now, base, _ = recist(diameters=UNION, measure=MeasureSettings(diameters=True))
    assert cat == "SD" and abs(now - base) < 0.1 * base


def test_the_pieces_are_added_by_default_since_fu17():
    assert DiameterSettings().union is False


def test_a_tumor_cut_in_two_by_treatment_is_measured_as_its_pieces_add_up():
    """fu17: the ellipse family's seed 5000 (one tumor), fragmented at visit 2 (half its volume, cut in two by a
    slab: the series generator's ``fragment`` fate). The truth adds the two pieces' longest diameters (RECIST 1.1's
    fragment rule): 16.1 -> 18.5 mm. The segmentation finds the two pieces; by default their diameters are added and
    the target sum is within 15 % of the truth's, while their union (one tumor across the gap, fu12's default) reads
    it more than 15 % short."""
    from BreastTumorSegLib.followup.run import follow, segment_visits

    series = make_visit_series("ellipse", 5000, n_visits=2, fates=["fragment"], fraction=0.5, **SMALL)
    cc = sitk.ConnectedComponent(series.visits[1].tumor_labels > 0, True)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeFeretDiameterOn()
    stats.Execute(cc)
    truth = sum(stats.GetFeretDiameter(c) for c in stats.GetLabels())
    assert len(stats.GetLabels()) == 2  # the truth: two pieces
    seg = segment_visits([v.exam for v in series.visits], dates=series.dates, model="ftv", register=False)
    res = follow(seg)
    target = [t for t in res.tracks if t.track_id in res.table["targets"]]
    assert len(target) == 1 and len(target[0].members.get(1, [])) == 2  # one track, both pieces at visit 2
    now = res.table["exams"][1]["sum_target_diameters_mm"]
    assert abs(now - truth) < 0.15 * truth
    union = follow(seg, diameters=UNION).table["exams"][1]["sum_target_diameters_mm"]
    assert union < 0.85 * truth and res.settings["diameters"]["union"] is False

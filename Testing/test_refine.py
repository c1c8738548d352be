"""Click-to-correct (engine/refine.py, `breasttumorseg refine`): a positive click adds a missed
phantom lesion, a negative click removes a false lesion or cuts a leak into a vessel, clicks
outside the image are clear errors, and the command line writes the usual outputs."""
import json
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.core.results import SegmentationResult
from BreastTumorSegLib.engine.refine import Click, parse_click, refine
from BreastTumorSegLib.evaluation.metrics import dice
from BreastTumorSegLib.training.phantom import make_phantom
from refine_fixtures import deepest_lps  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    # Seed 3: two mass lesions (0.35 and 6 mL), no motion so the phases are already aligned.
    return make_phantom(3, motion_mm=0)


def _labels(ph):
    return sitk.GetArrayFromImage(ph.tumor_labels)


def _result(ph, label: np.ndarray) -> SegmentationResult:
    img = sitk.GetImageFromArray(label.astype(np.uint8))
    img.CopyInformation(ph.exam.pre)
    return SegmentationResult(case_id=ph.case_id, label=img, probability=sitk.Cast(img, sitk.sitkFloat32),
                              lesions=[], model_id="test")


def _array(img):
    return sitk.GetArrayFromImage(img) > 0


def test_positive_click_adds_a_missed_lesion(phantom):
    labels = _labels(phantom)
    big = labels == 2
    assert big.sum() > 500 and (labels == 1).any()
    start = _result(phantom, labels == 1)  # the model found the small lesion and missed the big one
    click = Click.lps_point(deepest_lps(phantom, big), True)
    out = refine(phantom.exam, start, [click])
    got = _array(out.label)
    added = got & ~(labels == 1)
    assert dice(added, big) >= 0.8
    assert np.array_equal(got[labels == 1], np.ones((labels == 1).sum(), bool))  # the found lesion stays
    assert len(out.lesions) == 2 and sum(les.voxels for les in out.lesions) == got.sum()
    assert out.settings["refine"]["clicks"][0]["sign"] == "+"
    assert out.settings["refine"]["clicks"][0]["action"] == "added"


def test_ras_and_lps_clicks_agree(phantom):
    labels = _labels(phantom)
    lps = deepest_lps(phantom, labels == 2)
    a = refine(phantom.exam, _result(phantom, labels == 1), [Click.lps_point(lps)])
    b = refine(phantom.exam, _result(phantom, labels == 1), [parse_click(f"{-lps[0]},{-lps[1]},{lps[2]},+")])
    assert np.array_equal(_array(a.label), _array(b.label))


def test_negative_click_removes_exactly_a_false_lesion(phantom):
    labels = _labels(phantom)
    truth = labels > 0
    # A false lesion: a 4 mm ball in the other breast, away from the tumors.
    false = np.zeros_like(truth)
    sp = np.asarray(phantom.exam.pre.GetSpacing())[::-1]
    breast = sitk.GetArrayFromImage(phantom.breast_mask) > 0
    far = ndimage.distance_transform_edt(~truth, sampling=sp)
    zyx = np.unravel_index(int(np.argmax(np.where(breast, np.minimum(far, 40.0) + 1e-3 *
                                                           ndimage.distance_transform_edt(breast, sampling=sp), 0))),
                           truth.shape)
    grids = np.ogrid[tuple(slice(0, n) for n in truth.shape)]
    false = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, zyx, sp)) <= 4.0 ** 2
    assert false.sum() > 5 and not (false & truth).any()
    start = _result(phantom, truth | false)
    click = Click.lps_point(phantom.exam.pre.TransformIndexToPhysicalPoint(tuple(int(v) for v in zyx[::-1])), False)
    out = refine(phantom.exam, start, [click])
    assert np.array_equal(_array(out.label), truth)
    assert out.settings["refine"]["clicks"][0]["action"] == "removed"
    assert len(out.lesions) == 2


def test_negative_click_on_a_leak_cuts_the_vessel_and_keeps_the_lesion(phantom):
    labels = _labels(phantom)
    lesion = labels == 2
    sp = np.asarray(phantom.exam.pre.GetSpacing())[::-1]  # (z, y, x)
    # A vessel of 2 mm radius leaving the lesion along x from its centre, 30 mm past its surface.
    c = np.asarray(ndimage.center_of_mass(lesion))
    zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in lesion.shape)]
    radial = np.sqrt(((zz - c[0]) * sp[0]) ** 2 + ((yy - c[1]) * sp[1]) ** 2)
    along = (xx - c[2]) * sp[2]
    extent = float(np.max(np.abs(np.nonzero(lesion)[2] - c[2]))) * sp[2]
    vessel = (radial <= 2.0) & (along >= 0) & (along <= extent + 30.0) & ~lesion
    leak = lesion | vessel
    start = _result(phantom, leak | (labels == 1))
    # The protocol's negative click: the deepest point of the false part (the vessel).
    click = Click.lps_point(deepest_lps(phantom, vessel), False)
    out = refine(phantom.exam, start, [click])
    got = _array(out.label)
    assert dice(got & (labels != 1), lesion) >= 0.95
    vessel_far = vessel & (along > extent + 4.0)
    assert not (got & vessel_far).any(), "the vessel beyond the lesion's surface must go"
    assert (got & (labels == 1)).sum() == (labels == 1).sum()  # the other lesion is untouched
    assert out.settings["refine"]["clicks"][0]["action"] == "cut"


def test_clicks_outside_the_image_are_clear_errors(phantom):
    start = _result(phantom, _labels(phantom) > 0)
    with pytest.raises(InputError, match="outside the image"):
        refine(phantom.exam, start, [Click.ras((5000.0, 0.0, 0.0), True)])
    with pytest.raises(InputError, match="cannot read a click"):
        parse_click("1,2,x")
    with pytest.raises(InputError, match="not on the exam"):
        bad = sitk.Image([5, 5, 5], sitk.sitkUInt8)
        refine(phantom.exam, replace(start, label=bad), [])


def test_cli_refine_end_to_end(phantom, tmp_path, capsys):
    from BreastTumorSegLib.cli import main
    from BreastTumorSegLib.training.phantom import write_phantom

    exam_dir = tmp_path / "exam"
    write_phantom(phantom, exam_dir)
    labels = _labels(phantom)
    seg_dir = tmp_path / "seg"
    seg_dir.mkdir()
    seg = seg_dir / f"{phantom.case_id}_seg.nii.gz"
    start = sitk.GetImageFromArray((labels == 1).astype(np.uint8))
    start.CopyInformation(phantom.exam.pre)
    sitk.WriteImage(start, str(seg))
    x, y, z = deepest_lps(phantom, labels == 2)
    out = tmp_path / "refined"
    code = main(["refine", str(exam_dir), "--seg", str(seg), f"--click-ras={-x},{-y},{z},+", "--no-register",
                 "--output", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    names = {p.name for p in out.iterdir()}
    cid = phantom.case_id
    assert {f"{cid}_seg.nii.gz", f"{cid}_prob.nii.gz", f"{cid}.seg.nrrd", f"{cid}.json", f"{cid}_overview.png"} <= names
    summary = json.loads((out / f"{cid}.json").read_text())
    assert summary["n_lesions"] == 2
    assert summary["settings"]["refine"]["clicks"][0]["sign"] == "+"
    assert summary["settings"]["refine"]["clicks"][0]["ras_mm"] == [round(v, 2) for v in (-x, -y, z)]
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{cid}_seg.nii.gz"))) > 0
    assert dice(got, labels > 0) >= 0.8

    # A click outside the image: one line, exit code 2, nothing written.
    capsys.readouterr()
    out2 = tmp_path / "refused"
    code = main(["refine", str(exam_dir), "--seg", str(seg), "--click-ras=5000,0,0,-", "--no-register",
                 "--output", str(out2), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "outside the image" in err and len(err.strip().splitlines()) == 1
    assert not out2.exists()

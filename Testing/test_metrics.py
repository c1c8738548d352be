"""Segmentation metrics against hand counts, analytic shapes and brute force; the `evaluate` CLI."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial import cKDTree

from BreastTumorSegLib.evaluation import lesions as L
from BreastTumorSegLib.evaluation import masks as Ms
from BreastTumorSegLib.evaluation import metrics as M
from BreastTumorSegLib.evaluation import surface as S
from BreastTumorSegLib.cli import evaluate as evaluate_cli
from BreastTumorSegLib.core.errors import InputError


# ----------------------------------------------------------------------------- shape helpers
def grid(size_xyz, spacing, direction=None, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    img = sitk.Image([int(s) for s in size_xyz], sitk.sitkUInt8)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def physical_points(like: sitk.Image) -> np.ndarray:
    """Physical coordinates of every voxel centre, shape (z, y, x, 3)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in like.GetSize()[::-1]], indexing="ij"), -1)[..., ::-1]
    d = np.asarray(like.GetDirection()).reshape(3, 3)
    return np.asarray(like.GetOrigin()) + (idx * np.asarray(like.GetSpacing())) @ d.T


def ball(like: sitk.Image, centre_mm, radius_mm) -> sitk.Image:
    pts = physical_points(like)
    arr = (np.sum((pts - np.asarray(centre_mm)) ** 2, axis=-1) <= radius_mm ** 2).astype(np.uint8)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(like)
    return out


def union(*masks: sitk.Image) -> sitk.Image:
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out


def brute_force_directed(a: sitk.Image, b: sitk.Image) -> np.ndarray:
    """Directed surface distances by k-d tree over physical surface-voxel coordinates."""
    pts = physical_points(a)
    sa = sitk.GetArrayFromImage(Ms.surface_voxels(a)) > 0
    sb = sitk.GetArrayFromImage(Ms.surface_voxels(b)) > 0
    return cKDTree(pts[sb]).query(pts[sa])[0]


SPACINGS = [(1.0, 1.0, 1.0), (0.7, 0.7, 2.0), (0.6, 1.1, 2.5)]


# ------------------------------------------------------------------------------ overlap scores
def test_dice_unchanged_contract():
    a = np.zeros((4, 4, 4), np.uint8)
    b = np.zeros_like(a)
    assert M.dice(a, b) == 1.0  # both empty: perfect agreement
    a[0, 0, :2] = 1
    b[0, 0, 1:4] = 1
    assert M.dice(a, b) == pytest.approx(2 * 1 / (2 + 3))
    assert M.dice(sitk.GetImageFromArray(a), sitk.GetImageFromArray(b)) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        M.dice(a, b[:2])


def test_overlap_scores_by_hand():
    # |P| = 6, |R| = 4, |P & R| = 3
    p = np.zeros((1, 2, 8), np.uint8)
    r = np.zeros_like(p)
    p[0, 0, 0:6] = 1
    r[0, 0, 3:7] = 1
    assert M.dice(p, r) == pytest.approx(6 / 10)
    assert M.jaccard(p, r) == pytest.approx(3 / 7)
    assert M.sensitivity(p, r) == pytest.approx(3 / 4)
    assert M.precision(p, r) == pytest.approx(3 / 6)
    d = M.dice(p, r)
    assert M.jaccard(p, r) == pytest.approx(d / (2 - d))


def test_empty_masks_follow_the_documented_table():
    like = grid((20, 20, 10), (1.0, 1.0, 2.0))
    empty = ball(like, (-100, -100, -100), 1)
    lesion = ball(like, (10, 10, 10), 4)
    # reference empty, prediction not
    assert M.dice(lesion, empty) == 0.0 and M.jaccard(lesion, empty) == 0.0
    assert math.isnan(M.sensitivity(lesion, empty))
    assert M.precision(lesion, empty) == 0.0
    # prediction empty, reference not
    assert M.sensitivity(empty, lesion) == 0.0
    assert math.isnan(M.precision(empty, lesion))
    # both empty
    assert M.dice(empty, empty) == 1.0 and M.jaccard(empty, empty) == 1.0
    assert math.isnan(M.precision(empty, empty)) and math.isnan(M.sensitivity(empty, empty))
    for a, b in [(lesion, empty), (empty, lesion), (empty, empty)]:
        sd = S.surface_distances(a, b)
        assert not sd.defined
        assert math.isnan(sd.hausdorff()) and math.isnan(sd.hd95()) and math.isnan(sd.assd())
    m = M.evaluate(empty, lesion)
    assert m.volume_difference_ml == pytest.approx(-M.volume_ml(lesion))
    assert m.pred_diameter_mm == 0.0 and m.pred_t_stage == "T0"
    assert m.ref_lesions == 1 and m.detected_lesions == 0 and m.false_positive_components == 0
    assert L.lesion_detection(lesion, empty).n_false_positive_components == 1
    assert math.isnan(L.lesion_detection(lesion, empty).lesion_sensitivity)


def test_dice_2d_uses_the_largest_reference_slice():
    r = np.zeros((5, 6, 6), np.uint8)
    p = np.zeros_like(r)
    r[1, 1:3, 1:3] = 1          # area 4
    r[3, 0:4, 0:4] = 1          # area 16  <- chosen slice
    p[3, 0:4, 0:2] = 1          # 8 voxels, all inside the reference on slice 3
    p[1] = 1                    # wrong everywhere else, must not count
    value, k = M.dice_2d(p, r)
    assert k == 3
    assert value == pytest.approx(2 * 8 / (8 + 16))
    assert M.dice_2d(p, r, slice_index=1)[0] == pytest.approx(2 * 4 / (36 + 4))
    # slices along another axis
    assert M.dice_2d(p, r, axis=2)[1] in range(6)


# ---------------------------------------------------------------------------- surface distances
@pytest.mark.parametrize("spacing", SPACINGS)
def test_directed_distances_equal_brute_force(spacing):
    """Maurer-map distances are exact Euclidean distances between surface voxels."""
    d = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T.ravel()  # a sagittal-like direction
    like = grid([int(48 / s) for s in spacing], spacing, direction=tuple(d), origin=(-20.0, 5.0, 3.0))
    centre = np.asarray(like.TransformContinuousIndexToPhysicalPoint([n / 2 for n in like.GetSize()]))
    a = union(ball(like, centre, 11), ball(like, centre + (9, -6, 4), 6))
    b = union(ball(like, centre + (2, 1, -1), 9), ball(like, centre + (-10, 8, 0), 5))
    sd = S.surface_distances(a, b)
    np.testing.assert_allclose(np.sort(sd.pred_to_ref), np.sort(brute_force_directed(a, b)), atol=1e-4)
    np.testing.assert_allclose(np.sort(sd.ref_to_pred), np.sort(brute_force_directed(b, a)), atol=1e-4)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_concentric_spheres_are_radius_difference_apart(spacing):
    """Every surface point of a sphere of radius 10 mm is 4 mm from the concentric 14 mm sphere."""
    like = grid([int(40 / s) for s in spacing], spacing)
    centre = (20.3, 19.7, 20.1)  # off the voxel lattice on purpose
    sd = S.surface_distances(ball(like, centre, 10), ball(like, centre, 14))
    tol = 0.5 * max(spacing)  # half a voxel (of the coarsest axis)
    assert sd.hausdorff() == pytest.approx(4.0, abs=tol)
    assert sd.hd95() == pytest.approx(4.0, abs=tol)
    assert sd.assd() == pytest.approx(4.0, abs=tol)


def _shifted_sphere_truth(radius: float, shift: float) -> tuple[float, float, float]:
    """(ASSD, HD95, HD) of two spheres of one radius whose centres are *shift* apart.

    The distance from a point of sphere A at polar angle θ (from the shift direction) to sphere B
    is |sqrt(R² + s² − 2Rs·cos θ) − R|, and cos θ is uniform on [−1, 1] over the sphere's area.
    (Numerically this distance is uniform on [0, s]: ASSD = s/2, HD95 = 0.95 s, HD = s.)
    """
    u = np.linspace(-1.0, 1.0, 400_001)
    d = np.abs(np.sqrt(radius ** 2 + shift ** 2 - 2 * radius * shift * u) - radius)
    return float(d.mean()), float(np.percentile(d, 95)), float(d.max())


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("axis", [0, 2])
def test_shifted_spheres_match_analytic_distances(spacing, axis):
    like = grid([int(48 / s) for s in spacing], spacing)
    centre = np.array([20.3, 23.7, 20.1])
    shift = np.zeros(3)
    shift[axis] = 6.0
    sd = S.surface_distances(ball(like, centre, 10), ball(like, centre + shift, 10))
    assd, hd95, hd = _shifted_sphere_truth(10, 6)
    assert (assd, hd95, hd) == pytest.approx((3.0, 5.7, 6.0), abs=1e-3)
    tol = 0.5 * max(spacing)
    assert sd.hausdorff() == pytest.approx(hd, abs=tol)
    assert sd.hd95() == pytest.approx(hd95, abs=tol)
    assert sd.assd() == pytest.approx(assd, abs=tol)
    # SlicerRT-style summaries are defined and ordered as their definitions imply
    assert sd.hd95_mean_of_directed() <= sd.hd95() + 1e-9
    assert sd.mean_of_directed_means() == pytest.approx(assd, abs=tol)


def test_hausdorff_agrees_with_simpleitk_filter_on_nested_shapes():
    """For nested shapes the voxel-set Hausdorff (SimpleITK's filter) and ours measure the same gap."""
    spacing = (0.7, 0.7, 2.0)
    like = grid([int(40 / s) for s in spacing], spacing)
    a, b = ball(like, (20, 20, 20), 8), ball(like, (21, 20, 19), 13)
    f = sitk.HausdorffDistanceImageFilter()
    f.Execute(a, b)
    assert S.hausdorff_mm(a, b) == pytest.approx(f.GetHausdorffDistance(), abs=0.5 * max(spacing))


def test_distances_ignore_direction_matrix_and_crop():
    spacing = (0.8, 0.8, 1.6)
    plain = grid((60, 60, 30), spacing)
    rotated = grid((60, 60, 30), spacing, direction=(0, 0, 1, 1, 0, 0, 0, 1, 0))
    out = []
    for like in (plain, rotated):
        ctr = np.asarray(like.TransformContinuousIndexToPhysicalPoint([30, 30, 15]))
        shift = np.asarray(like.GetDirection()).reshape(3, 3) @ [3, 0, 0]  # 3 mm along index axis i
        out.append(S.surface_distances(ball(like, ctr, 9), ball(like, ctr + shift, 9)))
    assert out[0].hausdorff() == pytest.approx(out[1].hausdorff(), abs=1e-4)
    assert out[0].assd() == pytest.approx(out[1].assd(), abs=1e-4)
    # crop_to_foreground keeps physical positions
    full_a, full_b = ball(plain, (20, 24, 24), 5), ball(plain, (26, 24, 24), 5)
    a, b = Ms.crop_to_foreground(full_a, full_b)
    assert a.GetSize()[0] < 60
    assert a.TransformIndexToPhysicalPoint((0, 0, 0)) == b.TransformIndexToPhysicalPoint((0, 0, 0))
    expected = np.sort(brute_force_directed(full_a, full_b))  # on the uncropped grid
    np.testing.assert_allclose(np.sort(S.surface_distances(a, b).pred_to_ref), expected, atol=1e-4)
    assert M.volume_ml(a) == M.volume_ml(full_a)


def test_grids_must_match():
    a = ball(grid((20, 20, 10), (1.0, 1.0, 2.0)), (10, 10, 10), 4)
    b = ball(grid((20, 20, 10), (1.0, 1.0, 2.5)), (10, 10, 10), 4)
    with pytest.raises(InputError) as err:
        M.evaluate(a, b, "pred.nii.gz", "reader1.nii.gz")
    msg = str(err.value)
    assert "pred.nii.gz" in msg and "reader1.nii.gz" in msg and "Fix:" in msg


# ------------------------------------------------------------------------ volumes, size, stage
def test_volume_and_diameter_of_a_sphere():
    spacing = (0.7, 0.7, 1.5)
    like = grid([int(40 / s) for s in spacing], spacing)
    s = ball(like, (20.2, 19.9, 20.3), 12)
    assert M.volume_ml(s) == pytest.approx(4 / 3 * math.pi * 12 ** 3 / 1000, rel=0.02)
    d = M.longest_diameter_mm(s)
    assert 24.0 - max(spacing) <= d <= 24.0  # border voxel centres lie inside the true surface
    assert M.t_stage(d) == "T2"


def test_longest_diameter_is_of_the_largest_lesion():
    like = grid((100, 60, 30), (1.0, 1.0, 2.0))
    two = union(ball(like, (20, 30, 30), 8), ball(like, (70, 30, 30), 5))  # 16 mm and 10 mm, 50 mm apart
    assert M.lesion_diameters_mm(two)[0] == pytest.approx(16, abs=1.0)
    assert M.lesion_diameters_mm(two)[1] == pytest.approx(10, abs=1.0)
    assert M.longest_diameter_mm(two) == pytest.approx(16, abs=1.0)
    assert M.t_stage(M.longest_diameter_mm(two)) == "T1"  # not T3 from the 60 mm span


def test_t_stage_boundaries():
    assert [M.t_stage(d) for d in (0.0, 0.5, 20.0, 20.01, 50.0, 50.01, 120.0)] == \
        ["T0", "T1", "T1", "T2", "T2", "T3", "T3"]
    with pytest.raises(ValueError):
        M.t_stage(-1.0)
    with pytest.raises(ValueError):
        M.t_stage(float("nan"))


# ------------------------------------------------------------------------------ lesion detection
def test_lesion_detection_counts_hits_misses_and_false_positives():
    like = grid((80, 40, 20), (1.0, 1.0, 2.0))
    ref = union(ball(like, (12, 20, 20), 6), ball(like, (40, 20, 20), 5), ball(like, (66, 20, 20), 4))
    pred = union(ball(like, (12, 20, 20), 6),             # exact hit
                 ball(like, (44, 20, 20), 3),             # partial overlap with lesion 2
                 ball(like, (66, 34, 20), 3))             # false positive near lesion 3, no overlap
    det = L.lesion_detection(pred, ref)
    assert det.n_reference_lesions == 3
    assert det.n_detected == 2
    assert det.lesion_sensitivity == pytest.approx(2 / 3)
    assert det.n_pred_components == 3
    assert det.n_false_positive_components == 1
    biggest = det.lesions[0]
    assert biggest.detected and biggest.overlap_fraction == pytest.approx(1.0)
    partial = [les for les in det.lesions if 0 < les.overlap_fraction < 1][0]
    # a strict overlap criterion turns the partial hit into a miss
    strict = L.lesion_detection(pred, ref, min_overlap=partial.overlap_fraction + 0.01)
    assert strict.n_detected == 1


def test_evaluate_collects_consistent_values():
    spacing = (0.8, 0.8, 1.6)
    like = grid((60, 60, 30), spacing)
    p, r = ball(like, (24, 24, 24), 9), ball(like, (27, 24, 24), 10)
    m = M.evaluate(p, r)
    assert m.dice == pytest.approx(M.dice(p, r))
    assert m.hd95_mm == pytest.approx(S.hd95_mm(p, r))
    assert m.volume_difference_ml == pytest.approx(M.volume_ml(p) - M.volume_ml(r))
    assert m.ref_t_stage == "T1" and m.detected_lesions == 1
    d = m.as_dict()
    assert "extra" not in d and d["dice"] == m.dice


# ------------------------------------------------------------------------------ evaluate CLI
def _write(img: sitk.Image, path) -> str:
    sitk.WriteImage(img, str(path))
    return str(path)


def _args(argv):
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    evaluate_cli.register(sub)
    return parser.parse_args(["evaluate", *argv])


def test_evaluate_cli_rows_and_csv(tmp_path, capsys):
    like = grid((50, 50, 25), (0.8, 0.8, 1.6))
    pred = _write(ball(like, (20, 20, 20), 8), tmp_path / "pred.nii.gz")
    r1 = _write(ball(like, (20, 20, 20), 8), tmp_path / "r1.nii.gz")
    r2 = _write(ball(like, (23, 20, 20), 8), tmp_path / "r2.nii.gz")
    out = tmp_path / "m.csv"
    args = _args(["--pred", pred, "--ref", r1, "--ref", r2, "--csv", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "r1.nii.gz" in text and "r2.nii.gz" in text and "HD95" in text
    assert "lesions found" in text and "FP lesions" in text and "1/1" in text
    rows = list(csv.DictReader(out.open()))
    assert [row["reference"] for row in rows] == [r1, r2]
    assert float(rows[0]["dice"]) == pytest.approx(1.0)
    assert float(rows[0]["hd95_mm"]) == pytest.approx(0.0)
    assert 0.5 < float(rows[1]["dice"]) < 1.0
    assert float(rows[1]["hausdorff_mm"]) == pytest.approx(3.0, abs=0.4)
    # the CSV is not overwritten without --overwrite
    from BreastTumorSegLib.core.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        args.func(args)


def test_evaluate_cli_refuses_other_grid_and_probability_maps(tmp_path):
    like = grid((30, 30, 15), (1.0, 1.0, 2.0))
    pred = _write(ball(like, (15, 15, 15), 5), tmp_path / "pred.nii.gz")
    other = _write(ball(grid((30, 30, 15), (1.0, 1.0, 3.0)), (15, 15, 15), 5), tmp_path / "other.nii.gz")
    args = _args(["--pred", pred, "--ref", other])
    with pytest.raises(InputError) as err:
        args.func(args)
    assert "pred.nii.gz" in str(err.value) and "other.nii.gz" in str(err.value)

    prob = sitk.Cast(ball(like, (15, 15, 15), 5), sitk.sitkFloat32) * 0.7
    prob_path = _write(prob, tmp_path / "prob.nii.gz")
    args = _args(["--pred", prob_path, "--ref", pred])
    with pytest.raises(InputError, match="--threshold"):
        args.func(args)
    args = _args(["--pred", prob_path, "--ref", pred, "--threshold", "0.5"])
    assert args.func(args) == 0


# ------------------------------------------------------------------------------ lesion level, FROC
def test_lesion_level_hand_counts():
    like = grid((90, 40, 20), (1.0, 1.0, 2.0))
    small_true = ball(like, (80, 20, 20), 2)  # 0.03 mL: below 0.1 mL, neither counted nor an FP target
    ref = union(ball(like, (12, 20, 20), 6), ball(like, (40, 20, 20), 5), small_true)
    pred = union(ball(like, (13, 20, 20), 5),     # finds lesion 1
                 ball(like, (40, 6, 20), 3),      # FP 1 (beside lesion 2, no overlap)
                 ball(like, (60, 30, 20), 3),     # FP 2
                 ball(like, (80, 20, 20), 2))     # on the tiny true lesion: not an FP
    r = L.lesion_level(pred, ref)
    assert (r.n_true, r.n_found, r.n_false_positive, r.n_pred) == (2, 1, 2, 4)
    assert r.sensitivity == pytest.approx(0.5)
    found = M.volume_ml(ball(like, (12, 20, 20), 6) & ball(like, (13, 20, 20), 5)) + M.volume_ml(small_true)
    assert r.voxel_recall == pytest.approx(found / M.volume_ml(ref))
    # a label map with one value per lesion: two touching lesions stay two
    labels = sitk.Cast(ball(like, (12, 20, 20), 6), sitk.sitkUInt8) + 2 * sitk.Cast(
        ball(like, (40, 20, 20), 5), sitk.sitkUInt8)
    assert L.lesion_level(pred, labels, ref_is_labels=True).n_true == 2
    m = M.evaluate(pred, ref)
    assert (m.true_lesions, m.found_lesions, m.false_positive_lesions) == (2, 1, 2)
    assert m.lesion_sensitivity == pytest.approx(0.5)


def test_froc_sensitivity_never_rises_with_the_threshold():
    like = grid((90, 40, 20), (1.0, 1.0, 2.0))
    ref = union(ball(like, (12, 20, 20), 6), ball(like, (40, 20, 20), 5), ball(like, (70, 20, 20), 5))
    prob = (sitk.Cast(ball(like, (12, 20, 20), 6), sitk.sitkFloat32) * 0.95
            + sitk.Cast(ball(like, (40, 20, 20), 4), sitk.sitkFloat32) * 0.75
            + sitk.Cast(ball(like, (70, 20, 20), 3), sitk.sitkFloat32) * 0.55
            + sitk.Cast(ball(like, (40, 5, 20), 3), sitk.sitkFloat32) * 0.6)  # one FP at p 0.6
    curve = L.froc([prob, prob], [ref, ref], thresholds=(0.9, 0.5, 0.7))
    assert [p.threshold for p in curve] == [0.5, 0.7, 0.9]
    assert [p.sensitivity for p in curve] == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert [p.mean_fp_per_exam for p in curve] == [1.0, 0.0, 0.0]
    sens = [p.sensitivity for p in curve]
    assert all(a >= b for a, b in zip(sens, sens[1:]))

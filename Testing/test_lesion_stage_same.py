"""CPU time of the lesion stage (issue 25, docs/decisions/cpu-time-issue25.md): the cheaper forms of four steps give
the very outputs of the forms they replace (no time is asserted). The band's neighbour rule taken in the cores' own
box, the band outline labelled in its own box, the lesion table's probability cast in the lesions' box only, and the
kept-lesion steps' label map made without a cast: each against the whole-array computation it replaces."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.engine.kept_grow import grow_kept
from BreastTumorSegLib.engine.kept_hull import fill_kept, remeasured
from BreastTumorSegLib.engine.postprocess import lesion_table
from BreastTumorSegLib.kinetics.ftv import _neighbours_rule, count_neighbors
from BreastTumorSegLib.kinetics.outline import FULL26, bbox


def _masks(seed: int, n: int = 120):
    """Random bool arrays of random shapes: specks, blobs, masks confined to a sub-box or touching the border, empty."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = tuple(int(v) for v in rng.integers(3, 30, 3))
        m = ndimage.binary_dilation(rng.random(shape) < rng.uniform(0.002, 0.2), iterations=int(rng.integers(0, 2)))
        if i % 3:
            lo = [int(rng.integers(0, s)) for s in shape]
            keep = np.zeros(shape, bool)
            keep[tuple(slice(a, int(rng.integers(a + 1, s + 1))) for a, s in zip(lo, shape))] = True
            m &= keep
        if i % 17 == 0:
            m[:] = False
        yield rng, m


def test_the_neighbour_rule_in_the_cores_box_is_the_whole_array_rule():
    """kinetics/beside_region.band_cores takes FTV's neighbour rule in the candidates' bounding box
    (``ftv._neighbours_rule``) instead of counting the neighbours of every voxel of the band's box."""
    for rng, m in _masks(1):
        n = int(rng.integers(0, 12))
        whole = m & (count_neighbors(m) >= n)
        got = _neighbours_rule(m, n)
        assert got.dtype == whole.dtype and np.array_equal(got, whole)


def test_labels_of_the_outline_in_its_own_box_are_the_whole_box_labels():
    """kinetics/deep_band.band_components labels the band's outline in its bounding box: every component keeps its
    number (the raster order of a box is that of the array) and the dtype is scipy's."""
    for _, m in _masks(2):
        whole, _ = ndimage.label(m, structure=FULL26)
        got = np.zeros(m.shape, np.int32)
        crop = bbox(m, margin=0)
        if crop is not None:
            got[crop], _ = ndimage.label(m[crop], structure=FULL26)
        assert got.dtype == whole.dtype and np.array_equal(got, whole)


def _image(a, dtype, spacing=(0.8, 0.7, 2.5)) -> sitk.Image:
    im = sitk.GetImageFromArray(np.asarray(a, dtype))
    im.SetSpacing(spacing)
    im.SetOrigin((-20.3, 5.1, 3.7))
    return im


def _lesions():
    labels = np.zeros((12, 40, 50), np.uint32)
    labels[2:6, 5:15, 8:20] = 1
    labels[7:10, 25:33, 30:45] = 2
    labels[11, 0, 49] = 3  # a corner voxel: the joint box reaches the array's end
    return labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_lesion_tables_maximum_probability_is_read_from_the_whole_map(dtype):
    """engine/postprocess.lesion_table casts only the lesions' joint box of the probability map to float32: each
    lesion's maximum probability is that of the whole map cast (a float64 map too)."""
    labels = _lesions()
    p = np.random.default_rng(3).random(labels.shape).astype(dtype) * 0.999
    p[labels == 2] += 1e-9  # float64 values that float32 rounds
    table = lesion_table(_image(labels, np.uint32), _image(p, dtype))
    p32 = p.astype(np.float32)
    assert [les.label for les in table] == [1, 2, 3]
    for les in table:
        assert les.max_probability == float(p32[labels == les.label].max())
        assert les.voxels == int(np.count_nonzero(labels == les.label))


def test_the_kept_steps_label_map_is_the_cast_of_their_components():
    """engine/kept_hull and engine/kept_grow give the label map as the comparison ``components > 0`` (already uint8)
    instead of casting it again: the same pixel type, voxels and geometry as ``Cast(components > 0, UInt8)``, whether
    nothing grows, nothing is kept, or a lesion is measured again (``remeasured``, its array not copied first)."""
    labels = _lesions()
    comps = _image(labels, np.uint32)
    prob = _image(np.where(labels > 0, 0.9, 0.01), np.float32)
    table = lesion_table(comps, prob)
    flat = np.zeros(labels.shape, np.float32)  # no enhancement: nothing is filled or grown
    valid = np.ones(labels.shape, bool)
    out = labels.copy()
    out[2:6, 15, 8:20] = 1  # lesion 1 grown by one layer
    runs = [fill_kept(comps, table, prob, flat, valid), fill_kept(comps, [], prob, flat, valid),
            grow_kept(comps, table, prob, flat, valid, flat),
            remeasured(comps, table, prob, out, {1: 48}, lambda ml: f"{ml:.3f} mL")]
    for (label, _, new), arr in zip(runs, [labels, labels, labels, out]):
        want = sitk.Cast(_image(arr, np.uint32) > 0, sitk.sitkUInt8)
        want.CopyInformation(comps)
        assert label.GetPixelID() == sitk.sitkUInt8 == want.GetPixelID()
        assert label.GetSize() == want.GetSize() and label.GetOrigin() == want.GetOrigin()
        assert label.GetSpacing() == want.GetSpacing() and label.GetDirection() == want.GetDirection()
        assert np.array_equal(sitk.GetArrayViewFromImage(label), sitk.GetArrayViewFromImage(want))
        assert np.array_equal(sitk.GetArrayViewFromImage(new), arr) and new.GetPixelID() == sitk.sitkUInt32
    assert runs[3][1][0].voxels == int(np.count_nonzero(out == 1)) and runs[3][1][1] == table[1]


@pytest.mark.parametrize("pixel", [sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkInt16])
def test_written_maps_without_a_cast_of_their_own_type_are_the_cast_maps(pixel):
    """core/imageutil.cast_once (engine/pipeline.stored_probability, the overview's subtraction): an image of the type
    asked for is used as it is, another type is cast; either way the voxels and geometry of ``sitk.Cast``. The stored
    probability map is the old expression's, and breast_mask_qa's resampled comparison needs no cast (uint8 already)."""
    from BreastTumorSegLib.core.imageutil import cast_once
    from BreastTumorSegLib.engine.pipeline import PROBABILITY_FLOOR, stored_probability

    arr = np.random.default_rng(4).random((6, 9, 11)) * (100 if pixel == sitk.sitkInt16 else 0.01)
    img = sitk.Cast(_image(arr, np.float64), pixel)
    got, want = cast_once(img, sitk.sitkFloat32), sitk.Cast(img, sitk.sitkFloat32)
    assert (got is img) == (pixel == sitk.sitkFloat32)
    for a, b in [(got, want), (stored_probability(img), sitk.Mask(want, sitk.GreaterEqual(want, PROBABILITY_FLOOR)))]:
        assert a.GetPixelID() == b.GetPixelID() == sitk.sitkFloat32
        assert a.GetOrigin() == b.GetOrigin() and a.GetSpacing() == b.GetSpacing() and a.GetDirection() == b.GetDirection()
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert (img > 0).GetPixelID() == sitk.sitkUInt8  # what breast_mask_qa resamples (nearest neighbour, own type)

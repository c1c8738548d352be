"""The rest of a tumor judged against the tissue around it (kinetics/outline_local.py, ``outline_local``):
marked background enhancement far from the tumor (PE 55 %) lifts the outline's level above a moderately
enhancing lobe (48 %) that the quiet tissue around the tumor (PE 5 %) leaves no doubt about. With the option the
lobe is added; enhancing tissue of the same PE touching the core on the other side, which runs on far beyond
the tumor, is not."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.kinetics.ftv import FTVSettings
from BreastTumorSegLib.kinetics.outline_local import local_growth
from BreastTumorSegLib.models.ftv_segmenter import FTVOutlineSegmenter

TIMES = (0.0, 1.5, 3.0, 4.5)
SHAPE = (20, 40, 100)  # z, y, x; 1 mm voxels
CURVE = (0.0, 1.0, 0.95, 0.9)


def lobe_exam(seed=0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")
    cz, cy = (SHAPE[0] - 1) / 2, (SHAPE[1] - 1) / 2
    core = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - 30.0) ** 2 <= 5.0 ** 2
    slab = (np.abs(zz - cz) <= 3) & (np.abs(yy - cy) <= 3)
    lobe = slab & (xx >= 34) & (xx <= 38) & ~core  # ends 3-4 mm beyond the core
    bpe_near = slab & (xx >= 4) & (xx <= 26) & ~core  # touches the core and runs on for 20 mm
    bpe_far = xx >= 70
    pe = np.full(SHAPE, 0.05)
    pe[core], pe[lobe], pe[bpe_near], pe[bpe_far] = 1.5, 0.48, 0.48, 0.55
    phases = [sitk.GetImageFromArray((100 * (1 + pe * g) + rng.normal(0, 2, SHAPE)).astype(np.float32)) for g in CURVE]
    return DCEExam(phases, list(TIMES), case_id="lobe"), core, lobe, bpe_near


def _outline(seg, exam):
    seg.predict(exam, None)
    return sitk.GetArrayFromImage(seg.last_result.outline) > 0


def test_a_lobe_under_the_exam_level_is_added_and_background_running_on_is_not():
    exam, core, lobe, bpe_near = lobe_exam()
    off = _outline(FTVOutlineSegmenter(), exam)  # off by default (docs/decisions/outline-local-issue25.md)
    assert off[lobe].mean() < 0.2
    on_seg = FTVOutlineSegmenter(outline_local="level")
    on = _outline(on_seg, exam)
    assert on[lobe].mean() >= 0.8
    assert on[bpe_near].mean() <= off[bpe_near].mean() + 0.05
    assert on[core].mean() >= 0.95
    assert any("outline_local 'level'" in n for n in on_seg.last_result.notes)


def test_off_changes_nothing_and_a_wrong_mode_is_refused():
    out = np.zeros((9, 9, 9), bool)
    out[3:6, 3:6, 3:6] = True
    pe = np.full(out.shape, 50.0, np.float32)
    tissue = np.ones(out.shape, bool)
    assert local_growth(out, out, tissue, pe, None, (1, 1, 1), FTVSettings(), 60.0) is out
    with pytest.raises(InputError, match="outline_local"):
        local_growth(out, out, tissue, pe, None, (1, 1, 1), FTVSettings(outline_local="more"), 60.0)


def test_edge_adds_the_half_maximum_layer_next_to_a_moderate_part_only():
    """'edge': one layer of voxels at half-way between a moderate part (PE 50 %) and its quiet ring (2 %) is
    added (PE 30 %); a layer under half maximum (PE 20 %) is not, and 'level' adds neither (both under 40 %)."""
    out = np.zeros((30, 30, 30), bool)
    out[12:18, 12:18, 12:18] = True
    pe = np.full(out.shape, 2.0, np.float32)
    pe[out] = 50.0
    half_up = np.zeros_like(out)
    half_up[12:18, 12:18, 18] = True
    below = np.zeros_like(out)
    below[12:18, 12:18, 11] = True
    pe[half_up], pe[below] = 30.0, 20.0
    tissue = np.ones(out.shape, bool)
    s = FTVSettings(outline_pe=40.0, outline_local="edge")
    grown = local_growth(out, out, tissue, pe, None, (1, 1, 1), s, 60.0)
    assert grown[half_up].all() and not grown[below].any()
    assert np.count_nonzero(grown) == np.count_nonzero(out) + np.count_nonzero(half_up)
    level = local_growth(out, out, tissue, pe, None, (1, 1, 1), FTVSettings(outline_pe=40.0, outline_local="level"), 60.0)
    assert level is out

"""Rim-enhancing and necrotic tumors whose strong shell the 2 mm vessel opening removes
(kinetics/outline_shells.py, ``FTVSettings.outline_shell_min_pe``): with the setting the tumor is outlined,
while vessels (a straight tube, a ring, two parallel tubes), a faint shell (background enhancement, median
PE 80 %) and a tumor-free phantom gain nothing."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.kinetics.outline_shells import shell_hull, shell_seeds
from BreastTumorSegLib.models.ftv_segmenter import FTVOutlineSegmenter
from pe_fixtures import plateau_phases

TIMES = (0.0, 1.5, 3.0, 4.5)
SPACING = (1.0, 1.0, 1.0)  # x, y, z (mm)
SHAPE = (30, 40, 110)  # z, y, x


def _grid(shape=SHAPE):
    return np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")


def shell_exam(inside_pe: float, seed: int = 0):
    """Tissue (pre 100, noise 2, PE 5 %) with a tumor of radius 7 mm at x = 20 mm whose outer 2.5 mm
    enhance strongly (PE 150 %) around an interior at *inside_pe* (0.55: rim-enhancing, 0.02: necrotic),
    and vessels (PE 150 %): a tube of radius 1.2 mm along x (45-100 mm), a ring of that tube
    (radius 6 mm, in the z plane) around x = 60 mm, y = 10 mm, and two parallel tubes 3 mm apart along z
    at x = 85 mm; and a faint shell like the tumor's (PE 80 %, interior 55 %) at x = 62 mm, y = 30 mm
    (background enhancement). Returns the exam, the tumor and the vessel masks
    (the faint shell counted with the vessels: nothing may grow there)."""
    zz, yy, xx = _grid()
    cz, cy = (SHAPE[0] - 1) / 2, (SHAPE[1] - 1) / 2
    r_t = np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - 20.0) ** 2)
    tube = ((zz - cz) ** 2 + (yy - cy) ** 2 <= 1.2 ** 2) & (xx >= 45) & (xx <= 100)
    ring = (zz - 8) ** 2 + (np.sqrt((yy - 10.0) ** 2 + (xx - 60.0) ** 2) - 6.0) ** 2 <= 1.2 ** 2
    pair = (((yy - 30) ** 2 + (xx - 85) ** 2 <= 1.2 ** 2) | ((yy - 30) ** 2 + (xx - 88) ** 2 <= 1.2 ** 2)) & (zz >= 3) & \
        (zz <= 26)
    pe = np.full(SHAPE, 0.05)
    pe[r_t <= 7.0] = 1.5
    pe[r_t < 4.5] = inside_pe
    vessels = tube | ring | pair
    pe[vessels] = 1.5
    r_f = np.sqrt((zz - cz) ** 2 + (yy - 30.0) ** 2 + (xx - 62.0) ** 2)
    pe[r_f <= 7.0] = 0.8
    pe[r_f < 4.5] = 0.55
    exam = DCEExam(plateau_phases(pe, len(TIMES), np.random.default_rng(seed), SPACING), list(TIMES), case_id="shell")
    return exam, r_t <= 7.0, vessels | (r_f <= 7.0)


def _outline(seg, exam):
    seg.predict(exam, None)
    return sitk.GetArrayFromImage(seg.last_result.outline) > 0


@pytest.mark.parametrize("inside_pe", [0.55, 0.02], ids=["rim", "necrotic"])
def test_a_shell_tumor_the_opening_deletes_is_outlined_and_vessels_are_not(inside_pe):
    exam, tumor, vessels = shell_exam(inside_pe)
    off = _outline(FTVOutlineSegmenter(outline_shell_min_pe=0.0), exam)  # step off: the opening removes the 2.5 mm shell
    assert off[tumor].mean() < 0.1
    seg = FTVOutlineSegmenter(outline_shell_min_pe=100.0)
    on = _outline(seg, exam)
    assert on[tumor].mean() >= 0.9  # the shell and the interior it encloses
    assert np.count_nonzero(on & ~tumor) <= 0.25 * np.count_nonzero(tumor)  # one partial-volume layer at most
    assert not (on & vessels).any()
    assert any("outline_shell_min_pe" in n for n in seg.last_result.notes)
    # The PE condition is what keeps the faint shell out: without it (a token 0.001 %) it is outlined too.
    assert _outline(FTVOutlineSegmenter(outline_shell_min_pe=1e-3), exam)[vessels].any()


def test_a_tumor_free_exam_gains_nothing():
    """The same vessels, no tumor: the step finds no shell and the outline is unchanged."""
    exam, _, vessels = shell_exam(0.55)
    zz, yy, xx = _grid()
    pe = np.full(SHAPE, 0.05)
    pe[vessels] = 1.5
    free = DCEExam(plateau_phases(pe, len(TIMES), np.random.default_rng(1), SPACING), list(TIMES), case_id="free")
    off = _outline(FTVOutlineSegmenter(outline_shell_min_pe=0.0), free)
    seg = FTVOutlineSegmenter(outline_shell_min_pe=100.0)
    on = _outline(seg, free)
    assert np.array_equal(on, off)
    assert not any("outline_shell_min_pe" in n for n in seg.last_result.notes)


def test_shell_seeds_keep_an_enclosing_shell_not_tubes_rings_or_outlined_cores():
    """Unit test of the shape rule: of a thin shell (kept, with the interior it encloses), a tube, a ring,
    a shell under 0.1 mL and a shell the first outline already holds, only the first one seeds."""
    shape = (24, 24, 120)
    zz, yy, xx = _grid(shape)

    def r(x):
        return np.sqrt((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - x) ** 2)
    shell, small, held = (r(12) >= 4.5) & (r(12) <= 7), (r(34) >= 1.2) & (r(34) <= 2.6), (r(100) >= 4.5) & (r(100) <= 7)
    tube = ((zz - 12) ** 2 + (yy - 12) ** 2 <= 1.2 ** 2) & (xx >= 45) & (xx <= 70)
    ring = (zz - 12) ** 2 + (np.sqrt((yy - 12.0) ** 2 + (xx - 80.0) ** 2) - 6.0) ** 2 <= 1.2 ** 2
    core0 = shell | small | held | tube | ring
    sp = np.array([1.0, 1.0, 1.0])
    seeds, n = shell_seeds(core0, np.zeros(shape, bool), held, np.ones(shape, bool), sp, 2.0, 8.0)
    assert n == 1
    # The median PE condition: the same shell enhancing at 95 % is refused at 100 %, kept at 90 %.
    pe = np.full(shape, 95.0, np.float32)
    assert shell_seeds(core0, np.zeros(shape, bool), held, np.ones(shape, bool), sp, 2.0, 8.0, pe, 100.0)[1] == 0
    assert shell_seeds(core0, np.zeros(shape, bool), held, np.ones(shape, bool), sp, 2.0, 8.0, pe, 90.0)[1] == 1
    assert np.array_equal(seeds & core0, shell)
    assert seeds[r(12) < 4.5].all()  # the enclosed interior (the hull's body) seeds too
    assert not seeds[~(r(12) <= 7)].any()
    hull = shell_hull(ring, sp)
    assert hull.sum() > ring.sum()  # the ring is filled in its plane ...
    assert not shell_seeds(ring, np.zeros(shape, bool), np.zeros(shape, bool), np.ones(shape, bool), sp, 2.0, 0.0)[1]  # ... but stays thin


def test_a_shell_within_the_skin_margin_is_left_out():
    shape = (24, 24, 40)
    zz, yy, xx = _grid(shape)
    rr = np.sqrt((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2)
    shell = (rr >= 4.5) & (rr <= 7)
    body = rr <= 10  # air beyond 10 mm from the centre: the shell's deepest voxel is 5.5 mm inside
    sp = np.array([1.0, 1.0, 1.0])
    assert shell_seeds(shell, np.zeros(shape, bool), np.zeros(shape, bool), body, sp, 2.0, 8.0)[1] == 0
    assert shell_seeds(shell, np.zeros(shape, bool), np.zeros(shape, bool), np.ones(shape, bool), sp, 2.0, 8.0)[1] == 1

"""The small phantom of the per-breast malignancy tests (our generator, motion-free): a malignant
lesion (washout, spiculated, rim-enhancing, 10 mm) in the left breast, a benign one (persistent,
smooth, 4 mm) in the right."""
from BreastTumorSegLib.training.phantom import make_phantom


def two_lesion_phantom():
    return make_phantom(11, n_tumors=2, tumor_side=["left", "right"], curve=["washout", "persistent"],
                        tumor_kind="mass", tumor_radius_mm=[10.0, 4.0], tumor_margin=["spiculated", "smooth"],
                        tumor_rim=[True, False], bpe=0.1, motion_mm=0, n_phases=5, orientation="axial")


def two_lesion_candidates():
    """That phantom and the classifier's candidates on it (no registration): ``(phantom, candidates)``."""
    from BreastTumorSegLib.engine.classify import exam_candidates

    ph = two_lesion_phantom()
    _, _, cands, _, _ = exam_candidates(ph.exam, register=False)
    return ph, cands

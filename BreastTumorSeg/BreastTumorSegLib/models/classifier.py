"""Per-breast malignancy classifiers: model cards with ``"task": "classification"``.

A classification card lies beside its weights in a models folder like every network
(:mod:`.cards`); :func:`classification_models` lists them and :func:`load_classifier` loads one by
name. A card's ``architecture.type`` says which model it is, both applied with numpy over the
features of enhancing candidates (:data:`FEATURES`, computed by
:mod:`BreastTumorSegLib.engine.classify`): ``candidate_gradient_boosted_trees`` (the shipped
``breastcls-demo``; :class:`.trees.TreeEnsemble`) or ``candidate_logistic_regression`` (a
standardisation + logistic regression, :class:`.logistic.LogisticModel`).

``monai:PATH`` (a MONAI bundle) is recognised and refused with one line saying why and what to
use instead: a classification bundle's input convention (breast crop, channels, orientation)
differs from bundle to bundle, so there is no safe generic mapping from a DCE exam yet; a
segmentation bundle segments with ``segment --model monai:PATH``.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import InputError, ModelError
from .cards import iter_cards
from .logistic import LogisticModel
from .trees import TreeEnsemble

CLASSIFICATION_TASK = "classification"
DEFAULT_CLASSIFIER = "breastcls-demo"
# Features of one enhancing candidate (engine/classify.py computes them; this order is the card's).
FEATURES = ("log_volume_ml", "log_elongation", "roundness", "solidity", "pe_early_median", "pe_early_p90",
            "contrast_to_background", "washout_frac", "plateau_frac", "persistent_frac", "log_ser_median",
            "rim_ratio", "pe_cv", "background_pe",
            # the most suspicious part (the candidate's most enhancing quarter): its mean curve's late
            # change and its washout / persistent fractions (kinetic curve type of the hot spot)
            "hot_late_change", "hot_washout_frac", "hot_persistent_frac", "log_ser_p90",
            # size and margin: longest axis, radial irregularity of the outline
            "log_major_axis_mm", "radial_cv",
            # the breast's early-subtraction MIP (Gong et al.): its bright level, the candidate's dominance
            "breast_mip_p95", "mip_dominance",
            # the breast mask as a hint: the share of the candidate inside it
            "breast_mask_fraction",
            # how much the shape and curve features can say: the candidate's voxel count (resolution),
            # whether the exam has a late phase (curve type known) and the early-to-late time (min)
            "log_n_voxels", "curve_known", "late_gap_min")
# Version 4's additions (engine/classify_mip.py, after Gong et al.): the MIP of the second post-contrast
# subtraction per breast (its top against its own background, the brightest blob's area, compactness
# and outline irregularity, the asymmetry against the other breast) and per candidate (its MIP peak
# over the background, the share of the brightest blob it covers).
MIP_FEATURES = ("mip2_top_pe", "mip2_top_over_bg", "mip2_blob_log_area_mm2", "mip2_blob_compactness",
                "mip2_blob_radial_cv", "mip2_asymmetry", "mip2_cand_peak_over_bg", "mip2_cand_blob_share")
# Version 5's trial (engine/classify_context.py): each candidate against the other candidates of its
# breast and exam (ranks and ratios of enhancement and size), robust to the exam's contrast and dose.
CONTEXT_FEATURES = ("ctx_log_n_candidates", "ctx_p90_rank", "ctx_volume_rank", "ctx_p90_over_breast_max",
                    "ctx_p90_over_exam_max", "ctx_p90_over_other_breast", "ctx_volume_minus_breast_max",
                    "ctx_log_n_other_breast")
# Version 8's trial (engine/classify_grid.py): the margin against a smooth sphere of the same volume drawn on
# the exam's own voxel grid (a coarse, anisotropic grid makes any outline ragged).
GRID_FEATURES = ("grid_radial_cv_excess", "grid_log_voxels_per_radius")
# Version 5's trial (engine/classify_measure.py, docs/decisions/classify-v12.md): the curve of the hottest
# voxels, the size at half the lesion's own maximum, and its kind (radial profile, solidity, fill, margin).
MEASURE_FEATURES = ("m_hot10_change", "m_hot25_change", "m_hot10_enh_change", "m_hot10_peak_change",
                    "m_halfmax_log_ml", "m_core_log_ml", "m_rim_profile", "m_halfmax_solidity", "m_fill",
                    "m_halfmax_radial_cv", "m_edge_contrast")
ALL_FEATURES = FEATURES + MIP_FEATURES
WITH_CONTEXT = ALL_FEATURES + CONTEXT_FEATURES
WITH_GRID = WITH_CONTEXT + GRID_FEATURES
WITH_MEASURE = FEATURES + MEASURE_FEATURES
# A card names one of these feature lists (each one's columns but WITH_MEASURE's are the first ones of
# WITH_GRID; WITH_MEASURE is FEATURES followed by MEASURE_FEATURES).
FEATURE_LISTS = (FEATURES, ALL_FEATURES, WITH_CONTEXT, WITH_GRID, WITH_MEASURE)


class _BreastScale:
    """What every per-breast classifier adds to its candidate model (``logit``, ``card``): the
    breast scale and the no-candidate probability; a breast's probability is its most suspicious
    candidate's."""

    @property
    def model_id(self) -> str:
        return f"{self.card.get('name', '?')}@{str(self.card.get('sha256', ''))[:8]}"

    def probability(self, x):
        """P(malignant) of each candidate (row of *x*), on the breast scale: the candidate model's logit
        through the card's ``breast_calibration`` (a, b): ``sigmoid(a * logit + b)``, fitted so that a
        breast's maximum is its probability of malignancy on the training exams (monotone: no
        ranking changes; without it, the candidate model's own probability)."""
        import numpy as np

        cal = self.card.get("breast_calibration") or {}
        z = float(cal.get("a", 1.0)) * self.logit(x) + float(cal.get("b", 0.0))
        z = z + self.logit_adjustment(x)
        return 1.0 / (1.0 + np.exp(-z))

    def logit_adjustment(self, x):
        """The card's ``logit_adjustment`` (classify-v12): for each of its ``terms`` ({"feature",
        "above", "add"}), *add* to the breast-scale log-odds of every candidate whose *feature* (a column
        of the card's features) is above *above*; 0 without one."""
        import numpy as np

        x = np.atleast_2d(np.asarray(x, np.float64))
        out = np.zeros(len(x))
        for term in (self.card.get("logit_adjustment") or {}).get("terms", []):
            out += float(term["add"]) * (x[:, self.feature_names.index(term["feature"])] > float(term["above"]))
        return out

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The card's features (:data:`FEATURES`, :data:`ALL_FEATURES` with the MIP features or
        :data:`WITH_CONTEXT` with the breast-context features too)."""
        return tuple(self.card.get("features") or FEATURES)

    @property
    def no_candidate_probability(self) -> float:
        """P(malignant) of a breast without any enhancing candidate (from the card's training counts)."""
        return float(self.card.get("no_candidate_probability", 0.02))


class BreastClassifier(_BreastScale, LogisticModel):
    """Candidate-level logistic model (card ``architecture.type``: ``candidate_logistic_regression``)."""

    @property
    def n_features(self) -> int:
        return len(self.coef)


class BreastTreeClassifier(_BreastScale, TreeEnsemble):
    """Candidate-level gradient-boosted trees (``candidate_gradient_boosted_trees``)."""


ARCHITECTURES = {"candidate_logistic_regression": BreastClassifier,
                 "candidate_gradient_boosted_trees": BreastTreeClassifier}


def classification_models(extra_dirs=None) -> dict[str, Path]:
    """Name -> card path of every installed classification model (first found wins)."""
    out: dict[str, Path] = {}
    for card_path, card in iter_cards(extra_dirs):
        if card.get("task") == CLASSIFICATION_TASK:
            out.setdefault(card["name"], card_path)
    return out


def load_classifier(name: str = DEFAULT_CLASSIFIER, extra_dirs=None) -> BreastClassifier | BreastTreeClassifier:
    """The named classification model (weights verified against the card's SHA-256), of the
    class its card's ``architecture.type`` names (:data:`ARCHITECTURES`; logistic without one)."""
    if name.startswith("monai:"):
        _refuse_monai(Path(name.split(":", 1)[1]))
    models = classification_models(extra_dirs)
    if name not in models:
        raise ModelError(f"unknown classification model '{name}'. Available: {', '.join(sorted(models)) or 'none'}. "
                         "Fix: pick one of these with --model, or add a folder with --models-dir")
    try:
        kind = (json.loads(models[name].read_text()).get("architecture") or {}).get("type", "candidate_logistic_regression")
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{models[name]}: cannot read the classification model's card ({exc})") from None
    if kind not in ARCHITECTURES:
        raise ModelError(f"{models[name]}: unknown classification architecture {kind!r}. "
                         f"Fix: use a model of type {' or '.join(ARCHITECTURES)}")
    listed = tuple(json.loads(models[name].read_text()).get("features", ()))
    features = next((f for f in FEATURE_LISTS if f == listed), FEATURES)  # another list: refused by read()
    return ARCHITECTURES[kind].read(models[name], CLASSIFICATION_TASK, features, "classification model")


def _refuse_monai(path: Path) -> None:
    from .byom.monai_bundle import METADATA, resolve_bundle

    root = resolve_bundle(path)  # one line when it is not a bundle
    try:
        meta = json.loads((root / METADATA).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {METADATA} ({exc})", str(root), "check the bundle's files") from None
    pred = ((meta.get("network_data_format") or {}).get("outputs") or {}).get("pred") or {}
    kind = "a segmentation" if pred.get("type") == "image" else "a classification"
    raise InputError(f"MONAI bundle with {kind} output: per-breast classification with MONAI bundles is not "
                     "supported in this version (each bundle crops, orders channels and orients differently)",
                     str(root), "use --model breastcls-demo, or segment with --model monai:PATH and read the lesion table")

"""The card's operating threshold beside every per-breast probability: the ``classify`` line, the
JSON summary, the picture's title line and the Slicer panel's text (a breast at or above the
threshold reads "above", below it "below"; a card without an operating point shows the bare number)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.engine.classify import ClassificationResult, operating_threshold, probability_text
from BreastTumorSegLib.engine.classify_render import probability_line
from BreastTumorSegLib.models.classifier import load_classifier
from BreastTumorSegLib.slicer.classify_view import ClassificationNodes

CARD = {"threshold": 0.39}


def result(card: dict) -> ClassificationResult:
    heat = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32))
    return ClassificationResult("case1", {"L": 0.93, "R": 0.21}, heat, "breastcls-demo@0123abcd", card=card)


def test_threshold_comes_from_the_shipped_card():
    t = operating_threshold(load_classifier().card)
    assert t is not None and 0.0 < t < 1.0
    assert operating_threshold({}) is None and operating_threshold(None) is None
    assert operating_threshold({"training": {"operating_point": {"threshold": 0.4}}}) == 0.4


def test_each_breast_is_called_against_the_threshold():
    assert probability_text(0.21, 0.39) == "0.21 (below 0.39)"
    assert probability_text(0.93, 0.39) == "0.93 (above 0.39)"
    assert probability_text(0.39, 0.39) == "0.390 (above 0.39)"  # at the threshold counts as above
    assert probability_text(0.3899, 0.39) == "0.390 (below 0.39)"  # never "0.39 (below 0.39)"
    assert probability_text(0.21, None) == "0.21"


def test_line_json_and_panel_text_show_the_threshold():
    res = result(CARD)
    assert probability_line(res) == "P(malignant): R 0.21 (below 0.39), L 0.93 (above 0.39)"
    summary = res.as_dict()
    assert summary["operating_threshold"] == 0.39
    assert summary["breasts"]["L"]["above_threshold"] is True and summary["breasts"]["R"]["above_threshold"] is False
    text = ClassificationNodes(summary=summary).probability_text()
    assert text.startswith("P(malignant): right 0.21 (below 0.39), left 0.93 (above 0.39) (model breastcls-demo")


def test_a_card_without_operating_point_shows_the_bare_probabilities():
    summary = result({}).as_dict()
    assert "operating_threshold" not in summary and "above_threshold" not in summary["breasts"]["L"]
    assert probability_line(result({})) == "P(malignant): R 0.21, L 0.93"
    assert ClassificationNodes(summary=summary).probability_text().startswith("P(malignant): right 0.21, left 0.93 (")

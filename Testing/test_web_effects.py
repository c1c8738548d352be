"""The web station offers a study's effects only (issue 30: "the study's allowed effects from
trame-slicer's editor"): the editor shows buttons for them alone, and an effect outside the study's
list activated anyway (a forged client message) is switched off on the server."""
from __future__ import annotations

import pytest

pytest.importorskip("slicer", reason="slicer-core (the `web` / `test` extra) is not installed")
pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (`pip install -e \".[web]\"` or "
                    "\".[test]\"; it pins slicer-core 5.11)")

from test_reader_scene import _empty_like, _phantom  # noqa: E402

from BreastTumorSegLib.web.trame_session import EFFECT_ICONS, TrameReaderSession, offered_effects  # noqa: E402


def _active(session) -> str | None:
    effect = session.scene.editor.active_effect
    return None if effect is None else type(effect).__name__


def test_offered_effects_follow_the_study():
    assert offered_effects(None) == tuple(EFFECT_ICONS)
    assert offered_effects(["threshold", "Paint", "Level tracing"]) == ("Paint", "Threshold")


def test_the_editor_offers_and_allows_only_the_studys_effects():
    images, _ = _phantom()
    session = TrameReaderSession(images, _empty_like(images["pre-contrast"]), "case 1",
                                 allowed_effects=("Paint", "Erase", "Level tracing"))
    try:
        assert session.allowed_effects == ("Paint", "Erase")
        html = session.editor_ui.html
        for shown in ("mdi-brush", "mdi-eraser", "mdi-cursor-default"):
            assert shown in html
        for hidden in ("mdi-auto-fix", "mdi-scatter-plot", "mdi-content-cut", "mdi-draw", "mdi-vector-intersection"):
            assert hidden not in html, hidden
        session.scene.set_effect("Paint")
        assert _active(session) == "SegmentationEffectPaint"
        session.scene.set_effect("Threshold")  # what a forged "Threshold" button message would do
        assert _active(session) in (None, "SegmentationEffectNoTool")
    finally:
        session.close()
    everything = TrameReaderSession(images, _empty_like(images["pre-contrast"]), "case 2")
    try:
        assert all(icon in everything.editor_ui.html for icon in EFFECT_ICONS.values())
        everything.scene.set_effect("Threshold")
        assert _active(everything) == "SegmentationEffectThreshold"
    finally:
        everything.close()

"""The reader's per-breast scores in the reader panel: probability of malignancy and/or BI-RADS.

Shown only when the study asks for scores (``study init --scores probability,birads``). Per
breast (left, right): a spin box 0–100 % ("–" until set) and/or a BI-RADS combo box. A side is
stored as soon as it has every kind the study asks for (:meth:`ReaderSession.set_scores`: timed,
written to ``state.json`` at once); a submitted reading shows its scores read-only. In the
assisted arm the model's per-breast probability is shown beside the boxes; in the unaided arm
nothing of the model is.

Qt comes in as an argument (PythonQt in Slicer, PySide6 in the tests), as for the reader panel.
"""
from __future__ import annotations

from ...core.errors import BreastTumorSegError
from .qtbind import prop

SIDES = ("left", "right")
BIRADS = ("", "1", "2", "3", "4A", "4B", "4C", "4", "5", "6", "0")
UNSET = -1  # the spin box's "–" (no probability given yet)


class ScorePanel:
    """The score boxes, built into *layout*; :meth:`show` binds them to the open reading."""

    def __init__(self, qt, layout, host):
        self.qt = qt
        self.host = host
        self.session = None
        self.view = None
        self._filling = False
        self.box = qt.QGroupBox("Scores per breast")
        grid = qt.QGridLayout(self.box)
        self.probability: dict[str, object] = {}
        self.birads: dict[str, object] = {}
        self.model_labels: dict[str, object] = {}
        for row, side in enumerate(SIDES):
            grid.addWidget(qt.QLabel(side.capitalize() + ":"), row, 0)
            spin = qt.QSpinBox()
            spin.setRange(UNSET, 100)
            spin.setSuffix(" %")
            spin.setSpecialValueText("–")
            spin.setToolTip("probability of malignancy (0-100 %)")
            spin.valueChanged.connect(lambda *a, s=side: self._changed(s))
            combo = qt.QComboBox()
            combo.addItems(list(BIRADS))
            combo.setToolTip("BI-RADS category")
            combo.currentIndexChanged.connect(lambda *a, s=side: self._changed(s))
            model = qt.QLabel("")
            grid.addWidget(spin, row, 1)
            grid.addWidget(combo, row, 2)
            grid.addWidget(model, row, 3)
            self.probability[side], self.birads[side], self.model_labels[side] = spin, combo, model
        layout.addWidget(self.box)
        self.show(None, None)

    def show(self, view, session) -> None:
        """Bind to the open reading *view* of *session* (None: nothing open)."""
        self.view, self.session = view, session
        kinds = tuple(getattr(view, "score_kinds", ()) or ())
        self.box.setVisible(bool(kinds))
        given = session.scores if (session is not None and view is not None and kinds) else {}
        model = getattr(view, "model_scores", None) or {}
        self._filling = True
        try:
            for side in SIDES:
                rec = given.get(side, {})
                self.probability[side].setVisible("probability" in kinds)
                self.birads[side].setVisible("birads" in kinds)
                self.probability[side].setValue(int(round(rec["probability"])) if "probability" in rec else UNSET)
                self.birads[side].setCurrentIndex(BIRADS.index(rec["birads"]) if "birads" in rec else 0)
                self.model_labels[side].setText(f"model: {100 * model[side]:.0f} %" if side in model else "")
        finally:
            self._filling = False
        self.set_locked(view is None or view.locked)

    def set_locked(self, locked: bool) -> None:
        for side in SIDES:
            self.probability[side].setEnabled(not locked)
            self.birads[side].setEnabled(not locked)

    def values(self, side: str) -> dict:
        """What the boxes of *side* hold (kinds not set yet are left out)."""
        kinds = tuple(getattr(self.view, "score_kinds", ()) or ())
        out = {}
        p = prop(self.probability[side], "value")
        if "probability" in kinds and p != UNSET:
            out["probability"] = float(p)
        b = prop(self.birads[side], "currentText")
        if "birads" in kinds and b:
            out["birads"] = b
        return out

    def _changed(self, side: str) -> None:
        if self._filling or self.session is None or self.view is None or self.view.locked:
            return
        rec = self.values(side)
        if len(rec) < len(self.view.score_kinds):  # stored once every kind of this side is given
            return
        try:
            self.session.set_scores({side: rec})
        except BreastTumorSegError as exc:
            self.host.show_error("Cannot store the score.", exc)

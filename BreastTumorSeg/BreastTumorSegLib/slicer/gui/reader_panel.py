"""The reader-mode panel: the reader picks her name and sees only "case 7 of 40", a timer,
Previous / Next / Pause / Submit.

Qt comes in as an argument (Slicer's PythonQt ``qt`` module in the application, PySide6 in the
tests), so this module imports no Qt itself. The panel holds no study logic: the
:class:`~...study.session.ReaderSession` decides order, timing, wash-out and locking, and
:class:`~..reader_logic.ReaderLogic` moves images and masks between the session and MRML.
Autosave writes in a worker thread (compression and fsync), the UI thread only exports the
segment and records the finished save, so the UI does not block. A refused step (a lock held
elsewhere, a failed save) is one message through :func:`.errors.reported`, as in the main panel.
"""
from __future__ import annotations

import threading
from typing import Callable

from ...core.errors import BreastTumorSegError
from ..reader_logic import observe_edits, stop_observing
from .errors import reported
from .qtbind import prop
from .score_panel import ScorePanel

TICK_MS = 1000


def format_time(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class ReaderPanelController:
    """Builds the reader panel's widgets into *parent* and drives one reader's session.

    ``open_session(reader)`` returns a :class:`ReaderSession`; ``host`` shows errors
    (``show_error(what, exc)``), asks for confirmation (``confirm(text) -> bool``) and opens the
    Segment Editor (``open_segment_editor(segmentation, source, segment_id, effects)``)."""

    def __init__(self, qt, parent, host, logic, open_session: Callable[[str], object], readers: list[str]):
        self.qt = qt
        self.host = host
        self.logic = logic
        self.open_session = open_session
        self.session = None
        self._observation = None
        self._save_thread: threading.Thread | None = None
        self._save_result: dict = {}
        layout = qt.QVBoxLayout(parent)
        row = qt.QHBoxLayout()
        self.readerComboBox = qt.QComboBox()
        self.readerComboBox.addItems(list(readers))
        self.startButton = qt.QPushButton("Start reading")
        row.addWidget(qt.QLabel("Reader:"))
        row.addWidget(self.readerComboBox)
        row.addWidget(self.startButton)
        layout.addLayout(row)
        self.caseLabel = qt.QLabel("no case open")
        self.timerLabel = qt.QLabel("00:00")
        self.statusLabel = qt.QLabel("")
        layout.addWidget(self.caseLabel)
        layout.addWidget(self.timerLabel)
        nav = qt.QHBoxLayout()
        self.previousButton = qt.QPushButton("Previous")
        self.nextButton = qt.QPushButton("Next")
        self.pauseButton = qt.QPushButton("Pause")
        self.pauseButton.setCheckable(True)
        self.submitButton = qt.QPushButton("Submit")
        for b in (self.previousButton, self.nextButton, self.pauseButton, self.submitButton):
            nav.addWidget(b)
        layout.addLayout(nav)
        self.scores = ScorePanel(qt, layout, host)  # per-breast scores, when the study asks for them
        layout.addWidget(self.statusLabel)
        self.startButton.clicked.connect(lambda *a: self.start())
        self.previousButton.clicked.connect(lambda *a: self.previous())
        self.nextButton.clicked.connect(lambda *a: self.next())
        self.pauseButton.toggled.connect(self.set_paused)
        self.submitButton.clicked.connect(lambda *a: self.submit())
        self.timer = qt.QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self.tick)
        self._update()

    # ----------------------------------------------------------------------------------- actions
    def start(self) -> None:
        reader = prop(self.readerComboBox, "currentText")
        with reported(self.host, "Cannot start reading.", catch=BreastTumorSegError, on_failure=self._forget_session):
            self.session = self.open_session(reader)
            self.readerComboBox.setEnabled(False)
            self.startButton.setEnabled(False)
            self._show(self.session.open())
            self.timer.start()
        self._update()

    def _forget_session(self) -> None:
        self.session = None

    def next(self) -> None:
        self._navigate(lambda mask: self.session.next(mask))

    def previous(self) -> None:
        self._navigate(lambda mask: self.session.previous(mask))

    def submit(self) -> None:
        view = self.session.current if self.session else None
        if view is None or view.locked:
            return
        if not self.host.confirm(f"Submit {view.title}? The mask cannot be changed afterwards."):
            return
        with reported(self.host, "Cannot submit.", catch=BreastTumorSegError) as attempt:
            self._wait_for_save()
            self.session.submit(self.logic.current_mask())
            self.statusLabel.setText(f"{view.title} submitted")
        if attempt.failed and not view.locked:  # e.g. the scores are missing: stay on the case
            return
        self.next()

    def set_paused(self, paused: bool) -> None:
        if self.session is None:
            return
        if paused:
            self.session.pause("explicit")
        else:
            self.session.resume()
        self._update()

    def application_state_changed(self, active: bool) -> None:
        """Slicer went to the background (or came back): the timer stops (resumes on activity)."""
        if self.session is not None and not active:
            self.session.pause("background")
        self._update()

    def user_activity(self) -> None:
        """Mouse or keyboard in the views: the timer runs."""
        if self.session is not None:
            self.session.activity()
            self._sync_pause_button()

    def segment_edited(self) -> None:
        if self.session is not None:
            self.session.activity(edit=True)
            self._sync_pause_button()

    def tick(self) -> None:
        """Every second: the timer label; a finished background save is recorded; a due autosave
        is started in a worker thread."""
        if self.session is None or self.session.current is None:
            return
        with reported(self.host, "This reading session was taken over.", catch=BreastTumorSegError,
                      on_failure=self.timer.stop) as attempt:
            self.session.keep_alive()
        if attempt.failed:
            return
        self._collect_save()
        if self._save_thread is None and self.session.autosave_due():
            with reported(self.host, "Autosave failed.", catch=BreastTumorSegError) as attempt:
                pending = self.session.begin_save(self.logic.current_mask())
            if attempt.failed:
                return
            result = self._save_result = {"pending": pending}

            def work():
                try:
                    result["path"] = pending.write()
                except BaseException as exc:  # reported on the UI thread
                    result["error"] = exc
            self._save_thread = threading.Thread(target=work, name="reader-autosave", daemon=True)
            self._save_thread.start()
        self._update()

    def close(self) -> None:
        """End the session (saving the open case) and release the reader's lock."""
        self.timer.stop()
        if self.session is None:
            return
        try:
            self._wait_for_save()
            mask = self.logic.current_mask() if self.logic.nodes is not None else None
            self.session.end(mask)
        finally:
            stop_observing(self._observation)
            self._observation = None
            self.logic.clear()
            self.scores.show(None, None)
            self.session = None
            self.readerComboBox.setEnabled(True)  # the reader can start again (e.g. in the next scene)
            self.startButton.setEnabled(True)
            self._update()

    # ------------------------------------------------------------------------------------ private
    def _navigate(self, step) -> None:
        if self.session is None:
            return
        with reported(self.host, "Cannot change case.", catch=BreastTumorSegError) as attempt:
            self._wait_for_save()
            mask = None if self.session.current is None or self.session.current.locked else self.logic.current_mask()
            view = step(mask)
        if attempt.failed:
            return
        if view is None:
            stop_observing(self._observation)
            self._observation = None
            self.logic.clear()
            self.scores.show(None, None)
            self.statusLabel.setText("All cases are done (or wait for their wash-out). Thank you.")
        else:
            self._show(view)
        self._update()

    def _show(self, view) -> None:
        stop_observing(self._observation)
        nodes = self.logic.load(view)
        self._observation = observe_edits(nodes.segmentation, self.segment_edited)
        self.pauseButton.setChecked(False)
        self.host.open_segment_editor(nodes.segmentation, nodes.source, "Tumor", tuple(view.allowed_effects))
        self.scores.show(view, self.session)
        self.statusLabel.setText("submitted (read-only)" if view.locked else "")

    def _collect_save(self) -> None:
        if self._save_thread is None or self._save_thread.is_alive():
            return
        self._save_thread.join()
        self._save_thread = None
        result = self._save_result
        if "error" in result:
            self.host.show_error("Autosave failed.", result["error"])
        elif "path" in result:
            with reported(self.host, "Autosave failed.", catch=BreastTumorSegError):
                path = self.session.finish_save(result["path"], result["pending"], "autosave")
                self.statusLabel.setText(f"autosaved (version {int(path.name[1:].split('.')[0])})")

    def _wait_for_save(self) -> None:
        if self._save_thread is not None:
            self._save_thread.join()
            self._collect_save()

    def _sync_pause_button(self) -> None:
        if self.pauseButton.isChecked() and not self.session.paused:
            self.pauseButton.blockSignals(True)
            self.pauseButton.setChecked(False)
            self.pauseButton.blockSignals(False)

    def _update(self) -> None:
        s = self.session
        view = s.current if s is not None else None
        self.caseLabel.setText(view.title if view is not None else "no case open")
        self.timerLabel.setText(format_time(s.active_seconds()) + (" (paused)" if s.paused else "")
                                if view is not None else "00:00")
        for b in (self.previousButton, self.nextButton, self.pauseButton):
            b.setEnabled(view is not None)
        self.submitButton.setEnabled(view is not None and not view.locked)
        self.scores.set_locked(view is None or view.locked)

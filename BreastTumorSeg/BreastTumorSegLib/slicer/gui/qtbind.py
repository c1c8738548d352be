"""The few places where Slicer's PythonQt and PySide6 spell the same Qt call differently.

The panel code is written once for both: Slicer runs it with PythonQt (the ``qt`` module), the
tests with PySide6 (``Testing/qt_harness.py``). Signals are connected with ``widget.signal.connect(slot)``,
which both bindings accept; Qt *properties* are attributes in PythonQt (``combo.count``) but getter
methods in PySide6 (``combo.count()``), so they are read with :func:`prop`.
"""
from __future__ import annotations

from contextlib import contextmanager


def prop(widget, name: str):
    """Read the Qt property *name* of *widget* (PythonQt: attribute; PySide6: getter method)."""
    value = getattr(widget, name)
    return value() if callable(value) else value


@contextmanager
def wait_cursor(qt):
    """The busy cursor while a block runs (what ``slicer.util.WaitCursor`` does, in either binding)."""
    qt.QApplication.setOverrideCursor(qt.QCursor(qt.Qt.WaitCursor))
    try:
        yield
    finally:
        qt.QApplication.restoreOverrideCursor()

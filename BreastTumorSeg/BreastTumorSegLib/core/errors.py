"""Errors the engine raises for bad input.

Every error a user can cause carries three things: *what* is wrong, *where* (the file or
phase), and *how to fix it*. The CLI prints ``str(error)`` as one line; the Slicer widget
shows it in a message box. Nothing deeper than this should reach a user.
"""
from __future__ import annotations


class BreastTumorSegError(Exception):
    """Base class for every error the engine raises on purpose."""


class InputError(BreastTumorSegError, ValueError):
    """The input data cannot be used as given.

    Parameters
    ----------
    problem:
        What is wrong, in one sentence.
    source:
        The file, folder or phase the problem was found in (optional).
    fix:
        What the user should do about it (optional).
    """

    def __init__(self, problem: str, source: object | None = None, fix: str | None = None):
        self.problem = problem
        self.source = None if source is None else str(source)
        self.fix = fix
        parts = []
        if self.source:
            parts.append(f"{self.source}: ")
        parts.append(problem.rstrip("."))
        if fix:
            parts.append(f". Fix: {fix.rstrip('.')}")
        super().__init__("".join(parts) + ".")


class ModelError(BreastTumorSegError):
    """A model cannot be found, verified or loaded."""


class OutputExistsError(BreastTumorSegError, FileExistsError):
    """Refusing to overwrite an existing result."""


class OutputWriteError(BreastTumorSegError, OSError):
    """An output could not be written (disk full, no permission, I/O error); nothing half-written stays."""


class Cancelled(BreastTumorSegError):
    """The user cancelled a running job."""

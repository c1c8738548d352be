"""SIGINT / SIGTERM for the command line: a clean exit with nothing or the complete outputs.

:func:`handle_signals` (used by ``cli.main``) turns both signals into :class:`Interrupted`,
a :class:`KeyboardInterrupt`, so every ``finally`` / ``with`` block cleans up as for Ctrl-C.
:func:`signals_deferred` holds both signals back while a group of outputs is moved into place
(:class:`..io.files.StagedOutputs`), so a signal never splits a commit: it is delivered right
after, and :func:`was_committed` then tells the caller the outputs are complete.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_state = {"received": None, "committed": False}


def received() -> int | None:
    """The first signal received since :func:`handle_signals` started, or None."""
    return _state["received"]


def note_commit() -> None:
    """Record that the command's outputs are complete in their final place."""
    _state["committed"] = True


def note_work() -> None:
    """Record that new work started, whose outputs are not committed yet."""
    _state["committed"] = False


def was_committed() -> bool:
    return _state["committed"]


def _raise(signum, _frame):
    if _state["received"] is not None:  # a second signal while cleaning up: finish the clean-up
        return
    _state["received"] = signum
    raise Interrupted(signum)


@contextmanager
def handle_signals(restore: bool = True):
    """Within the block SIGINT and SIGTERM raise :class:`Interrupted`. On leaving, the previous
    handlers come back (``restore``), or both signals are ignored from then on (a process that
    is about to exit with its outputs written)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.update(received=None, committed=False)
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if restore else signal.SIG_IGN)


@contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM back for the duration of the block (POSIX main thread; elsewhere a no-op)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNALS))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM)."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # pragma: no cover
        return f"signal {signum}"


__all__ = ["Interrupted", "handle_signals", "signals_deferred", "note_commit", "note_work", "was_committed",
           "received", "exit_code", "signal_name"]

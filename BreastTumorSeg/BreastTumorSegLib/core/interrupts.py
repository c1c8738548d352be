"""SIGINT / SIGTERM for the command line: a clean exit with nothing or the complete outputs.

:func:`handle_signals` (used by ``cli.main``) turns both signals into :class:`Interrupted`,
a :class:`KeyboardInterrupt`, so every ``finally`` / ``with`` block cleans up as for Ctrl-C.
:func:`signals_deferred` holds both signals back while a group of outputs is moved into place
(:class:`..io.atomic.StagedOutputs`), so a signal never splits a commit: it is delivered right
after, and :func:`was_committed` then tells the caller the outputs are complete.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_state = {"received": None, "committed": False, "deferred": 0, "pending": None}


def received() -> int | None:
    """The first signal received since :func:`handle_signals` started, or None."""
    return _state["received"]


def note_signal(signum: int) -> None:
    """Record a signal that code with its own handler (an event loop) received and acted on."""
    if _state["received"] is None:
        _state["received"] = signum


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


def _redeliver(signum: int) -> None:
    """Deliver *signum* to the main thread again, a moment from now, from a short daemon thread.

    Used when :class:`Interrupted` was raised where Python cannot propagate it (a weakref callback
    inside the import system, a ``__del__``): Python prints "Exception ignored" and carries on, so
    the command would run to the end as if never interrupted. Re-raising from the hook itself would
    be swallowed the same way; a signal delivered later reaches ordinary code."""
    import _thread
    import time

    def later():
        time.sleep(0.005)
        _thread.interrupt_main(signum)

    threading.Thread(target=later, name="redeliver-signal", daemon=True).start()


def _unraisable_hook(previous):
    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, Interrupted) and _state["received"] == exc.signum:
            _state["received"] = None  # not acted on yet: the redelivered signal raises again
            _redeliver(exc.signum)
            return
        previous(unraisable)

    return hook


@contextmanager
def handle_signals(restore: bool = True):
    """Within the block SIGINT and SIGTERM raise :class:`Interrupted`; one raised where Python
    swallows exceptions (a weakref callback, ``__del__``) is delivered again, not lost. On leaving, the previous
    handlers come back (``restore``), or both signals are ignored from then on (a process that
    is about to exit with its outputs written)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.update(received=None, committed=False)
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable_hook(previous_hook)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if restore else signal.SIG_IGN)
        sys.unraisablehook = previous_hook


def _defer(signum, _frame):
    if _state["pending"] is None:
        _state["pending"] = signum


@contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM back for the duration of the block, then act on the first one that came.

    Done in Python rather than with a signal mask: a mask holds back only the calling thread, and
    the worker threads of ITK or PyTorch would still take the signal. Outside the main thread
    (where handlers cannot be changed) this is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer = _state["deferred"] == 0
    previous = {}
    if outer:
        previous = {s: signal.getsignal(s) for s in SIGNALS}
        previous = {s: h for s, h in previous.items() if h is not None}  # None: set outside Python, left alone
        for s in previous:
            signal.signal(s, _defer)
    _state["deferred"] += 1
    try:
        yield
    finally:
        _state["deferred"] -= 1
        if outer:
            for s, handler in previous.items():
                signal.signal(s, handler)
            pending, _state["pending"] = _state["pending"], None
            if pending is not None:
                handler = previous.get(pending)
                if callable(handler):
                    handler(pending, None)
                elif handler == signal.SIG_DFL:
                    signal.raise_signal(pending)


@contextmanager
def joined_pool(max_workers: int, name: str = "worker"):
    """A thread pool whose threads have all ended when the block is left, however it is left.

    On an exception (SIGINT/SIGTERM included) queued tasks are cancelled and the running ones
    waited for; a signal that arrives while waiting does not cut the wait short (it is raised once
    every thread has ended). No worker thread may outlive the command: one still running while the
    interpreter shuts down can abort it (``Fatal Python error: PyThreadState_Get``)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
    try:
        yield pool
    finally:
        join_pool(pool)


def join_pool(pool) -> None:
    """Cancel *pool*'s queued tasks and wait for its threads, even through a signal (re-raised after)."""
    caught = None
    while True:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            break
        except KeyboardInterrupt as exc:  # the first signal arrived during the wait: finish waiting
            caught = caught or exc
    if caught is not None:
        raise caught


def join_worker_threads(timeout_s: float = 60.0) -> None:
    """Wait (at most *timeout_s* in all) for every non-daemon thread but this one: called by the
    command line before the interpreter shuts down, on every exit path."""
    import time

    deadline = time.monotonic() + timeout_s
    for t in threading.enumerate():
        if t is threading.current_thread() or t.daemon:
            continue
        while t.is_alive() and time.monotonic() < deadline:
            try:
                t.join(max(0.0, deadline - time.monotonic()))
            except KeyboardInterrupt:  # a late signal: the exit code is decided already
                continue


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM)."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # pragma: no cover
        return f"signal {signum}"


__all__ = ["Interrupted", "handle_signals", "joined_pool", "join_pool", "join_worker_threads", "signals_deferred", "note_commit", "note_work", "was_committed",
           "received", "exit_code", "signal_name"]

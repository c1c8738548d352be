"""The one way panel code reports a failure: ``with reported(host, what) as attempt:``.

Every action the user starts (Apply, Compare, a lesion row click, a click in click mode, a save in
the reader panel ...) runs in such a block. A failure becomes one message through the host's
``show_error(what, exc)`` (the Slicer host logs the traceback of an unexpected one and puts it in
the details) and the panel stays usable. The block cannot end its caller, so the caller looks at
``attempt.failed`` to skip what only follows success::

    with reported(self.host, "The comparison failed.", self.qt) as attempt:
        rows, table = self.logic.compare(...)
    if attempt.failed:
        return

Qt comes in as an argument (for the busy cursor), so this module imports no Qt.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

from .qtbind import wait_cursor


@dataclass
class Attempt:
    """What became of a :func:`reported` block."""

    failed: bool = False
    error: BaseException | None = None


@contextmanager
def reported(host, what: str, qt=None, catch: type[BaseException] | tuple = Exception,
             on_failure: Callable[[], object] | None = None) -> Iterator[Attempt]:
    """Run the block (under the busy cursor when *qt* is given); an exception of a type in *catch*
    ends the block: *on_failure* puts the panel back in a usable state, then the failure is shown
    as ``host.show_error(what, exc)``. Any other exception propagates."""
    attempt = Attempt()
    try:
        with wait_cursor(qt) if qt is not None else nullcontext():
            yield attempt
    except catch as exc:
        attempt.failed, attempt.error = True, exc
        if on_failure is not None:
            on_failure()
        host.show_error(what, exc)

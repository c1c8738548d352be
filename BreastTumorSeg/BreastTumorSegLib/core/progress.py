"""Progress reporting, stage timing and cancellation shared by every long-running job.

A :class:`Reporter` is passed down through the pipeline. Each stage is timed; the optional
callback gets ``(stage, fraction, message)`` with ``fraction`` in [0, 1] for the whole job;
``cancel`` is any object with ``is_set()`` (``threading.Event``) or a zero-argument callable
returning True when the user asked to stop. Cancellation is checked between stages and inside
long loops (tiles of the network, phases of the registration).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable

from .errors import Cancelled

ProgressCallback = Callable[[str, float, str], None]


class Reporter:
    def __init__(self, callback: ProgressCallback | None = None, cancel=None,
                 weights: dict[str, float] | None = None):
        self.callback = callback
        self._cancel = cancel
        self.timings: dict[str, float] = {}
        # Relative duration of each stage, for a progress bar that moves evenly.
        self.weights = weights or {}
        self._done_weight = 0.0
        self._stage: str | None = None
        self._stage_weight = 0.0

    # -------------------------------------------------------------- cancellation
    def cancelled(self) -> bool:
        c = self._cancel
        if c is None:
            return False
        if hasattr(c, "is_set"):
            return bool(c.is_set())
        return bool(c())

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled(f"cancelled by the user during {self._stage or 'start-up'}")

    # -------------------------------------------------------------- reporting
    def _total(self) -> float:
        return sum(self.weights.values()) or 1.0

    def update(self, fraction_of_stage: float, message: str = "") -> None:
        """Report progress inside the current stage and honour a pending cancel."""
        self.check()
        if self.callback and self._stage:
            frac = (self._done_weight + self._stage_weight * min(max(fraction_of_stage, 0.0), 1.0)) / self._total()
            self.callback(self._stage, min(frac, 1.0), message)

    @contextmanager
    def stage(self, name: str):
        """Time a stage and report its start and end."""
        self.check()
        prev_stage, self._stage = self._stage, name
        self._stage_weight = self.weights.get(name, 0.0)
        self.update(0.0, f"{name}...")
        t0 = time.perf_counter()
        try:
            yield self
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
            self._done_weight += self._stage_weight
            if self.callback and not self.cancelled():
                self.callback(name, min(self._done_weight / self._total(), 1.0), f"{name} done")
            self._stage = prev_stage



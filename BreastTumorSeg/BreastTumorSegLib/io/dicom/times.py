"""DICOM dates and times (DA, TM, DT) as numbers, and ordering acquisitions by time.

Times of day are seconds after midnight; absolute times are seconds since 0001-01-01 (proleptic
ordinal day x 86400 + time of day), so differences between them are exact. Nothing here needs
pydicom.
"""
from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from typing import Any

_TM_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


def parse_tm(text: Any) -> float | None:
    """Seconds since midnight from a DICOM TM value (``HHMMSS.FFFFFF``, shorter forms, or the
    old ``HH:MM:SS`` form); None when absent or malformed."""
    if text is None:
        return None
    s = str(text).strip().replace(":", "")
    m = _TM_RE.match(s)
    if not m:
        return None
    h, mi, se, frac = m.groups()
    secs = int(h) * 3600 + int(mi or 0) * 60 + int(se or 0)
    return secs + (float("0." + frac) if frac else 0.0)


def order_by_time(times: Sequence[float]) -> tuple[list[int], list[float]]:
    """Indices that sort *times* ascending (ties keep the given order), and each time relative
    to the earliest, in that order and in the unit given."""
    order = sorted(range(len(times)), key=lambda i: times[i])
    t0 = times[order[0]]
    return order, [times[i] - t0 for i in order]


def unwrap_midnight(seconds: Sequence[float]) -> list[float]:
    """Times of day (seconds after midnight, e.g. from :func:`parse_tm`) of one session that may
    run across midnight: when they span more than 12 hours, those before noon are taken to be on
    the next day."""
    seconds = list(seconds)
    if seconds and max(seconds) - min(seconds) > 12 * 3600:
        return [s + 86400.0 if s < 12 * 3600 else s for s in seconds]
    return seconds


def parse_da(text: Any) -> int | None:
    """Day number (proleptic ordinal) of a DICOM DA value ``YYYYMMDD``; None when absent."""
    if text is None:
        return None
    s = str(text).strip().replace(".", "")
    if len(s) != 8 or not s.isdigit():
        return None
    try:
        return _dt.date(int(s[:4]), int(s[4:6]), int(s[6:8])).toordinal()
    except ValueError:
        return None


def parse_dt(text: Any) -> float | None:
    """Absolute seconds from a DICOM DT value ``YYYYMMDDHHMMSS.FFFFFF`` (time-zone offset ignored)."""
    if text is None:
        return None
    s = re.split(r"[+-]", str(text).strip(), maxsplit=1)[0]
    if len(s) < 8:
        return None
    day = parse_da(s[:8])
    if day is None:
        return None
    tm = parse_tm(s[8:]) if len(s) > 8 else 0.0
    return None if tm is None else day * 86400.0 + tm


def day_seconds(day: int | None, seconds: float | None) -> float | None:
    """Absolute seconds of a time of day on a day number (day 0 when unknown); None without a time."""
    if seconds is None:
        return None
    return (day or 0) * 86400.0 + seconds

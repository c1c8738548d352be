"""Values a user types (command line, training config, Slicer panel): one rule for each.

* a probability threshold lies in (0, 1]: a voxel is inside when ``p >= threshold``, so 0 would
  mark every voxel and a value above 1 none (:func:`check_threshold`);
* a point is three finite millimetre coordinates written ``x,y,z`` (commas or spaces;
  :func:`parse_point`, :func:`parse_numbers`);
* a device is auto, cpu, cuda, cuda:N or mps (:data:`DEVICES` is what the panel offers;
  :func:`check_device_name`; availability is checked when the device is used);
* seeds are written ``7``, ``1000-1039`` or ``3,8,13`` (or any mix), none negative (:func:`parse_seeds`).

Every check raises :class:`.errors.InputError` naming the option and the fix; the command line
turns them into argparse types (``cli/_common.py``).
"""
from __future__ import annotations

import math
import re

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")  # the choices the Slicer panel offers; cuda:N also works
DEVICE_PATTERN = r"(auto|cpu|mps|cuda(:\d{1,2})?)"


def check_device_name(device: str | None, option: str = "--device") -> str:
    """The lower-cased device name; refuses one PyTorch would not understand."""
    text = (device or "auto").lower()
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise InputError(f"unknown device {device!r}", option, "use auto, cpu, cuda, cuda:N or mps")
    return text


def check_threshold(value: float | None, option: str = "--threshold") -> float | None:
    """A probability threshold in (0, 1] (None passes: the model card's threshold is used)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= 1:
        raise InputError(f"{value!r} is not a valid probability threshold", option,
                         "give a number above 0 and at most 1, e.g. 0.5")
    return float(value)


def parse_numbers(text: str, count: int | None = None, option: str | None = None,
                  example: str = "12.5,-40,8") -> tuple[float, ...]:
    """``"a,b,c"`` (commas and/or spaces) -> finite floats, exactly *count* of them if given."""
    try:
        values = tuple(float(p) for p in str(text).replace(",", " ").split())
    except ValueError:
        values = ()
    if not values or (count is not None and len(values) != count) or not all(math.isfinite(v) for v in values):
        what = f"{count} comma-separated numbers" if count else "comma-separated numbers"
        raise InputError(f"cannot read {what} from {text!r}", option, f"write finite numbers, e.g. {example}")
    return values


def parse_point(text: str, option: str | None = None) -> tuple[float, float, float]:
    """``"x,y,z"`` in millimetres -> three finite floats."""
    try:
        return parse_numbers(text, 3, option)
    except InputError:
        raise InputError(f"cannot read a point from {text!r}", option,
                         "write it as X,Y,Z in millimetres, e.g. 12.5,-40,8 (on the command line a negative "
                         "first value needs the = form, e.g. --seed-ras=-12,30,5)") from None


MAX_SEEDS = 100_000  # one call's seeds; far more than any benchmark or training set uses


def parse_seeds(spec, option: str = "--seed") -> list[int]:
    """``"1000-1039,1045"`` or a list of ints -> the seeds, in order; empty, negative or
    backward ranges (``5-1``) are refused."""
    if isinstance(spec, (list, tuple)):
        parts = [str(s) for s in spec]
    else:
        parts = [p.strip() for p in str(spec).split(",")]
    out: list[int] = []
    try:
        for part in parts:
            if not part:
                continue
            lo, dash, hi = part.partition("-")
            first = int(lo)
            last = int(hi) if dash else first
            if first < 0 or last < first:
                raise ValueError
            if len(out) + last - first + 1 > MAX_SEEDS:  # counted before the list is built
                raise InputError(f"more than {MAX_SEEDS:,} seeds in {spec!r}", option,
                                 "give a smaller range, or run several calls")
            out += range(first, last + 1)
    except InputError:
        raise
    except ValueError:
        out = []
    if not out:
        raise InputError(f"cannot read seeds from {spec!r}", option,
                         "write seeds such as 7, 1-5 or 3,8,13 (none negative)")
    return out

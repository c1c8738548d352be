"""The last call of a pure function, remembered (issue 25's CPU bound; docs/decisions/cpu-time-issue25.md, fourth pass).

Steps of the lesion stage ask some helpers the very same question: the band beside the breast region
(``band_around`` of the same region and width in the first FTV run and in the dark-before step), the band behind the
region's floor on the exam grid (the behind-floor step and the dark step's part 3), the body of the valid voxels.
:func:`remember_last` keeps, per function, the key of its last call (copies of its arrays) and its result; a call
whose key is equal to it -- arrays of the same dtype and shape with the same values, scalars and tuples equal and of
the same type -- gets a copy of that result instead of computing it again. A pure function of its key gives the same
result for an equal key, so the outputs are the same by construction; a differing key computes afresh and is
remembered instead. Results are copied out and keys copied in, so neither a caller changing an array it got or gave
nor a concurrent call can make a stale answer (the entry is one tuple, read and written whole).

:func:`forget_all` drops every remembered call (``segment_exam`` calls it when it returns, so that nothing stays
held between exams).
"""
from __future__ import annotations

import functools

import numpy as np

_ALL: list = []


def _copy(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def same_key(a, b) -> bool:
    """Exact equality of two keys: ndarrays by dtype, shape and every value; tuples and lists item by item; other
    values of the same type by ``==``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and bool(np.array_equal(a, b)))
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same_key(x, y) for x, y in zip(a, b))
    return bool(a == b)


def remember_last(key):
    """Decorator: the function's last call is remembered under ``key(*args, **kwargs)`` (a tuple of arrays and
    scalars holding everything the result depends on); an equal key later gets a copy of the remembered result."""
    def wrap(fn):
        box = [None]  # (key, result) of the last call

        @functools.wraps(fn)
        def call(*args, **kwargs):
            k = key(*args, **kwargs)
            entry = box[0]
            if entry is not None and same_key(entry[0], k):
                return _copy(entry[1])
            result = fn(*args, **kwargs)
            box[0] = (_copy(k), _copy(result))
            return result

        call.forget = lambda: box.__setitem__(0, None)
        call.held = lambda: box[0] is not None
        call.uncached = fn
        _ALL.append(call)
        return call
    return wrap


def forget_all() -> None:
    """Drop every remembered call."""
    for call in _ALL:
        call.forget()


def held() -> int:
    """How many functions hold a remembered call."""
    return sum(1 for call in _ALL if call.held())

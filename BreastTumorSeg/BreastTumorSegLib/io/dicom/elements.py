"""Values of DICOM header elements, read fast and without raising.

Headers are parsed by pydicom with large values deferred (see :mod:`.headers`); this module reads
one attribute's value from such a dataset. Plain numbers and ASCII strings are decoded straight
from the raw bytes pydicom kept, which is several times faster than pydicom's own conversion;
text in the dataset's character set and sequences go through pydicom. The ``as_*`` converters
turn a value into a number, numbers or upper-case strings, or None when it is absent or malformed.
Works with pydicom 3 and with pydicom 2.4 (the one Slicer ships).
"""
from __future__ import annotations

import inspect
import struct
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

_TAG_OF: dict[str, int] = {}
_NUMERIC_VR = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
# Text VRs whose values may use the dataset's character set: decoded by pydicom. The others are
# ASCII by definition and decoded here, which is several times faster than pydicom's conversion.
_ENCODED_VR = {"LO", "SH", "ST", "LT", "UT", "PN", "UC"}


def stored_element(ds: Dataset, tag: int):
    """The element of *tag* as stored (a ``RawDataElement`` until converted; a deferred value not
    read), or None. pydicom 3 gives it with ``get_item(tag, keep_deferred=True)``; pydicom 2.4 (the
    one Slicer ships) has no ``keep_deferred`` and reads deferred values in ``get_item``, so its
    element mapping is read directly there (the same objects)."""
    if _KEEP_DEFERRED:
        return ds.get_item(tag, keep_deferred=True)
    return ds._dict.get(BaseTag(tag))


_KEEP_DEFERRED = "keep_deferred" in inspect.signature(Dataset.get_item).parameters


def tag_of(keyword: str) -> int:
    """The tag of a DICOM keyword (cached)."""
    tag = _TAG_OF.get(keyword)
    if tag is None:
        tag = _TAG_OF[keyword] = tag_for_keyword(keyword)
    return tag


def _decode_raw(raw: bytes, vr: str, little_endian: bool) -> Any:
    code = _NUMERIC_VR.get(vr)
    if code is not None:
        n = len(raw) // struct.calcsize(code)
        vals = struct.unpack(("<" if little_endian else ">") + code * n, raw[: n * struct.calcsize(code)])
        return vals[0] if n == 1 else list(vals)
    text = raw.decode("ascii", errors="replace").rstrip("\x00 ").strip()
    if "\\" in text:
        return [v.strip() for v in text.split("\\")]
    return text


_SIMPLE_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO 2022 IR 6": "latin-1", "ISO_IR 100": "latin-1",
                    "ISO_IR 192": "utf-8"}


def _text_codec(ds: Dataset) -> str | None:
    """Python codec for the dataset's text when it is a single-byte Latin-1 or UTF-8 set, else None."""
    raw = stored_element(ds, 0x00080005)
    if raw is None:
        return "latin-1"
    value = raw.value if not isinstance(raw, RawDataElement) else (raw.value or b"").decode("ascii", "replace")
    if not isinstance(value, str):
        value = "\\".join(value) if value else ""
    return _SIMPLE_CHARSETS.get(value.strip("\x00 ").strip())


def value_of(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """The value of *keyword* in *ds*, or *default* when absent or empty (never raises).

    Plain numbers and ASCII strings are decoded straight from the raw bytes pydicom kept.
    """
    tag = tag_of(keyword)
    elem = stored_element(ds, tag)
    if elem is None:
        return default
    value: Any
    if isinstance(elem, RawDataElement) and elem.value is not None:
        vr = elem.VR or dictionary_VR(tag)
        codec = _text_codec(ds) if vr in _ENCODED_VR else None
        if vr == "SQ" or (vr in _ENCODED_VR and codec is None):
            value = ds[tag].value
        elif codec is not None:
            value = elem.value.decode(codec, errors="replace").rstrip("\x00 ").strip()
        else:
            value = _decode_raw(elem.value, vr, elem.is_little_endian)
    else:
        value = ds[tag].value
    if value is None or value == "" or (hasattr(value, "__len__") and not isinstance(value, (str, bytes))
                                        and len(value) == 0):
        return default
    return value


def as_float(value: Any) -> float | None:
    """The value as a float; None when absent or not a number."""
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def as_int(value: Any) -> int | None:
    """The value as an int; None when absent or not a whole number."""
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def as_floats(value: Any, n: int) -> tuple[float, ...] | None:
    """The value as *n* floats; None when absent, malformed or of another length."""
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == n else None


def as_strings(value: Any) -> tuple[str, ...]:
    """A multi-valued string as upper-case parts (``()`` when absent)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip().upper() for v in value.split("\\"))
    return tuple(str(v).strip().upper() for v in value)


def round_or_none(v: float | None, nd: int) -> float | None:
    """*v* rounded to *nd* decimals; None stays None."""
    return None if v is None else round(v, nd)

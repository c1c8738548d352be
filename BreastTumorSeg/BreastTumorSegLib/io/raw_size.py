"""Truncated MetaImage (.mha/.mhd) and NRRD (.nrrd/.nhdr) files, refused from their header.

ITK allocates the whole image its header describes, then reads what the file holds: a header
that claims 600 x 600 x 600 voxels over a data file of 100 bytes costs 432 MB per phase before
the reader gives up, and MetaIO prints its own complaint ("data not read completely") on
stderr. For uncompressed data the header says how many bytes must be there; this module
compares that with the file before ITK reads a voxel. Compressed or multi-file data are left to
ITK (their length is not known without inflating them).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..core.errors import InputError

_FIX = "re-export or re-copy the complete image (header and data file)"
_HEADER_LIMIT = 1 << 16  # a text header is a few hundred bytes; read no more than this

_META_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
               "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
               "MET_DOUBLE": 8}


def _nrrd_type_bytes(name: str) -> int:
    """Bytes of one NRRD ``type:`` value (its spellings: int16, short, signed short int, ...); 0 if unknown."""
    t = " ".join(name.lower().replace("_t", "").split())
    for keys, n in ((("long long", "longlong", "int64"), 8), (("double",), 8), (("char", "int8"), 1),
                    (("short", "int16"), 2), (("float",), 4), (("int",), 4)):
        if any(k in t for k in keys):
            return n
    return 0


def _fields(head: bytes, sep: str) -> tuple[dict[str, str], int]:
    """Header fields (lower-case keys) and where the header ends in *head*."""
    fields, pos = {}, 0
    for raw in head.splitlines(keepends=True):
        pos += len(raw)
        line = raw.decode("latin-1").strip()
        if sep == ":" and not line:  # NRRD: a blank line ends the header
            return fields, pos
        if sep not in line or line.startswith("#"):
            continue
        key, value = line.split(sep, 1)
        key = key.strip().lower()
        fields[key] = value.strip().lstrip("=").strip()
        if sep == "=" and key == "elementdatafile":  # MetaImage: the last header field
            return fields, pos
    return fields, pos


def _refuse_if_short(path: Path, data: Path, have: int, need: int) -> None:
    if have < need:
        where = "" if data == path else f" (data file {data.name})"
        raise InputError(f"file is truncated{where}: {max(have, 0):,} of {need:,} bytes the header describes", path,
                         _FIX)


def check_raw_size(path: Path) -> None:
    """Refuse an uncompressed MetaImage or NRRD image whose data are shorter than its header says."""
    name = path.name.lower()
    if not name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
        return
    with open(path, "rb") as fh:
        head = fh.read(_HEADER_LIMIT)
    if name.endswith((".mha", ".mhd")):
        f, end = _fields(head, "=")
        if f.get("compresseddata", "false").lower() == "true":
            return
        per = _META_BYTES.get(f.get("elementtype", "").upper(), 0) * int(f.get("elementnumberofchannels", "1") or 1)
        dims, data_name, skip = f.get("dimsize", ""), f.get("elementdatafile", ""), f.get("headersize", "0")
    else:
        f, end = _fields(head, ":")
        if f.get("encoding", "raw").lower() != "raw":
            return
        per = _nrrd_type_bytes(f.get("type", ""))
        dims, skip = f.get("sizes", ""), f.get("byte skip", "0")
        data_name = f.get("data file", f.get("datafile", "LOCAL" if name.endswith(".nrrd") else ""))
    try:
        sizes = [int(v) for v in dims.split()]
        skip_bytes = int(skip)
    except ValueError:
        return  # ITK's reader says what is wrong with such a header
    if not per or not sizes or min(sizes) < 1 or skip_bytes < 0 or re.search(r"[%\s]|^LIST$", data_name or " "):
        return  # unknown type, a file list or pattern, or HeaderSize -1: not checked here
    need = int(np.prod(sizes, dtype=object)) * per
    if data_name.upper() == "LOCAL":
        _refuse_if_short(path, path, os.path.getsize(path) - end - skip_bytes, need)
        return
    data = path.parent / data_name
    if data.is_file():
        _refuse_if_short(path, data, os.path.getsize(data) - skip_bytes, need)

"""Scanning a folder (or a list of files) for DICOM images: every file's frames, once each.

Files are recognised by the DICOM preamble (or, for files some older software writes without it,
by a DICOM data element at the very start); their headers are read (in a small thread pool for
large folders) into :class:`.headers.Frame` records. Files that are not DICOM, DICOM objects that
are not images, and instances met twice are counted, not failed on.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...core.errors import InputError
from ...core.interrupts import joined_pool
from .headers import Frame, read_frames


@dataclass
class ScanResult:
    """Every frame found in a folder, plus what was skipped and why."""

    folder: Path
    frames: list[Frame]
    n_files: int  # files looked at
    not_dicom: int  # files that are not DICOM (no DICM preamble, no data set at the start)
    non_image: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    duplicates: int = 0  # instances met more than once (same SOP instance UID and frame)


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for a DICOM file: the 128-byte preamble then ``DICM`` (DICOM Part 10), or a data set
    written without the preamble (some older or research software does), recognised by its first
    element: tag (0002,xxxx) or (0008,xxxx), little endian, with a VR or a short length."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if head[128:132] == b"DICM":
        return True
    return _starts_like_a_raw_dataset(head)


def _starts_like_a_raw_dataset(head: bytes) -> bool:
    if len(head) < 12:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > 0x0020:  # the first elements of a data set
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():  # explicit VR
        return True
    (length,) = struct.unpack("<I", head[4:8])  # implicit VR: a short value follows
    return length <= 1024


def list_files(folder: Path) -> list[str]:
    """Every regular file below *folder*, hidden files and folders excluded, in a stable order."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        # os.path.isfile: pipes, devices and link loops are never opened (reading them could hang)
        out.extend(p for p in (os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
                   if os.path.isfile(p))
    return out


def _read_one(path: str) -> tuple[str, list[Frame], str | None]:
    if not is_dicom_file(path):
        return path, [], "not-dicom"
    frames, reason = read_frames(path)
    return path, frames, reason


def _input_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[Path, list[str]]:
    """(folder named in messages, files to read) for a folder or an explicit list of files."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.exists():
            raise InputError("folder does not exist", folder, "check the path")
        if not folder.is_dir():
            raise InputError("DICOM input must be a folder or a list of files", folder,
                             "pass the folder holding the exam's DICOM files")
        return folder, list_files(folder)
    paths = [str(p) for p in source]
    if not paths:
        raise InputError("no DICOM files given", None, "pass the exam's folder or its DICOM files")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{len(missing)} of the given DICOM files do not exist", missing[0], "check the paths")
    common = Path(os.path.commonpath([os.path.abspath(p) for p in paths]))
    return (common.parent if common.is_file() else common), paths


def scan_folder(folder: str | os.PathLike | Sequence[str | os.PathLike], workers: int | None = None,
                progress: Callable[[float, str], None] | None = None) -> ScanResult:
    """Read the header of every DICOM file below *folder* (recursively), or of the files listed.

    A list of files is what a host application has when it knows the series already (e.g. Slicer's
    DICOM database). Files without the DICOM preamble are counted and ignored; duplicate instances
    (the same SOP instance UID and frame met twice, e.g. a series copied into two sub-folders) are
    kept once.
    """
    folder, paths = _input_files(folder)
    workers = workers or min(4, (os.cpu_count() or 1) + 1)
    frames: list[Frame] = []
    non_image: list[tuple[str, str]] = []
    not_dicom = 0
    seen: set[tuple[str, int]] = set()
    duplicates = 0

    def consume(results: Iterable[tuple[str, list[Frame], str | None]]) -> None:
        nonlocal not_dicom, duplicates
        for i, (path, fr, reason) in enumerate(results):
            if reason == "not-dicom":
                not_dicom += 1
            elif reason:
                non_image.append((path, reason))
            for f in fr:
                key = (f.sop_uid, f.frame_index)
                if f.sop_uid and key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                frames.append(f)
            if progress and (i % 64 == 0 or i == len(paths) - 1):
                progress((i + 1) / max(len(paths), 1), f"reading DICOM headers {i + 1}/{len(paths)}")

    if workers > 1 and len(paths) > 32:
        with joined_pool(workers, "dicom-headers") as pool:
            consume(pool.map(_read_one, paths))
    else:
        consume(map(_read_one, paths))
    return ScanResult(folder, frames, len(paths), not_dicom, non_image, duplicates)

"""Checks every entry point makes before it works, so that bad input fails fast and harmlessly.

* :func:`check_output_dir` -- the output location first: not a file, not under a file, not a
  system folder, writable, not an input folder or inside one, enough free space;
* :func:`check_case_id` -- a case id is one plain file-name component (it names the outputs);
* :func:`check_input_path` -- an input is a regular file (or folder) before anything reads it:
  pipes, devices, sockets and symbolic-link loops are refused by name (reading them could hang);
* :func:`check_not_inputs` -- no output may replace an input file, ``--overwrite`` or not;
* :func:`check_output_location` -- the one rule of every writing command: an output (folder or
  file) is never an input, never replaces an input file and never lies inside an input folder
  (every exam of a manifest or cases table, every file of a study folder);
* :func:`check_regular_file` -- a file that is read whole (a model's JSON or checkpoint): a
  regular file, inside its folder when one is given, below a size limit -- checked before reading;
* :func:`check_positive` / :func:`check_range` / :func:`check_coordinates` -- finite option
  values in their range;
* :func:`check_table_row` / :func:`check_paths_exist` -- a CSV table's row has no fields beyond
  its header, and every path it lists exists (checked for all rows before any work);
* :func:`created_dirs` / :func:`remove_empty_dirs` -- folders made for outputs vanish again when
  nothing was written into them.

Every refusal is an :class:`InputError` naming the file or option and the fix.
"""
from __future__ import annotations

import errno
import math
import os
import shutil
import stat
from pathlib import Path
from typing import Iterable, Sequence

from ..core.errors import InputError

SYSTEM_ROOTS = ("/proc", "/sys", "/dev")
MAX_CASE_ID_LENGTH = 120


def check_case_id(case_id: str | None, option: str = "--case-id") -> str | None:
    """*case_id* unchanged when it is usable as the first part of output file names."""
    if case_id is None:
        return None
    text = str(case_id)
    bad = None
    if not text.strip():
        bad = "is empty"
    elif text in (".", "..") or "/" in text or "\\" in text or os.path.isabs(text):
        bad = "is a path, not a name (it must not contain '/', '\\' or be '..')"
    elif any(ord(c) < 32 for c in text):
        bad = "contains control characters"
    elif text.startswith((".", "-")):
        bad = "starts with '.' or '-'"
    elif len(text) > MAX_CASE_ID_LENGTH:
        bad = f"is longer than {MAX_CASE_ID_LENGTH} characters"
    if bad:
        raise InputError(f"case id {text!r} {bad}", option,
                         "give a plain name such as case_0001 (letters, digits, '_', '-', '.')")
    return text


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_input_path(path: str | os.PathLike, what: str = "input", kind: str = "file") -> Path:
    """Refuse *path* unless it is a readable regular file (``kind="file"``), a folder
    (``"dir"``) or either (``"any"``). Only ``stat`` is called: nothing is opened."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{what} is a symbolic link that loops back on itself", p,
                             "replace the link with the file it should point to") from None
        if os.path.islink(p):
            raise InputError(f"{what} is a symbolic link to a missing file ({os.readlink(p)})", p,
                             "fix or replace the link") from None
        if exc.errno == errno.ENOENT:
            raise InputError(f"{what} does not exist", p, "check the path") from None
        raise InputError(f"{what} cannot be accessed ({exc.strerror})", p, "check the path and permissions") from None
    if stat.S_ISDIR(st.st_mode):
        if kind == "file":
            raise InputError(f"expected a {what} file but found a folder", p, "pass the file itself")
    elif not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} is {_kind(st.st_mode)}, not a regular file", p,
                         "pass the image file itself; pipes and devices are never read")
    elif kind == "dir":
        raise InputError(f"expected a folder for {what} but found a file", p, "pass the folder")
    if not os.access(p, os.R_OK):
        raise InputError(f"{what} cannot be read (permission denied)", p, "check the file permissions")
    return p


def _existing_ancestor(p: Path) -> Path:
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def check_name_lengths(output: str | os.PathLike, src: str) -> None:
    """Refuse an output name the file system cannot hold (ENAMETOOLONG once the outputs are written)."""
    real = Path(os.path.realpath(output))
    probe = _existing_ancestor(real)
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # Windows: no pathconf; NTFS and FAT take 255
        name_max, path_max = 255, 4096
    long = next((part for part in real.parts if len(os.fsencode(part)) > name_max), None)
    if long is not None:
        raise InputError(f"the output name {long[:40]}... is {len(os.fsencode(long))} bytes long, more than "
                         f"the {name_max} this file system allows", src, "choose a shorter name")
    if len(os.fsencode(str(real))) + 64 > path_max:  # room for the output file names
        raise InputError(f"the output path is {len(os.fsencode(str(real)))} bytes long; with the file names "
                         f"it would pass the {path_max} this file system allows", src, "choose a shorter path")


def check_output_dir(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), need_bytes: int = 0,
                     option: str = "--output") -> Path:
    """Refuse an output folder that cannot take the outputs; nothing is created."""
    out = Path(out)
    real = Path(os.path.realpath(out))
    src = f"{option} {out}"
    _refuse_dangling_link(out, src)
    for root in SYSTEM_ROOTS:
        if real == Path(root) or Path(root) in real.parents:
            raise InputError(f"the output folder lies in the system folder {root}", src, "choose a folder of your own")
    probe = _existing_ancestor(real)
    if not probe.is_dir():
        where = "is a file, not a folder" if probe == real else f"lies under {probe}, which is a file"
        raise InputError(f"the output folder {where}", src, "choose a folder (it is created if missing)")
    try:
        read_only = bool(os.statvfs(probe).f_flag & getattr(os, "ST_RDONLY", 1))
    except (OSError, AttributeError):
        read_only = False
    if read_only or not os.access(probe, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if read_only else "is not writable (permission denied)"
        raise InputError(f"the output folder {why} ({probe})", src, "choose a folder you can write to")
    check_output_location(out, inputs, option)
    if need_bytes > 0:
        free = shutil.disk_usage(probe).free
        if free < need_bytes:
            raise InputError(f"only {free / 1e6:.0f} MB free where the outputs need about {need_bytes / 1e6:.0f} MB",
                             src, "free some space or choose a folder on another disk")
    return out


def _refuse_dangling_link(out: Path, src: str) -> None:
    """Refuse an output path that is (or lies under) a symbolic link to a place that does not exist:
    creating the folder through it fails with "File exists" (the link is there, its target is not)."""
    for p in (out, *out.parents):
        if os.path.islink(p) and not os.path.exists(p):
            raise InputError(f"the output folder {'is' if p == out else f'lies under {p}, which is'} a symbolic link to "
                             f"{os.readlink(p)}, which does not exist", src,
                             "create the folder the link points to, remove the link, or choose another folder")


def check_output_location(output: str | os.PathLike, inputs: Iterable[str | os.PathLike],
                          option: str = "--output", what: str = "output folder") -> None:
    """Refuse an *output* (folder or file) that is one of *inputs*, or lies inside an input folder.

    Paths are compared after resolving symbolic links, so a link to an exam folder is that folder.
    Nothing is created or opened; inputs that do not exist are skipped (they are refused by name
    when they are checked as inputs)."""
    check_name_lengths(output, f"{option} {output}")
    real = Path(os.path.realpath(output))
    parents = set(real.parents)
    inputs = list(inputs)
    for item in inputs:  # the output is an input itself: said first, it is the worse mistake
        if real == Path(os.path.realpath(item)):
            raise InputError(f"the {what} is the input {item}", f"{option} {output}",
                             "choose an output outside every input; inputs are never written to")
    for item in inputs:
        inp = Path(os.path.realpath(item))
        if inp in parents and os.path.isdir(inp):
            raise InputError(f"the {what} lies inside the input folder {item}", f"{option} {output}",
                             "choose an output outside every exam and study folder; inputs are never written to")


def exam_locations(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every exam path and, for an exam given as files (phase files, a 4D file), the folder holding
    them: an output of a batch or study goes into none of these."""
    out = []
    for p in map(Path, paths):
        out.append(p)
        if not os.path.isdir(p):
            out.append(p.parent)
    return out


def check_regular_file(path: str | os.PathLike, what: str, max_bytes: int | None = None,
                       inside: str | os.PathLike | None = None) -> Path:
    """*path* as a regular, readable file of at most *max_bytes*, whose real path (links followed)
    lies inside the folder *inside*; only ``stat`` is called, so a pipe or device never blocks."""
    p = check_input_path(path, what, kind="file")
    if inside is not None:
        root = Path(os.path.realpath(inside))
        real = Path(os.path.realpath(p))
        if root != real and root not in real.parents:
            raise InputError(f"{what} is a symbolic link to {real}, outside {inside}", p,
                             "copy the file into the folder instead of linking to it")
    size = os.stat(p).st_size
    if max_bytes is not None and size > max_bytes:
        raise InputError(f"{what} is {size / 1e6:.0f} MB, more than the {max_bytes / 1e6:.0f} MB such a file can be",
                         p, "check that this is the right file")
    return p


def check_not_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse when an output file would replace an input file (``--overwrite`` included)."""
    input_files = set()
    for item in inputs:
        p = Path(item)
        files = p.iterdir() if p.is_dir() else [p]
        input_files.update(os.path.realpath(f) for f in files)
    for out in outputs:
        if os.path.realpath(out) in input_files:
            raise InputError("this output would replace an input file", out,
                             "choose another --output folder or --case-id; inputs are never overwritten")


def check_positive(value: float | None, option: str, upper: float | None = None, zero_ok: bool = False,
                   upper_open: bool = False) -> None:
    """Refuse NaN, infinity, values <= 0 (< 0 with *zero_ok*) and values above *upper*."""
    if value is None:
        return
    bad = not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok)
    if upper is not None:
        bad = bad or value > upper or (upper_open and value == upper)
    if bad:
        lo = "0 or more" if zero_ok else "above 0"
        hi = "" if upper is None else f" and {'below' if upper_open else 'at most'} {upper:g}"
        raise InputError(f"{value!r} is not a valid value", option, f"give a number {lo}{hi}")


def check_range(value: float | None, option: str, lo: float, hi: float, fix: str | None = None) -> None:
    """Refuse NaN, infinity and values outside [lo, hi]."""
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise InputError(f"{value!r} is not a valid value", option, fix or f"give a number from {lo:g} to {hi:g}")


MAX_COORDINATE_MM = 1e5  # 100 m: no scanner's patient coordinates come near


def check_coordinates(values, option: str, limit: float = MAX_COORDINATE_MM) -> None:
    """Refuse coordinates in mm that are not finite or lie beyond *limit* (e.g. 1e308)."""
    if values is None:
        return
    for v in values:
        if not math.isfinite(v) or abs(v) > limit:
            raise InputError(f"coordinate {v!r} mm is not a position in a patient", option,
                             f"give coordinates in mm within +-{limit:g} (as Slicer shows them)")


MAX_MISSING_LISTED = 5


def check_paths_exist(rows: list[tuple[str, list[str]]], table: Path, column: str = "path") -> None:
    """Refuse a table whose paths do not all exist, naming how many and the first few (one ``stat``
    per path: a manifest of 10,000 rows is checked in well under a second)."""
    missing = [(where, p) for where, paths in rows for p in paths if not os.path.lexists(p)]
    if missing:
        listed = "; ".join(f"{w}: {p}" for w, p in missing[:MAX_MISSING_LISTED])
        more = f" and {len(missing) - MAX_MISSING_LISTED} more" if len(missing) > MAX_MISSING_LISTED else ""
        raise InputError(f"{len(missing)} {column} entr{'y does' if len(missing) == 1 else 'ies do'} not exist "
                         f"({listed}{more})", table,
                         f"correct the {column} column (relative paths are relative to the table's folder; "
                         "join several files with ';')")


def check_table_row(raw: dict, header: list[str], where: str, table: Path) -> None:
    """csv.DictReader keeps a row's fields beyond the header under the key None: refuse them."""
    if None in raw:
        extra = [str(v) for v in raw[None]]
        raise InputError(f"{where} has {len(extra)} field(s) more than the header {','.join(header)} "
                         f"({', '.join(repr(v) for v in extra[:3])})", table,
                         "join several files with ';' and put double quotes around a value that contains a comma")



def open_table(path: str | os.PathLike):
    """A CSV table opened for :mod:`csv` (``newline=""``): UTF-8 with or without a byte-order mark
    (Excel's "CSV UTF-8", Notepad), or UTF-16 when it starts with its byte-order mark (Excel's
    "Unicode text", some hospital exports), which no UTF-8 reader could read."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    encoding = "utf-16" if head in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    return open(path, newline="", encoding=encoding)


def csv_separator_fix(header: Sequence[str], fix: str) -> str:
    """*fix*, led by the cause when a table's header shows another separator than commas (a
    spreadsheet saved with semicolons or tabs reads as one column)."""
    joined = ",".join(header)
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        if sep in joined:
            return f"the file is separated by {name}, not commas: save it as comma-separated CSV; {fix}"
    return fix


def created_dirs(folder: str | os.PathLike) -> list[Path]:
    """Create *folder* (and missing parents); return the folders that were created, deepest first."""
    folder = Path(folder)
    missing = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty_dirs(folders: Sequence[Path]) -> None:
    """Remove the folders of :func:`created_dirs` again as long as they are empty."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


def input_bytes(inputs: Iterable[str | os.PathLike]) -> int:
    """Total size of the regular files among *inputs* (folders: the files below them)."""
    total = 0
    for item in inputs:
        if os.path.isdir(item):
            for root, _dirs, files in os.walk(item):
                total += sum(os.path.getsize(f) for f in (os.path.join(root, n) for n in files) if os.path.isfile(f))
        elif os.path.isfile(item):
            total += os.path.getsize(item)
    return total

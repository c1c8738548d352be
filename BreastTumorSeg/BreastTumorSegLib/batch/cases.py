"""The exams of a batch: found in a folder or listed in a manifest CSV, and split into shards.

INPUT is one of

* a folder of case folders, each in MAMA-MIA naming (``<case>_0000.nii.gz`` ...) or holding one
  DICOM study (a MAMA-MIA root with ``images/<case>/`` works too);
* a manifest CSV with a header ``case,path[,times]``: ``path`` is an exam folder, a 4D file or the
  phase files joined by ``;`` (relative paths are relative to the CSV; a path may contain spaces,
  and one containing ``,`` is quoted as CSV quotes), ``times`` the acquisition times in minutes
  joined by ``;`` (optional). Every path is checked (one ``stat``) before the batch starts: a
  manifest with missing paths is refused as a whole, naming the first few.

A case's *key* (its name in the batch records) is the manifest's ``case``, the phase files'
case name, or the DICOM folder's name.
"""
from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InputError
from ..io.files import find_phase_files
from ..io.images import IMAGE_SUFFIXES
from ..io.safety import (check_case_id, check_input_path, check_paths_exist, check_table_row, csv_separator_fix,
                         open_table)


@dataclass(frozen=True)
class Case:
    """One exam of the batch: what `segment` would be given for it."""

    key: str
    inputs: tuple[str, ...]
    times: tuple[float, ...] | None = None
    case_id: str | None = None  # passed as --case-id (manifest rows); None: the loader's name
    problem: str | None = field(default=None, compare=False)  # found unusable while discovering

    def load_kwargs(self) -> dict:
        return {"inputs": list(self.inputs), "times_min": list(self.times) if self.times else None,
                "case_id": self.case_id}


def discover(source: str | Path) -> list[Case]:
    """Every case of *source* (folder or manifest CSV), sorted by key; keys are unique."""
    source = check_input_path(source, "batch input", kind="any")
    cases = _from_manifest(source) if source.is_file() else _from_folder(source)
    seen: dict[str, Case] = {}
    for case in cases:
        if case.key in seen:
            raise InputError(f"case {case.key!r} appears twice ({seen[case.key].inputs[0]} and {case.inputs[0]})",
                             source, "give every exam its own case name (a manifest CSV can set them)")
        seen[case.key] = case
    if not seen:
        raise InputError("no exams found", source,
                         "give a folder of case folders (<case>_0000.nii.gz ... or DICOM) or a manifest CSV "
                         "with columns case,path[,times]")
    return [seen[k] for k in sorted(seen)]


def _from_folder(root: Path) -> list[Case]:
    if (root / "images").is_dir():  # a MAMA-MIA root: images/<case>/<case>_0000.nii.gz
        root = root / "images"
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            key, _ = find_phase_files(sub)
        except InputError as exc:
            from ..io.dicom.reader import folder_has_dicom

            if folder_has_dicom(sub):
                key = sub.name
            elif any(p.name.lower().endswith(IMAGE_SUFFIXES) for p in sub.iterdir()):
                # an exam folder the loader refuses: recorded as this case's failure, the batch goes on
                out.append(Case(sub.name, (str(sub),), problem=" ".join(str(exc).split())))
                continue
            else:
                continue  # not an exam folder (notes, derived data)
        out.append(Case(key, (str(sub),)))
    return out


def _split(text: str) -> list[str]:
    """The ``;``-separated parts of a manifest cell (spaces inside a path are kept)."""
    return [t.strip() for t in text.split(";") if t.strip()]


def read_manifest_rows(csv_path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()):
    """(rows, header) of a manifest CSV that must have the *required* columns (refused otherwise);
    each row is (its line number in the file, the row), rows with every field blank (a spreadsheet's
    trailing ``,,``) left out."""
    columns = ",".join(required) + "".join(f"[,{c}]" for c in optional)
    rows = []
    try:
        with open_table(csv_path) as fh:
            reader = csv.DictReader(fh)
            for raw in reader:
                if any((v or "").strip() for v in raw.values() if isinstance(v, str)) or None in raw:
                    rows.append((reader.line_num, raw))
            header = [(h or "").strip() for h in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        hint = _not_an_image(csv_path) or ("; save it as CSV UTF-8 (this file is in another text encoding)"
                                           if isinstance(exc, UnicodeDecodeError) else "")
        raise InputError(f"cannot read the manifest ({exc})", csv_path, f"give a CSV file with columns {columns}" + hint)
    if not set(required) <= set(header):
        raise InputError(f"the manifest needs the columns {' and '.join(required)}, it has {', '.join(header) or 'none'}",
                         csv_path, csv_separator_fix(header, f"write a header line {columns}"))
    return rows, header


def _not_an_image(csv_path: Path) -> str:
    return ("; this is an image: give the folder of exam folders, or `breasttumorseg segment` for one exam"
            if csv_path.name.lower().endswith(IMAGE_SUFFIXES) else "")


def _from_manifest(csv_path: Path) -> list[Case]:
    rows, header = read_manifest_rows(csv_path, ("case", "path"), ("times",))
    out = []
    for line, raw in rows:
        check_table_row(raw, header, f"line {line}", csv_path)
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        where = f"{csv_path} line {line}"
        key = check_case_id(row["case"], f"{where}, column case")
        paths = [p if Path(p).is_absolute() else str(csv_path.parent / p) for p in _split(row["path"])]
        if not paths:
            raise InputError("the path is empty", where, "give the exam folder, a 4D file, or the phase files joined by ';'")
        times = None
        if row.get("times"):
            try:
                times = tuple(float(t) for t in _split(row["times"]))
            except ValueError:
                times = (math.nan,)
            if not all(math.isfinite(t) for t in times):
                raise InputError(f"times {row['times']!r} are not numbers", where,
                                 "give the times in minutes joined by ';', e.g. 0;1.5;3")
        out.append(Case(key, tuple(paths), times, case_id=key))
    check_paths_exist([(f"line {line}", c.inputs) for (line, _), c in zip(rows, out)], csv_path)
    return out


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (1 <= i <= n) -> (i, n)."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise InputError(f"{text!r} is not i/n with 1 <= i <= n", "--shard",
                         "write e.g. --shard 3/10 (the third of ten parts; Slurm: $SLURM_ARRAY_TASK_ID/$N)")
    return i, n


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Deterministic: a stable hash of the case key (not Python's salted hash), so every process
    and every re-run agrees, and adding cases never moves the others to another shard."""
    if shard is None:
        return True
    i, n = shard
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return h % n == i - 1

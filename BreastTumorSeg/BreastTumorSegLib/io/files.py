"""Loading DCE exams from NIfTI/NRRD (image files are read by :mod:`.images`; results are
written by :mod:`.atomic`).

Accepted inputs (see :func:`load_exam`):

* a folder in MAMA-MIA / nnU-Net raw naming: ``<case>_0000.nii.gz`` (pre-contrast),
  ``<case>_0001.nii.gz`` (first post-contrast), ... with an optional ``<case>.json`` holding
  ``{"acquisition_times_min": [0, 1.5, ...]}``;
* the phase files themselves, pre-contrast first;
* one 4D NIfTI/NRRD whose 4th axis is the phase (as dcm2niix writes a multi-phase series), with
  an optional ``<name>.json`` beside it holding ``acquisition_times_min`` (other keys, e.g. a
  BIDS sidecar's, are ignored);
* a DICOM folder (handled by :mod:`BreastTumorSegLib.io.dicom.reader` when present).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import SimpleITK as sitk

from ..core.errors import InputError
from ..core.exam import MAX_TIME_SPAN_MIN, DCEExam, assemble_exam, check_signal
from .images import IMAGE_SUFFIXES, read_image, strip_image_suffix
from .safety import check_input_path

_PHASE_RE = re.compile(r"^(?P<case>.+)_(?P<idx>\d{4})$")


def _split_4d(img: sitk.Image) -> list[sitk.Image]:
    size = img.GetSize()
    phases = []
    for t in range(size[3]):
        extractor = sitk.ExtractImageFilter()
        extractor.SetSize([size[0], size[1], size[2], 0])
        extractor.SetIndex([0, 0, 0, t])
        phases.append(extractor.Execute(img))
    return phases


def _read_times(json_path: Path, n: int) -> list[float] | None:
    if not os.path.lexists(json_path):
        return None
    check_input_path(json_path, "acquisition-time file")
    try:  # utf-8-sig: Windows editors (Notepad) start a UTF-8 file with a byte-order mark
        data = json.loads(json_path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"acquisition-time file is not UTF-8 text ({exc.reason} at byte {exc.start})", json_path,
                         'save it as UTF-8 text: {"acquisition_times_min": [0, 1.5, 3.0]}') from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot parse acquisition-time file ({exc})", json_path,
                         'write it as {"acquisition_times_min": [0, 1.5, 3.0]}') from None
    times = data.get("acquisition_times_min") if isinstance(data, dict) else None
    if times is None:
        raise InputError('no "acquisition_times_min" list in acquisition-time file', json_path,
                         'write it as {"acquisition_times_min": [0, 1.5, 3.0]}')
    if not isinstance(times, list) or len(times) != n or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
        raise InputError(f'"acquisition_times_min" must list {n} numbers (one per phase), got {times!r}',
                         json_path, f"give {n} times in minutes, e.g. [0, 1.5, 3.0], or pass --times")
    times = [float(t) for t in times]
    if not all(math.isfinite(t) for t in times) or max(times) - min(times) > MAX_TIME_SPAN_MIN:
        raise InputError(f'"acquisition_times_min" {times} are not the minutes of one DCE series (they must be '
                         'finite and span at most a day)', json_path,
                         "give each phase's time in minutes after the first phase, e.g. [0, 1.5, 3.0]")
    return times


def _sidecar_times(image: Path, n: int) -> list[float] | None:
    """Phase times of a 4D file from the JSON beside it (``dce.nii.gz`` -> ``dce.json``), when that
    JSON holds ``acquisition_times_min``; a converter's sidecar without it (dcm2niix's BIDS JSON has
    no per-volume times) is left alone and the times are assumed."""
    sidecar = image.with_name(strip_image_suffix(image.name) + ".json")
    if not os.path.lexists(sidecar):
        return None
    check_input_path(sidecar, "acquisition-time file")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # not ours to judge: some other program's sidecar
    if not isinstance(data, dict) or "acquisition_times_min" not in data:
        return None
    return _read_times(sidecar, n)


_NO_PHASE_FILES = "no phase files named <case>_0000, <case>_0001, ... found"


def find_phase_files(folder: Path) -> tuple[str, list[Path]]:
    """Phase files of a MAMA-MIA style folder, ordered by their 4-digit index."""
    groups: dict[str, dict[int, Path]] = {}
    images = [p for p in sorted(folder.iterdir()) if p.name.lower().endswith(IMAGE_SUFFIXES)]
    for p in images:
        m = _PHASE_RE.match(strip_image_suffix(p.name))
        if m:
            check_input_path(p, "phase file")  # a pipe, device, folder or link loop: refused by name
            other = groups.setdefault(m["case"], {}).setdefault(int(m["idx"]), p)
            if other != p:  # e.g. case_0001.nii.gz beside case_0001.nrrd: which one is the phase?
                raise InputError(f"two files for phase {strip_image_suffix(p.name)}: {other.name} and {p.name}",
                                 folder, "keep one file per phase in the exam folder (move the other copy out)")
    if not groups:
        if len(images) == 1:
            raise InputError(f"no phase files named <case>_0000, <case>_0001, ... found; the folder holds one "
                             f"image, {images[0].name}", folder,
                             "if it is a 4D exam (all phases in one file), pass that file instead of the folder")
        images_dir = Path(folder) / "images"
        if images_dir.is_dir():  # a MAMA-MIA root: images/<case>/<case>_0000.nii.gz ...
            first = next((d.name for d in sorted(images_dir.iterdir()) if d.is_dir()), "<case>")
            raise InputError("this is a dataset root (MAMA-MIA layout: images/<case>/...), not one exam", folder,
                             f"point at one exam, e.g. {images_dir / first}, or run `breasttumorseg batch {folder}` "
                             "for every exam")
        raise InputError(_NO_PHASE_FILES, folder,
                         "name the pre-contrast <case>_0000.nii.gz and post-contrast phases _0001, _0002, ...; "
                         "or pass the phase files in order")
    if len(groups) > 1:
        raise InputError(f"the folder holds phase files of several cases ({', '.join(sorted(groups))})", folder,
                         "put one exam per folder, or pass the phase files explicitly")
    case, by_idx = next(iter(groups.items()))
    idx = sorted(by_idx)
    if idx[0] != 0:
        raise InputError(f"pre-contrast phase {case}_0000 is missing", folder,
                         "add the pre-contrast image as <case>_0000")
    missing = sorted(set(range(idx[-1] + 1)) - set(idx))
    if missing:
        raise InputError(f"phase(s) {', '.join(f'{case}_{m:04d}' for m in missing)} missing between "
                         f"{case}_0000 and {case}_{idx[-1]:04d}", folder, "add the missing phase files")
    return case, [by_idx[i] for i in idx]


def _kinds(inputs) -> str:
    items = inputs if isinstance(inputs, list) else [inputs]
    return ", ".join(sorted({type(p).__name__ for p in items if not isinstance(p, (str, os.PathLike))}))


def load_exam(inputs: Sequence[str | os.PathLike] | str | os.PathLike,
              times_min: Sequence[float] | None = None, case_id: str | None = None,
              series: Sequence[str | int] | None = None) -> DCEExam:
    """Load a DCE exam from a folder, a list of phase files, one 4D file, or a DICOM folder.

    ``series`` (DICOM only): series numbers or UIDs to use as the phases, overriding the
    automatic choice (see ``breasttumorseg dicom-list``).

    Phases on a grid other than the pre-contrast one are resampled onto it (linear); this is
    recorded in ``exam.metadata["resampled_phases"]``.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs) if isinstance(inputs, Iterable) and not isinstance(inputs, bytes) else inputs
    if not isinstance(inputs, list) or not all(isinstance(p, (str, os.PathLike)) for p in inputs):
        raise InputError(f"load_exam takes a path or a list of paths, got {_kinds(inputs)}", None,
                         "pass an exam folder, a DICOM folder, a 4D file or the phase files in order (str or Path)")
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input given", None, "pass an exam folder or the phase files in order")
    for p in paths:
        check_input_path(p, "input", kind="any")

    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        try:
            case, files = find_phase_files(folder)
            if series:
                raise InputError("--series selects DICOM series, but this folder holds NIfTI/NRRD phase files",
                                 "--series", "drop --series; the phase files are used in their _0000, _0001 order")
        except InputError as exc:
            if exc.source == "--series":
                raise
            from .dicom import reader as dicom  # DICOM folders have no phase naming
            if dicom.folder_has_dicom(folder):
                return check_signal(dicom.load_dicom_exam(folder, times_min=times_min, case_id=case_id,
                                                          series=series))
            if exc.problem == _NO_PHASE_FILES:  # neither kind found (not a dataset root, not one 4D file)
                n = len(dicom.list_files(folder))
                images = [p.name for p in sorted(folder.iterdir()) if p.name.lower().endswith(IMAGE_SUFFIXES)]
                found = ("the folder is empty" if n == 0 else
                         f"{len(images)} image file(s) with other names, e.g. {images[0]}" if images else
                         f"{n} file(s) below the folder, none of them a DICOM file: damaged, or not images")
                raise InputError(f"no DICOM files and no phase files named <case>_0000, <case>_0001, ... "
                                 f"found ({found})", folder,
                                 "point to the folder that holds the exam's MR DICOM files (`breasttumorseg "
                                 "dicom-list FOLDER` shows what a folder holds), or name NIfTI phases "
                                 "<case>_0000.nii.gz, <case>_0001.nii.gz, ...") from None
            raise
        times = list(times_min) if times_min is not None else _read_times(folder / f"{case}.json", len(files))
        return check_signal(_load_phase_list(files, times, case_id or case))

    if series:
        raise InputError("--series selects DICOM series and needs a DICOM folder as input", "--series",
                         "pass the DICOM folder, or drop --series for image files")
    if len(paths) == 1:
        img = read_image(paths[0], "exam")
        if img.GetDimension() == 4:
            phases = _split_4d(img)
            name = case_id or strip_image_suffix(paths[0].name)
            if times_min is None:
                times_min = _sidecar_times(paths[0], len(phases))
            return check_signal(assemble_exam(phases, times_min, name,
                                               [f"{paths[0].name}[{i}]" for i in range(len(phases))]))
        if img.GetDimension() < 3:
            raise InputError(f"the exam file is a {img.GetDimension()}D image (one slice), not a DCE exam", paths[0],
                             "give the 3D volume of every phase (a folder, the phase files, or one 4D file)")
        raise InputError(
            "a single 3D file is only one phase; a DCE exam needs a pre-contrast and at least one "
            "post-contrast phase", paths[0],
            "pass the exam folder, every phase file in order, or a 4D file")

    for p in paths:
        if p.is_dir():
            raise InputError("expected phase files but found a folder among them", p,
                             "pass either one exam folder or the phase files, not both")
    seen: dict[str, Path] = {}
    for p in paths:
        first = seen.setdefault(os.path.realpath(p), p)
        if first is not p:  # the pre-contrast given again as a post-contrast phase reads as no enhancement
            raise InputError(f"the same file is given twice as a phase ({first} and {p})", p,
                             "give each phase's file once, the pre-contrast first, in acquisition order")
    name = case_id
    if name is None:
        m = _PHASE_RE.match(strip_image_suffix(paths[0].name))
        name = m["case"] if m else strip_image_suffix(paths[0].name)
    return check_signal(_load_phase_list(paths, list(times_min) if times_min is not None else None, name))


def _read_phases(files: list[Path]) -> list[sitk.Image]:
    """Read the phase files two at a time (decompression releases the GIL); the first error wins."""
    from ..core.interrupts import joined_pool

    with joined_pool(min(2, os.cpu_count() or 1), "phase-reader") as pool:  # joined on every exit path
        futures = [pool.submit(read_image, f, f"phase {i}") for i, f in enumerate(files)]
        return [fut.result() for fut in futures]


def _load_phase_list(files: list[Path], times: list[float] | None, case_id: str) -> DCEExam:
    phases = []
    for i, (f, img) in enumerate(zip(files, _read_phases(files))):
        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"phase {i} is not a scalar 3D volume (dimension {img.GetDimension()}, "
                f"{img.GetNumberOfComponentsPerPixel()} component(s))", f,
                "give one 3D volume per phase, or a single 4D file holding all phases")
        phases.append(img)
    return assemble_exam(phases, times, case_id, [str(f) for f in files])

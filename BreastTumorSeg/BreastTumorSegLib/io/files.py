"""Loading DCE exams from NIfTI/NRRD and writing results atomically.

Accepted inputs (see :func:`load_exam`):

* a folder in MAMA-MIA / nnU-Net raw naming: ``<case>_0000.nii.gz`` (pre-contrast),
  ``<case>_0001.nii.gz`` (first post-contrast), ... with an optional ``<case>.json`` holding
  ``{"acquisition_times_min": [0, 1.5, ...]}``;
* the phase files themselves, pre-contrast first;
* one 4D NIfTI/NRRD whose 4th axis is the phase;
* a DICOM folder (handled by :mod:`BreastTumorSegLib.io.dicom.reader` when present).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError, OutputExistsError
from ..core.exam import DCEExam, assemble_exam

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_PHASE_RE = re.compile(r"^(?P<case>.+)_(?P<idx>\d{4})$")
# Refuse volumes larger than this many voxels per phase (a 1024x1024x512 volume is 5.4e8).
MAX_VOXELS_PER_PHASE = 600_000_000


def strip_image_suffix(name: str) -> str:
    for suf in IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike, what: str = "image") -> sitk.Image:
    """Read one image file; any failure becomes an :class:`InputError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file does not exist", path, "check the path")
    if path.is_dir():
        raise InputError(f"expected a {what} file but found a folder", path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        n_vox = int(np.prod(reader.GetSize()))
        if n_vox > MAX_VOXELS_PER_PHASE:
            raise InputError(
                f"{what} has {n_vox:,} voxels ({reader.GetSize()}), more than the supported "
                f"{MAX_VOXELS_PER_PHASE:,}", path, "crop or down-sample the volume before segmenting")
        _check_complete(path, reader)
        img = reader.Execute()
    except InputError:
        raise
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in reversed(first) if ln.strip()), "unknown reader error")
        raise InputError(f"cannot read {what} ({detail.strip()[:160]})", path,
                         "make sure the file is a complete NIfTI/NRRD/MHA image; re-export it if it was truncated") from None
    return img


_BYTES = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2,
          sitk.sitkUInt32: 4, sitk.sitkInt32: 4, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8,
          sitk.sitkUInt64: 8, sitk.sitkInt64: 8}


def _check_complete(path: Path, reader: sitk.ImageFileReader) -> None:
    """Refuse truncated NIfTI files, which ITK would otherwise read with zero-filled voxels.

    The header says how many bytes the file must hold. For ``.nii`` that is the file size; for
    ``.nii.gz`` the gzip trailer stores the uncompressed size (mod 2**32), read in O(1) from
    the last four bytes — a truncated stream has no trailer, so those bytes are compressed data
    and match the expected size with a chance of 1 in 2**32.
    """
    import struct

    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    gz = name.endswith(".gz")
    try:
        with (gzip_open(path) if gz else open(path, "rb")) as fh:
            header = fh.read(348)
    except (OSError, EOFError) as exc:
        raise InputError(f"file is truncated or not gzip-compressed ({exc})", path,
                         "re-export or re-copy the complete file") from None
    if len(header) < 348:
        raise InputError("file is truncated (incomplete NIfTI header)", path, "re-export or re-copy the complete file")
    little = struct.unpack("<i", header[:4])[0] == 348
    vox_offset = struct.unpack(("<" if little else ">") + "f", header[108:112])[0]
    per_voxel = _BYTES.get(reader.GetPixelID(), 0) * reader.GetNumberOfComponents()
    if not per_voxel:
        return
    need = int(vox_offset) + int(np.prod(reader.GetSize())) * per_voxel
    if gz:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            stored = struct.unpack("<I", fh.read(4))[0]
        if stored != need % 2 ** 32 and _gzip_length(path) < need:  # slow path only when in doubt
            raise InputError("file is truncated (the compressed stream does not hold the whole image)", path,
                             "re-export or re-copy the complete file")
    elif path.stat().st_size < need:
        raise InputError(f"file is truncated ({path.stat().st_size:,} of {need:,} bytes)", path,
                         "re-export or re-copy the complete file")


def _gzip_length(path: Path) -> int:
    """Uncompressed length of a gzip file; -1 when the stream is cut short or corrupt."""
    import zlib

    d = zlib.decompressobj(wbits=31)
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            try:
                n += len(d.decompress(chunk))
            except zlib.error:
                return -1
    return n if d.eof else -1


def gzip_open(path):
    import gzip

    return gzip.open(path, "rb")


def _split_4d(img: sitk.Image, path: Path) -> list[sitk.Image]:
    size = img.GetSize()
    phases = []
    for t in range(size[3]):
        extractor = sitk.ExtractImageFilter()
        extractor.SetSize([size[0], size[1], size[2], 0])
        extractor.SetIndex([0, 0, 0, t])
        phases.append(extractor.Execute(img))
    return phases


def _read_times(json_path: Path, n: int) -> list[float] | None:
    if not json_path.exists():
        return None
    try:
        data = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot parse acquisition-time file ({exc})", json_path,
                         'write it as {"acquisition_times_min": [0, 1.5, 3.0]}') from None
    times = data.get("acquisition_times_min") if isinstance(data, dict) else None
    if times is None:
        raise InputError('no "acquisition_times_min" list in acquisition-time file', json_path,
                         'write it as {"acquisition_times_min": [0, 1.5, 3.0]}')
    if not isinstance(times, list) or len(times) != n or not all(isinstance(t, (int, float)) for t in times):
        raise InputError(f'"acquisition_times_min" must list {n} numbers (one per phase), got {times!r}',
                         json_path)
    return [float(t) for t in times]


def find_phase_files(folder: Path) -> tuple[str, list[Path]]:
    """Phase files of a MAMA-MIA style folder, ordered by their 4-digit index."""
    groups: dict[str, dict[int, Path]] = {}
    for p in sorted(folder.iterdir()):
        if not is_image_file(p):
            continue
        m = _PHASE_RE.match(strip_image_suffix(p.name))
        if m:
            groups.setdefault(m["case"], {})[int(m["idx"])] = p
    if not groups:
        raise InputError("no phase files named <case>_0000, <case>_0001, ... found", folder,
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
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input given", None, "pass an exam folder or the phase files in order")
    for p in paths:
        if not p.exists():
            raise InputError("input does not exist", p, "check the path")

    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        try:
            case, files = find_phase_files(folder)
        except InputError:
            from .dicom import reader as dicom  # DICOM folders have no phase naming
            if dicom.folder_has_dicom(folder):
                return dicom.load_dicom_exam(folder, times_min=times_min, case_id=case_id, series=series)
            raise
        times = list(times_min) if times_min is not None else _read_times(folder / f"{case}.json", len(files))
        return _load_phase_list(files, times, case_id or case)

    if len(paths) == 1:
        img = read_image(paths[0], "exam")
        if img.GetDimension() == 4:
            phases = _split_4d(img, paths[0])
            name = case_id or strip_image_suffix(paths[0].name)
            return assemble_exam(phases, times_min, name, [f"{paths[0].name}[{i}]" for i in range(len(phases))])
        raise InputError(
            "a single 3D file is only one phase; a DCE exam needs a pre-contrast and at least one "
            "post-contrast phase", paths[0],
            "pass the exam folder, every phase file in order, or a 4D file")

    for p in paths:
        if p.is_dir():
            raise InputError("expected phase files but found a folder among them", p,
                             "pass either one exam folder or the phase files, not both")
    name = case_id
    if name is None:
        m = _PHASE_RE.match(strip_image_suffix(paths[0].name))
        name = m["case"] if m else strip_image_suffix(paths[0].name)
    return _load_phase_list(paths, list(times_min) if times_min is not None else None, name)


def _load_phase_list(files: list[Path], times: list[float] | None, case_id: str) -> DCEExam:
    phases = []
    for i, f in enumerate(files):
        img = read_image(f, f"phase {i}")
        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"phase {i} is not a scalar 3D volume (dimension {img.GetDimension()}, "
                f"{img.GetNumberOfComponentsPerPixel()} component(s))", f,
                "give one 3D volume per phase, or a single 4D file holding all phases")
        phases.append(img)
    return assemble_exam(phases, times, case_id, [str(f) for f in files])


# --------------------------------------------------------------------------------- writing
def _default_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


@contextmanager
def atomic_target(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to *path*; on success it replaces *path* atomically.

    The temporary file lives in the destination folder (so the rename is atomic) and gets the
    permissions an ordinary new file would get (``mkstemp`` alone makes it private). On any
    error it is removed and *path* is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = next((s for s in IMAGE_SUFFIXES + (".seg.nrrd",) if path.name.lower().endswith(s)), path.suffix)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_image_atomic(img: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write *img* to *path* through a temporary file in the same folder and an atomic rename."""
    with atomic_target(path) as tmp:
        sitk.WriteImage(img, str(tmp), compress)
    return Path(path)


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    return write_bytes_atomic(text.encode("utf-8"), path)


def write_json_atomic(data, path: str | os.PathLike) -> Path:
    return write_text_atomic(json.dumps(data, indent=2, default=_json_default) + "\n", path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_no_overwrite(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse to replace existing results unless *overwrite* is set."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{existing[0]}: result exists already ({len(existing)} file(s)). "
            "Fix: choose another --output folder, or pass --overwrite to replace it.")


class StagedOutputs:
    """Write several result files so that either all of them appear or none does.

    Files are first written into a hidden staging folder next to the destination, then moved
    into place one by one with atomic renames once every file has been written.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self._planned: dict[str, Path] = {}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.out_dir))

    def path(self, name: str) -> Path:
        """Where to write *name* now; it appears under ``out_dir`` on :meth:`commit`."""
        self._planned[name] = self.out_dir / name
        return self._stage / name

    def commit(self) -> list[Path]:
        check_no_overwrite(self._planned.values(), self.overwrite)
        done = []
        for name, dest in self._planned.items():
            os.replace(self._stage / name, dest)
            done.append(dest)
        self.abort()
        return done

    def abort(self) -> None:
        import shutil

        shutil.rmtree(self._stage, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False

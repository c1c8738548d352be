"""Training data: dataset folders, case-level folds, and a cache of preprocessed arrays.

Layouts read by :func:`scan_dataset`:

* **MAMA-MIA**: ``<root>/images/<case>/<case>_0000.nii.gz`` (pre-contrast), ``_0001`` ...
  (post-contrast) and ``<root>/segmentations/expert/<case>.nii.gz`` (tumor mask). Optional:
  ``<root>/segmentations/breast/<case>.nii.gz`` (whole-breast mask) and per-case
  ``images/<case>/<case>.json`` with ``{"acquisition_times_min": [...]}``.
* **nnU-Net raw**: ``<root>/imagesTr/<case>_0000.nii.gz`` ... and ``<root>/labelsTr/<case>.nii.gz``.

Acquisition times may also come from a table (``times_table``): a CSV with a case column
(``case_id``, ``patient_id`` or ``case``) and either one column ``acquisition_times_min``
(numbers separated by spaces or semicolons) or one column per phase ``t0, t1, ...``; or a
JSON object ``{case: [times]}``. Without times the phases are taken as evenly spaced.

Every case is preprocessed once, exactly as the engine does it at inference time (motion
correction, classical breast mask, p95 harmonization, LPS grid at the model spacing, crop to
the breasts), and stored as a compressed ``.npz`` under the cache folder, keyed by the source
files' names, sizes and modification times and by the preprocessing settings. Epochs read
the arrays, never the NIfTI files.

A prepared case is a dict of arrays:

``phases``   (2T, z, y, x) float16 — ``[P_1, P_1 - P_0, P_2, P_2 - P_0, ...]`` (``kind="phases"``)
``times``    (T + 1,) float32 — minutes after the pre-contrast phase (first is 0)
``label``    (z, y, x) uint8 — tumor
``breast``   (z, y, x) uint8 — classical breast mask (what the engine gates with)
``pre_coarse``, ``breast_coarse`` — pre-contrast and whole-breast truth on an uncropped
coarse grid, for the whole-breast model (only when a breast truth exists)
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.exam import DCEExam
from ..core.values import parse_seeds
from ..io.atomic import atomic_folder

PREPROCESS_VERSION = 1
_PHASE_RE = re.compile(r"^(?P<case>.+)_(?P<k>\d{4})\.nii(\.gz)?$")


# ------------------------------------------------------------------------------ records
@dataclass
class CaseRecord:
    """Where one training case lives on disk."""

    case_id: str
    phases: list[Path]
    label: Path | None = None
    breast: Path | None = None
    times_min: list[float] | None = None
    source: str = ""

    def fingerprint(self) -> str:
        """Short hash of the files' paths, sizes and modification times (cache key)."""
        h = hashlib.sha256()
        for p in [*self.phases, self.label, self.breast]:
            if p is None:
                continue
            st = Path(p).stat()
            h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
        h.update(json.dumps(self.times_min).encode())
        return h.hexdigest()[:16]


def _phase_files(folder: Path) -> dict[str, list[Path]]:
    """case -> phase files ``<case>_0000`` ... in a folder, checked for gaps."""
    found: dict[str, dict[int, Path]] = {}
    for f in sorted(folder.iterdir()):
        m = _PHASE_RE.match(f.name)
        if m:
            found.setdefault(m["case"], {})[int(m["k"])] = f
    out = {}
    for case, by_k in found.items():
        ks = sorted(by_k)
        if ks != list(range(len(ks))):
            raise InputError(f"case {case} has phase files {ks}, not 0, 1, 2, ... without gaps", folder,
                             "name the phases <case>_0000 (pre-contrast), <case>_0001, ... in acquisition order")
        if len(ks) < 2:
            raise InputError(f"case {case} has only a pre-contrast image", folder,
                             "each case needs the pre-contrast and at least one post-contrast phase")
        out[case] = [by_k[k] for k in ks]
    return out


def _first_existing(*paths: Path) -> Path | None:
    for p in paths:
        if p.exists():
            return p
    return None


def _nifti(folder: Path, case: str) -> Path | None:
    return _first_existing(folder / f"{case}.nii.gz", folder / f"{case}.nii")


def read_times_table(path: str | os.PathLike) -> dict[str, list[float]]:
    """Acquisition times per case from a CSV or JSON table (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise InputError("times table not found", path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is read, as elsewhere
            return {str(k): [float(t) for t in v] for k, v in data.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"cannot read the times table ({exc})", path,
                             'write a JSON object {"case": [0, 1.5, 3.0], ...}') from None
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    cols = {c.lower().strip(): c for c in rows[0]}
    key = next((cols[c] for c in ("case_id", "patient_id", "case") if c in cols), None)
    if key is None:
        raise InputError("the times table has no case column", path,
                         "add a column named case_id (or patient_id) with the case names")
    tcols = sorted((c for c in cols if re.fullmatch(r"t\d+", c)), key=lambda c: int(c[1:]))
    out = {}
    for n, row in enumerate(rows, start=2):
        try:
            if "acquisition_times_min" in cols:
                text = row[cols["acquisition_times_min"]].strip()
                vals = [float(v) for v in re.split(r"[;\s,]+", text) if v] if text else []
            elif tcols:
                vals = [float(row[cols[c]]) for c in tcols if row[cols[c]].strip()]
            else:
                raise InputError("the times table has neither an acquisition_times_min column nor t0, t1, ...",
                                 path, "add one of them")
        except ValueError:
            raise InputError(f"line {n}: acquisition times are not numbers", path) from None
        if vals:
            out[row[key].strip()] = vals
    return out


def _case_times(path: Path) -> list | None:
    """``acquisition_times_min`` of a case's ``<case>.json`` (a byte-order mark is read); a file
    that is not a JSON object is refused by name, not a JSONDecodeError in the middle of a scan."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
        raise InputError(f"cannot read the case's times ({' '.join(str(exc).split())[:160]})", path,
                         'write it as UTF-8 JSON: {"acquisition_times_min": [0, 1.5, 3]}, or delete it') from None
    if not isinstance(data, dict):
        raise InputError(f"the case's times file holds a JSON {type(data).__name__}, not an object", path,
                         'write {"acquisition_times_min": [0, 1.5, 3]}')
    return data.get("acquisition_times_min")


def scan_dataset(root: str | os.PathLike, times_table: str | os.PathLike | None = None,
                 require_label: bool = True) -> list[CaseRecord]:
    """All cases of a MAMA-MIA or nnU-Net raw dataset folder, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("dataset folder not found", root, "give the folder that holds images/ (MAMA-MIA) "
                         "or imagesTr/ (nnU-Net)")
    table = read_times_table(times_table) if times_table else {}
    records = []
    if (root / "images").is_dir():
        seg_dir = root / "segmentations" / "expert"
        breast_dir = root / "segmentations" / "breast"
        for case_dir in sorted(p for p in (root / "images").iterdir() if p.is_dir()):
            phases = _phase_files(case_dir)
            if case_dir.name not in phases:
                continue
            times = table.get(case_dir.name)
            if times is None and (case_dir / f"{case_dir.name}.json").exists():
                times = _case_times(case_dir / f"{case_dir.name}.json")
            records.append(CaseRecord(case_dir.name, phases[case_dir.name], _nifti(seg_dir, case_dir.name),
                                      _nifti(breast_dir, case_dir.name), times, str(case_dir)))
    elif (root / "imagesTr").is_dir():
        for case, files in sorted(_phase_files(root / "imagesTr").items()):
            records.append(CaseRecord(case, files, _nifti(root / "labelsTr", case), None, table.get(case),
                                      str(root / "imagesTr")))
    else:
        raise InputError("neither images/ (MAMA-MIA) nor imagesTr/ (nnU-Net raw) found", root,
                         "point to the dataset root")
    if not records:
        raise InputError("no cases found (expected <case>_0000.nii.gz, <case>_0001.nii.gz, ...)", root)
    if require_label:
        missing = [r.case_id for r in records if r.label is None]
        if missing:
            raise InputError(f"{len(missing)} case(s) have no tumor mask, e.g. {missing[:3]}", root,
                             "add segmentations/expert/<case>.nii.gz (or labelsTr/<case>.nii.gz), "
                             "or remove those cases")
    for r in records:
        if r.times_min is not None and len(r.times_min) != len(r.phases):
            raise InputError(f"case {r.case_id}: {len(r.times_min)} acquisition times for {len(r.phases)} phases",
                             times_table or r.source, "give one time (minutes) per phase, the pre-contrast first")
    return records


# ------------------------------------------------------------------------------ folds
def kfold_splits(case_ids: list[str], k: int = 5, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Case-level k-fold split: ``k`` pairs (train ids, validation ids).

    Every case is in exactly one validation fold; the assignment depends only on the set of
    ids and the seed (not on the order they are given in), so adding a case later does not
    move most of the others between folds.
    """
    ids = sorted(set(case_ids))
    if len(ids) != len(case_ids):
        raise InputError("duplicate case ids in the dataset", fix="give every case a unique name")
    if not 2 <= k <= len(ids):
        raise InputError(f"cannot make {k} folds from {len(ids)} cases", fix="use 2 <= folds <= number of cases")
    # Order cases by a seeded hash of their id: stable and independent of the input order.
    order = sorted(ids, key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).hexdigest())
    folds = [order[i::k] for i in range(k)]
    return [([c for j, f in enumerate(folds) if j != i for c in f], sorted(folds[i])) for i in range(k)]


# ------------------------------------------------------------------------------ preprocessing
def prepare_exam(exam: DCEExam, tumor: sitk.Image | None, spacing_mm: float,
                 breast_truth: sitk.Image | None = None, coarse_spacing_mm: float = 3.0) -> dict:
    """Arrays for training from a motion-corrected exam (see the module docstring)."""
    from ..preprocess.breast_region import breast_mask
    from ..preprocess.harmonize import breast_crop, breast_model_input, to_model_grid
    from ..core.imageutil import resample_to

    bmask = breast_mask(exam.pre)
    mg = to_model_grid(exam, spacing_mm, bmask, kind="phases")
    bm = sitk.GetArrayFromImage(resample_to(bmask, mg.grid, sitk.sitkNearestNeighbor)) > 0
    crop = breast_crop(bm, spacing_mm)
    out = {"phases": mg.inputs[(slice(None),) + crop].astype(np.float16),
           "times": np.asarray(exam.effective_times(), np.float32),
           "breast": bm[crop].astype(np.uint8),
           "spacing_mm": np.float32(spacing_mm)}
    if tumor is not None:
        out["label"] = (sitk.GetArrayFromImage(resample_to(tumor, mg.grid, sitk.sitkNearestNeighbor))[crop] > 0
                        ).astype(np.uint8)
    if breast_truth is not None:
        out.update(breast_model_input(exam.pre, coarse_spacing_mm, breast_truth))
    return out


def prepare_record(rec: CaseRecord, spacing_mm: float, register: bool = True,
                   coarse_spacing_mm: float = 3.0) -> dict:
    """Read one case from disk, correct motion (optional), and prepare its arrays."""
    from ..core.imageutil import resample_to
    from ..io.files import load_exam
    from ..io.images import read_image

    exam = load_exam([str(p) for p in rec.phases], times_min=rec.times_min, case_id=rec.case_id)
    if register:
        from ..preprocess.registration import register_exam
        exam, _ = register_exam(exam)

    def on_grid(path: Path | None, what: str) -> sitk.Image | None:
        if path is None:
            return None
        # Masks may be stored on another grid than the images; nearest-neighbour onto the exam's.
        return resample_to(read_image(path, what), exam.pre, sitk.sitkNearestNeighbor)

    return prepare_exam(exam, on_grid(rec.label, "tumor mask"), spacing_mm, on_grid(rec.breast, "breast mask"),
                        coarse_spacing_mm)


def prepare_phantom(seed: int, spacing_mm: float, size: str = "small", coarse_spacing_mm: float = 3.0,
                    family: str = "phantom", **overrides) -> dict:
    """A synthetic case: exam *seed* of *family* (see :mod:`.phantom.families`), motion corrected
    with its known transforms."""
    from .phantom.families import EVALUATION_ONLY, make_exam

    if family in EVALUATION_ONLY:
        raise InputError(f"the {family!r} phantom family is for evaluation only", "config data.train_seeds",
                         "train on 'phantom' and/or 'randomized'")
    if family == "phantom":
        overrides["size"] = size
    ph = make_exam(family, seed, **overrides)
    ref = ph.exam.reference
    exam = ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])
    return prepare_exam(exam, ph.tumor_mask, spacing_mm, ph.breast_mask, coarse_spacing_mm)


# ------------------------------------------------------------------------------ cache
@dataclass
class CaseCache:
    """Prepared cases on disk, one folder of ``.npy`` arrays per case, read memory-mapped.

    Training reads patches straight from these files (the operating system keeps what is used in
    its page cache), so a dataset of MAMA-MIA's size (1,506 exams) trains without holding every
    case in RAM. A case folder is written under a temporary name and renamed when complete, so an
    interrupted preparation leaves nothing half-written. Entries of the older single-file
    format (``<key>.npz``) are still read, into memory.
    """

    folder: Path
    log: object = field(default=print, repr=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)

    def path(self, key: str) -> Path:
        return self.folder / key

    def _read(self, key: str, keys: set[str] | None) -> dict | None:
        entry, legacy = self.path(key), self.folder / f"{key}.npz"
        try:
            if (entry / "complete").exists():
                return {f.stem: np.load(f, mmap_mode="r") for f in sorted(entry.glob("*.npy"))
                        if keys is None or f.stem in keys}
            if legacy.exists():
                with np.load(legacy) as z:
                    return {k: z[k] for k in z.files if keys is None or k in keys}
        except (OSError, ValueError, EOFError):
            self.log(f"  cache entry {key} is damaged; preparing it again")
        return None

    def get(self, key: str, make, keys: set[str] | None = None) -> dict:
        """The cached arrays of *key* (only *keys* if given), prepared by ``make()`` if absent."""
        found = self._read(key, keys)
        if found is not None:
            return found
        t0 = time.perf_counter()
        case = make()
        with atomic_folder(self.path(key)) as tmp:
            for name, arr in case.items():
                np.save(tmp / f"{name}.npy", np.asarray(arr))
            (tmp / "complete").write_text("")
        shape = case["phases"].shape if "phases" in case else None
        self.log(f"  prepared {key} in {time.perf_counter() - t0:.1f} s, arrays {shape}")
        return self._read(key, keys) or {}


def phantom_key(seed: int, spacing_mm: float, size: str, coarse_spacing_mm: float = 3.0,
                family: str = "phantom") -> str:
    size = size if family == "phantom" else "auto"
    return f"{family}{seed:05d}_{size}_sp{spacing_mm:g}_{coarse_spacing_mm:g}_v{PREPROCESS_VERSION}"


def family_seeds(spec, default_family: str = "phantom") -> list[tuple[str, int]]:
    """(family, seed) pairs from a seed spec: ``"1000-1039"`` (of *default_family*) or
    ``{"phantom": "1000-1039", "randomized": "6000-6099"}``."""
    if isinstance(spec, dict):
        return [(fam, s) for fam, sub in spec.items() for s in parse_seeds(sub, "training config: data seeds")]
    return [(default_family, s) for s in parse_seeds(spec, "training config: data seeds")]


def record_key(rec: CaseRecord, spacing_mm: float, register: bool, coarse_spacing_mm: float = 3.0) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", rec.case_id)
    return (f"{safe}_{rec.fingerprint()}_sp{spacing_mm:g}_{coarse_spacing_mm:g}_r{int(register)}"
            f"_v{PREPROCESS_VERSION}")


def load_split(data: dict, spacing_mm: float, cache_dir: str | os.PathLike, log=print,
               coarse_spacing_mm: float = 3.0, keys: set[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Training and validation cases described by a config's ``data`` block.

    One cache entry serves both the tumor models (grid ``spacing_mm``) and the whole-breast
    model (grid ``coarse_spacing_mm``).

    ``{"source": "phantom", "train_seeds": "1000-1039", "val_seeds": "2000-2005", "size": "small"}``
    (seeds of one ``"family"``, default ``"phantom"``; or per family:
    ``"train_seeds": {"phantom": "1000-1099", "randomized": "6000-6099"}``)
    or ``{"source": "folder", "root": ..., "times_table": null, "folds": 5, "fold": 0,
    "register": true}`` (or explicit ``"val_cases": [...]`` instead of folds).
    """
    cache = CaseCache(Path(cache_dir), log)
    src = data.get("source", "phantom")
    if src == "phantom":
        size = data.get("size", "small")
        family = data.get("family", "phantom")

        def get(fam: str, seed: int) -> dict:
            case = cache.get(phantom_key(seed, spacing_mm, size, coarse_spacing_mm, fam),
                             lambda: prepare_phantom(seed, spacing_mm, size, coarse_spacing_mm, fam), keys)
            case["case_id"] = np.array(f"{fam}_{seed:04d}")
            return case
        return ([get(f, s) for f, s in family_seeds(data["train_seeds"], family)],
                [get(f, s) for f, s in family_seeds(data["val_seeds"], family)])
    if src == "folder":
        records = scan_dataset(data["root"], data.get("times_table"))
        by_id = {r.case_id: r for r in records}
        if data.get("val_cases"):
            val_ids = list(data["val_cases"])
            unknown = [c for c in val_ids if c not in by_id]
            if unknown:
                raise InputError(f"validation case(s) {unknown[:3]} not in the dataset", data["root"])
            train_ids = [c for c in by_id if c not in set(val_ids)]
        else:
            train_ids, val_ids = kfold_splits(list(by_id), int(data.get("folds", 5)),
                                              int(data.get("split_seed", 0)))[int(data.get("fold", 0))]
        register = bool(data.get("register", True))

        def get_rec(cid: str) -> dict:
            rec = by_id[cid]
            case = cache.get(record_key(rec, spacing_mm, register, coarse_spacing_mm),
                             lambda: prepare_record(rec, spacing_mm, register, coarse_spacing_mm), keys)
            case["case_id"] = np.array(cid)
            return case
        return [get_rec(c) for c in train_ids], [get_rec(c) for c in val_ids]
    raise InputError(f"unknown data source {src!r}", "config data.source", "use 'phantom' or 'folder'")

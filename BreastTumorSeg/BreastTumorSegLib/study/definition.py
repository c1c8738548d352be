"""``study.json``: what a study is (cases, readers, arms, wash-out, orders) and its checks.

The study folder is the single source of truth::

    STUDY/study.json                      this definition (written once by ``study init``)
    STUDY/model/<label>/seg.nii.gz        the model's mask (and prob.nii.gz) when the study has a model
                                          (any arms; shown in the assisted arm, compared in the report)
    STUDY/regions/<label>/breast.nii.gz   the whole-breast mask (region of the report's voxel-wise ROC)
    STUDY/readers/<reader>/state.json     the reader's progress and times (atomic rewrite)
    STUDY/readers/<reader>/audit.jsonl    append-only log: opened, saved, paused, submitted, ...
    STUDY/readers/<reader>/session.lock   held while a session of that reader is open
    STUDY/readers/<reader>/<label>/<arm>/v0001.nii.gz ...   autosaved versions, never replaced
    STUDY/readers/<reader>/<label>/<arm>/submitted.nii.gz   the submitted mask (read-only)

Cases are shown under pseudonyms (``label``, random from the seed); the case ids and exam paths
are for the coordinator. Every reader reads every case once per arm, in an order drawn from the
recorded seed: with two arms, each case's first arm is balanced over cases, all first readings
come before all second readings, and the two readings of a case are at least ``washout.cases``
positions apart; ``washout.days`` further holds a second reading back until that many days after
the first was submitted. ``model`` (name, SHA-256) names the model compared with the readers,
``scores`` what each reader gives per breast besides the mask (:mod:`.scores`), and a case's
``truth`` (left/right: 1 malignant, 0 benign) is for the coordinator's scores table only.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from .storage import read_json

FORMAT = "breasttumorseg-study"
FORMAT_VERSION = 1
STUDY_FILE = "study.json"
ARMS = ("unaided", "assisted")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_EFFECTS = ("Paint", "Draw", "Erase", "Scissors", "Islands", "Smoothing", "Threshold")
LABEL_ALPHABET = "ACDEFGHJKLMNPQRTUVWXY3479"  # no look-alikes (0/O, 1/I, 2/Z, 5/S, 8/B)


def check_name(name: str, what: str, where: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise InputError(f"{what} {name!r} is not a plain name (letters, digits, '_', '-', '.'; at most 64)",
                         where, f"rename the {what}")
    return name


@dataclass(frozen=True)
class Grid:
    """The exam's reference grid (the pre-contrast phase): every mask lives on it."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, img: sitk.Image) -> "Grid":
        return cls(tuple(int(v) for v in img.GetSize()[:3]), tuple(float(v) for v in img.GetSpacing()[:3]),
                   tuple(float(v) for v in img.GetOrigin()[:3]), tuple(float(v) for v in img.GetDirection()))

    @classmethod
    def from_json(cls, d: dict) -> "Grid":
        return cls(tuple(int(v) for v in d["size"]), tuple(float(v) for v in d["spacing"]),
                   tuple(float(v) for v in d["origin"]), tuple(float(v) for v in d["direction"]))

    def as_json(self) -> dict:
        return {"size": list(self.size), "spacing": list(self.spacing), "origin": list(self.origin),
                "direction": list(self.direction)}

    def empty(self) -> sitk.Image:
        img = sitk.Image(list(self.size), sitk.sitkUInt8)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def difference(self, img: sitk.Image, tol: float = 1e-3) -> str:
        """What differs between *img*'s grid and this one, in words (empty when it matches)."""
        def fmt(v):
            return "(" + ", ".join(f"{x:g}" for x in v) + ")"

        parts = []
        if tuple(img.GetSize()) != self.size:
            parts.append(f"size {fmt(img.GetSize())}, exam {fmt(self.size)}")
        if not np.allclose(img.GetSpacing(), self.spacing, atol=tol * max(self.spacing)):
            parts.append(f"spacing {fmt(img.GetSpacing())} mm, exam {fmt(self.spacing)} mm")
        if not np.allclose(img.GetOrigin(), self.origin, atol=tol * max(self.spacing) * 10):
            parts.append(f"origin {fmt(img.GetOrigin())} mm, exam {fmt(self.origin)} mm")
        if not np.allclose(img.GetDirection(), self.direction, atol=1e-4):
            parts.append("direction differs")
        return "; ".join(parts)

    def matches(self, img: sitk.Image, tol: float = 1e-3) -> bool:
        return (tuple(img.GetSize()) == self.size
                and np.allclose(img.GetSpacing(), self.spacing, atol=tol * max(self.spacing))
                and np.allclose(img.GetOrigin(), self.origin, atol=tol * max(self.spacing) * 10)
                and np.allclose(img.GetDirection(), self.direction, atol=1e-4))


@dataclass
class Case:
    id: str
    label: str
    inputs: list[str]
    grid: Grid
    model: dict = field(default_factory=dict)  # {"mask", "prob", "breast": paths relative to the study, "*_sha256"}
    series: list[str] = field(default_factory=list)  # DICOM series numbers or UIDs of the phases (optional)
    truth: dict = field(default_factory=dict)  # side -> 1 malignant / 0 benign (coordinator only, optional)


@dataclass
class Arm:
    name: str
    model: str | None = None
    model_sha256: str | None = None
    threshold: float | None = None  # the model's probability threshold when it is not its card's


@dataclass
class Study:
    """A loaded, checked ``study.json`` and its folder."""

    folder: Path
    name: str
    seed: int
    readers: list[str]
    arms: list[Arm]
    cases: list[Case]
    orders: dict[str, list[tuple[str, str]]]  # reader -> [(label, arm), ...]
    washout_cases: int = 0
    washout_days: float = 0.0
    autosave_s: float = 30.0
    idle_timeout_s: float = 90.0
    allowed_effects: list[str] = field(default_factory=lambda: list(DEFAULT_EFFECTS))
    created: str = ""
    model: dict | None = None  # {"name", "sha256"[, "threshold"]}: the model compared with the readers
    scores: list[str] = field(default_factory=list)  # what readers give per breast: probability, birads

    @property
    def path(self) -> Path:
        return self.folder / STUDY_FILE

    def case_by_label(self, label: str) -> Case:
        for c in self.cases:
            if c.label == label:
                return c
        raise InputError(f"no case labelled {label!r} in the study", self.path)

    def case_by_id(self, case_id: str) -> Case:
        for c in self.cases:
            if c.id == case_id:
                return c
        raise InputError(f"no case {case_id!r} in the study (cases: {', '.join(c.id for c in self.cases[:8])}"
                         f"{', ...' if len(self.cases) > 8 else ''})", self.path, "use a case id of CASES.csv")

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise InputError(f"the study has no arm {name!r} (arms: {', '.join(a.name for a in self.arms)})",
                         self.path, f"use one of {', '.join(a.name for a in self.arms)}")

    def check_reader(self, reader: str) -> str:
        if reader not in self.readers:
            raise InputError(f"{reader!r} is not a reader of this study (readers: {', '.join(self.readers)})",
                             self.path, "pick one of the study's readers")
        return reader

    def reader_dir(self, reader: str) -> Path:
        """``STUDY/readers/<reader>``; a file where that folder (or ``readers``) belongs is refused."""
        folder = self.folder / "readers" / self.check_reader(reader)
        for p in (folder.parent, folder):
            if os.path.lexists(p) and not p.is_dir():
                raise InputError("a file lies where the study keeps a reader's folder", p,
                                 "move that file away (the study folder was changed by hand)")
        return folder

    def as_json(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name, "created": self.created,
            "seed": self.seed, "readers": self.readers,
            "arms": [{k: v for k, v in vars(a).items() if v is not None} for a in self.arms],
            "washout": {"cases": self.washout_cases, "days": self.washout_days},
            "autosave_s": self.autosave_s, "idle_timeout_s": self.idle_timeout_s,
            "allowed_effects": self.allowed_effects,
            **({"model": self.model} if self.model else {}), **({"scores": self.scores} if self.scores else {}),
            "cases": [{"id": c.id, "label": c.label, "inputs": c.inputs, "grid": c.grid.as_json(),
                       **({"series": c.series} if c.series else {}),
                       **({"model": c.model} if c.model else {}),
                       **({"truth": c.truth} if c.truth else {})} for c in self.cases],
            "orders": {r: [list(item) for item in o] for r, o in self.orders.items()},
        }


def pseudonyms(n: int, seed: int) -> list[str]:
    """*n* distinct random labels like ``K7F2-QX`` from *seed* (no case id can be read from them)."""
    rng = np.random.default_rng([seed, 0x1AB])
    out: list[str] = []
    seen = set()
    while len(out) < n:
        chars = rng.choice(list(LABEL_ALPHABET), 6)
        label = "".join(chars[:4]) + "-" + "".join(chars[4:])
        if label not in seen:
            seen.add(label)
            out.append(label)
    return out


def reading_order(labels: list[str], arms: list[str], seed: int, reader_index: int,
                  washout_cases: int = 0) -> list[tuple[str, str]]:
    """One reader's order of (label, arm) readings, reproducible from (seed, reader_index).

    One arm: a random permutation. Two arms: the cases' first arms alternate over a random
    permutation (balanced), all first readings (shuffled) come before all second readings
    (shuffled), and the two readings of a case are at least *washout_cases* positions apart.
    """
    n = len(labels)
    rng = np.random.default_rng([seed, 0x5EED, reader_index])
    if len(arms) == 1:
        return [(labels[i], arms[0]) for i in rng.permutation(n)]
    if washout_cases > n:
        raise InputError(f"a wash-out of {washout_cases} cases cannot be met with {n} cases and 2 arms (at most {n})",
                         "--washout-cases", f"give at most {n}, or use --washout-days")
    perm = rng.permutation(n)
    first_arm = {labels[i]: arms[k % 2] for k, i in enumerate(perm)}
    block1 = [labels[i] for i in rng.permutation(n)]
    pos1 = {lab: k for k, lab in enumerate(block1)}
    for _ in range(2000):
        block2 = [labels[i] for i in rng.permutation(n)]
        if all(n - pos1[lab] + k >= washout_cases for k, lab in enumerate(block2)):
            break
    else:  # the same order in both blocks always keeps every case n readings apart
        block2 = list(block1)
    other = {a: b for a, b in (arms, arms[::-1])}
    return [(lab, first_arm[lab]) for lab in block1] + [(lab, other[first_arm[lab]]) for lab in block2]


def load_study(folder: str | Path) -> Study:
    """Read and check ``STUDY/study.json``; any problem is one InputError naming the file and key."""
    folder = Path(folder)
    path = folder / STUDY_FILE
    if not folder.is_dir():
        raise InputError("study folder does not exist", folder, "give the folder made by `breasttumorseg study init`")
    data = read_json(path, "study definition")

    def bad(key: str, problem: str) -> InputError:
        return InputError(f"{key}: {problem} (the file was edited by hand or copied in part)", path,
                          "restore study.json from the coordinator's copy")

    def need(d: dict, key: str, kind, where: str):
        if key not in d:
            raise bad(where + key, "missing")
        v = d[key]
        if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
            raise bad(where + key, f"expected {getattr(kind, '__name__', kind)}, got {type(v).__name__}")
        return v

    if data.get("format") != FORMAT:
        raise bad("format", f"not a BreastTumorSeg study (format {data.get('format')!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise bad("format_version", f"version {data.get('format_version')!r} is not {FORMAT_VERSION}; "
                                    "use the BreastTumorSeg version that made the study")
    readers = need(data, "readers", list, "")
    for r in readers:
        check_name(r, "reader", path)
    if len(set(readers)) != len(readers) or not readers:
        raise bad("readers", "empty or with a duplicate name")
    arms = []
    for i, a in enumerate(need(data, "arms", list, "")):
        if not isinstance(a, dict) or a.get("name") not in ARMS:
            raise bad(f"arms[{i}]", f"must be an object with name one of {', '.join(ARMS)}")
        if a["name"] == "assisted" and not (isinstance(a.get("model"), str) and isinstance(a.get("model_sha256"), str)):
            raise bad(f"arms[{i}]", "the assisted arm must name its model and the model's SHA-256")
        thr = a.get("threshold")
        if thr is not None and not (isinstance(thr, (int, float)) and 0 < thr <= 1):
            raise bad(f"arms[{i}].threshold", "must be a number in (0, 1]")
        arms.append(Arm(a["name"], a.get("model"), a.get("model_sha256"), thr))
    if not arms or len({a.name for a in arms}) != len(arms):
        raise bad("arms", "empty or with a duplicate arm")
    study_model = data.get("model")
    if study_model is not None and not (isinstance(study_model, dict) and isinstance(study_model.get("name"), str)):
        raise bad("model", "must be an object with the model's name and SHA-256")
    score_kinds = data.get("scores", [])
    if not (isinstance(score_kinds, list) and all(k in ("probability", "birads") for k in score_kinds)):
        raise bad("scores", "must list probability and/or birads")
    cases = []
    for i, c in enumerate(need(data, "cases", list, "")):
        where = f"cases[{i}]."
        if not isinstance(c, dict):
            raise bad(f"cases[{i}]", "must be an object")
        cid = check_name(need(c, "id", str, where), "case id", path)
        label = need(c, "label", str, where)
        inputs = need(c, "inputs", list, where)
        try:
            grid = Grid.from_json(need(c, "grid", dict, where))
        except (KeyError, TypeError, ValueError):
            raise bad(where + "grid", "needs size, spacing, origin and direction") from None
        model = c.get("model") or {}
        if not isinstance(model, dict):
            raise bad(where + "model", "must be an object")
        if any(a.name == "assisted" for a in arms) and not model.get("mask"):
            raise bad(where + "model", "the assisted arm needs the model's mask of every case")
        series = c.get("series", [])
        if not isinstance(series, list):
            raise bad(where + "series", "must be a list of DICOM series numbers or UIDs")
        if study_model and not model.get("mask"):
            raise bad(where + "model", f"the study's model ({study_model.get('name')}) has no mask for this case")
        truth = c.get("truth") or {}
        if not (isinstance(truth, dict) and all(k in ("left", "right") and v in (0, 1) for k, v in truth.items())):
            raise bad(where + "truth", "must map left/right to 1 (malignant) or 0")
        cases.append(Case(cid, label, [str(x) for x in inputs], grid, model, [str(x) for x in series], truth))
    if not cases:
        raise bad("cases", "no cases")
    if len({c.id for c in cases}) != len(cases) or len({c.label for c in cases}) != len(cases):
        raise bad("cases", "a case id or label appears twice")
    labels = {c.label for c in cases}
    arm_names = {a.name for a in arms}
    orders = {}
    raw_orders = need(data, "orders", dict, "")
    for r in readers:
        items = raw_orders.get(r)
        if not isinstance(items, list):
            raise bad(f"orders.{r}", "missing")
        order = []
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and item[0] in labels and item[1] in arm_names):
                raise bad(f"orders.{r}", f"item {item!r} is not [case label, arm]")
            order.append((item[0], item[1]))
        if sorted(order) != sorted((lab, a) for lab in labels for a in arm_names):
            raise bad(f"orders.{r}", "does not list every case once per arm")
        orders[r] = order
    washout = data.get("washout") or {}
    study = Study(folder, str(data.get("name", folder.name)), int(need(data, "seed", int, "")), list(readers), arms,
                  cases, orders, int(washout.get("cases", 0)), float(washout.get("days", 0.0)),
                  float(data.get("autosave_s", 30.0)), float(data.get("idle_timeout_s", 90.0)),
                  list(data.get("allowed_effects", DEFAULT_EFFECTS)), str(data.get("created", "")),
                  study_model, list(score_kinds))
    if study.autosave_s <= 0 or study.idle_timeout_s <= 0:
        raise bad("autosave_s/idle_timeout_s", "must be positive")
    return study

"""One reader's reading session: blinded, timed, autosaved, resumable, locked.

A front end (the Slicer reader module, a web server, a script) drives it::

    session = ReaderSession.open_study("STUDY", "alice")     # takes readers/alice/session.lock
    view = session.open()                 # the case to read now (resumes where she stopped)
    view.title                            # "case 7 of 40" -- all the reader is told
    mask = view.starting_mask()           # latest autosave, else the model's mask (assisted), else empty
    session.activity(edit=True)           # on every edit (keeps the timer running, counts edits)
    session.maybe_autosave(get_mask)      # on a timer: saves a new version every autosave_s
    session.pause(); session.resume()     # explicit pause, or the application went to the background
    session.submit(mask)                  # locks the case; session.next() opens the next one
    session.close(mask)

Masks are SimpleITK images on the exam's reference grid (or NIfTI paths). Timing: a gap between
two activity events longer than the study's ``idle_timeout_s`` counts as a pause; explicit and
background pauses count nothing; wall time runs from opening to closing a case. Times and edits
are stored in ``state.json`` at every save, so a crash loses at most one autosave interval.
"""
from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import SimpleITK as sitk

from ..core.errors import BreastTumorSegError, InputError
from ..io.atomic import sha256_file, write_image, write_json
from ..io.images import read_mask
from .definition import Grid, Study, load_study
from .storage import LOCKED_MODE, Lock, append_line, clean_temporaries, iter_versions, read_json, read_lines

SUBMITTED = "submitted.nii.gz"
TODO, IN_PROGRESS, DONE = "to do", "in progress", "submitted"


class SubmittedError(BreastTumorSegError):
    """The case was submitted: its mask is locked."""


def iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def item_key(label: str, arm: str) -> str:
    return f"{label}/{arm}"


def new_item_state() -> dict:
    return {"status": TODO, "active_s": 0.0, "wall_s": 0.0, "edits": 0, "versions": 0, "last_version": None,
            "last_sha256": None, "first_opened": None, "submitted_at": None, "imported": False}


def load_state(study: Study, reader: str) -> dict:
    """``readers/<reader>/state.json`` (a fresh state when the reader has not started)."""
    path = study.reader_dir(reader) / "state.json"
    items = {item_key(lab, arm): new_item_state() for lab, arm in study.orders[reader]}
    if not path.exists():
        return {"reader": reader, "position": 0, "items": items}
    data = read_json(path, "reader state")
    if data.get("reader") != reader or not isinstance(data.get("items"), dict) \
            or not isinstance(data.get("position"), int):
        raise InputError("reader state is not this reader's or lacks reader/position/items (edited by hand?)", path,
                         "restore it from a backup; the audit log next to it records every save")
    for key, st in data["items"].items():
        if key not in items or not isinstance(st, dict) or st.get("status") not in (TODO, IN_PROGRESS, DONE):
            raise InputError(f"reader state has an unknown or broken item {key!r}", path,
                             "restore it from a backup")
        items[key].update(st)
    data["items"] = items
    data["position"] = min(max(data["position"], 0), len(study.orders[reader]) - 1)
    return data


@dataclass
class CaseView:
    """What a reader gets for one reading: a pseudonym, her position, her own files only."""

    index: int  # 0-based position in her order
    total: int
    label: str  # pseudonymised case label
    arm: str
    folder: Path  # readers/<reader>/<label>/<arm>/: her versions of this reading
    grid: Grid
    status: str
    allowed_effects: tuple[str, ...]
    _exam_inputs: tuple[str, ...]
    _start: Callable[[], sitk.Image]
    _series: tuple[str, ...] = ()
    score_kinds: tuple[str, ...] = ()  # what the study asks per breast: probability (0-100 %), birads
    model_scores: dict | None = None  # the model's per-breast probability (assisted arm only), else None

    @property
    def title(self) -> str:
        return f"case {self.index + 1} of {self.total}"

    @property
    def locked(self) -> bool:
        return self.status == DONE

    def starting_mask(self) -> sitk.Image:
        """The mask to show: submitted > latest autosave > the model's mask (assisted) > empty."""
        return self._start()

    def load_exam(self):
        """The exam, pseudonymised: case id = the label, no source paths or header metadata."""
        from ..io.files import load_exam

        inputs = list(self._exam_inputs)
        exam = load_exam(inputs[0] if len(inputs) == 1 else inputs, series=list(self._series) or None)
        exam.case_id = self.label
        exam.metadata = {k: v for k, v in exam.metadata.items() if k in ("acquisition_times_min",)}
        exam.sources = [f"{self.label} phase {i}" for i in range(exam.n_phases)]
        return exam

    def registered_exam(self, register: bool = True):
        """:meth:`load_exam`, motion-corrected (what the engine segments and click-to-correct reads)."""
        exam = self.load_exam()
        if register and exam.n_phases > 1:
            from ..preprocess.registration import register_exam

            exam, _ = register_exam(exam)
        return exam

    def hanging_protocol(self, register: bool = True, exam=None) -> dict[str, sitk.Image]:
        """The images a breast reader expects, on the reference grid, motion-corrected:
        ``subtraction`` (first post-contrast − pre-contrast), ``first post-contrast``, ``pre-contrast``
        (of *exam* when given: an exam from :meth:`registered_exam`)."""
        if exam is None:
            exam = self.registered_exam(register)
        return {"subtraction": sitk.Subtract(exam.first_post, exam.pre), "first post-contrast": exam.first_post,
                "pre-contrast": exam.pre}


@dataclass
class PendingSave:
    """A mask on its way to disk (see :meth:`ReaderSession.begin_save`)."""

    image: sitk.Image
    folder: Path
    edit_seq: int
    label: str
    arm: str

    def write(self) -> Path:
        """Write the next free version number (never replacing a file); thread-safe, touches no state."""
        n = max((k for k, _ in iter_versions(self.folder)), default=0) + 1
        while True:
            path = self.folder / f"v{n:04d}.nii.gz"
            try:
                return write_image(path, self.image, durable=True, exclusive=True)
            except FileExistsError:
                n += 1


class ReaderSession:
    """The only way a reader touches the study; see the module docstring."""

    def __init__(self, study: Study, reader: str, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], float] = time.time, lock_stale_after_s: float = 600.0):
        study.check_reader(reader)
        self.reader = reader
        self._study = study
        self._clock = clock
        self._now = now
        self.folder = study.reader_dir(reader)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.idle_timeout_s = study.idle_timeout_s
        self.autosave_s = study.autosave_s
        self._lock = Lock(self.folder / "session.lock", f"reader {reader}", lock_stale_after_s, now).acquire()
        try:
            clean_temporaries(self.folder)
            self._state = load_state(study, reader)
            self._order = list(study.orders[reader])
            self._view: CaseView | None = None
            self._paused = False
            self._dirty = False
            self._edit_seq = 0
            self._committed_active = 0.0
            self._last_activity = self._counted_until = 0.0
            self._last_beat = clock()
            self._opened_clock = 0.0
            self._last_save_clock = 0.0
            self._log("session started", resumed_at=self._state["position"],
                      recovered_stale_lock=self._lock.recovered or None)
        except BaseException:
            self._lock.release()
            raise

    @classmethod
    def open_study(cls, folder: str | os.PathLike, reader: str, **kwargs) -> "ReaderSession":
        return cls(load_study(folder), reader, **kwargs)

    # ------------------------------------------------------------------ what the reader sees
    @property
    def total(self) -> int:
        return len(self._order)

    @property
    def position(self) -> int:
        return self._state["position"]

    @property
    def current(self) -> CaseView | None:
        return self._view

    @property
    def paused(self) -> bool:
        return self._paused

    def items(self) -> list[dict]:
        """Her readings in order: label, arm, status, active time (s), edits."""
        out = []
        for i, (lab, arm) in enumerate(self._order):
            st = self._state["items"][item_key(lab, arm)]
            out.append({"index": i, "label": lab, "arm": arm, "status": st["status"],
                        "active_s": st["active_s"], "edits": st["edits"], "available": self.available(i)[0]})
        return out

    def done(self) -> int:
        return sum(st["status"] == DONE for st in self._state["items"].values())

    def available(self, index: int) -> tuple[bool, str]:
        """Whether reading *index* may be opened now (wash-out), and why not."""
        lab, arm = self._order[index]
        for j, (lab2, arm2) in enumerate(self._order):
            if lab2 != lab or arm2 == arm or j > index:
                continue
            other = self._state["items"][item_key(lab2, arm2)]
            if other["status"] != DONE:
                return False, f"read case {j + 1} first"
            gap_cases = index - j
            if gap_cases < self._study.washout_cases:
                return False, f"wash-out: {self._study.washout_cases} cases between the two readings"
            days = self._study.washout_days
            if days and other.get("submitted_at") is not None:
                ready = other["submitted_at"] + days * 86400.0
                if self._now() < ready:
                    return False, f"wash-out: available from {iso(ready)[:10]}"
        return True, ""

    def active_seconds(self) -> float:
        """Active time of the open reading so far (stored time + this opening)."""
        if self._view is None:
            return 0.0
        st = self._item_state()
        return st["active_s"] + self._committed_active + self._pending(self._clock())

    # --------------------------------------------------------------------------- navigation
    def open(self, index: int | None = None, mask: sitk.Image | None = None) -> CaseView:
        """Open reading *index* (default: where she stopped). The open one is saved first (if a mask is given)."""
        index = self.position if index is None else int(index)
        if not 0 <= index < self.total:
            raise InputError(f"there is no case {index + 1} (the study has {self.total})", self.folder)
        ok, why = self.available(index)
        if not ok:
            raise InputError(f"case {index + 1} of {self.total} cannot be opened yet: {why}", self.folder)
        if self._view is not None:
            self.close(mask)
        lab, arm = self._order[index]
        case = self._study.case_by_label(lab)
        folder = self.folder / lab / arm
        self._state["position"] = index
        st = self._state["items"][item_key(lab, arm)]
        if st["status"] == TODO:
            st["status"] = IN_PROGRESS
            st["first_opened"] = self._now()
        t = self._clock()
        self._view = CaseView(index, self.total, lab, arm, folder, case.grid, st["status"],
                              tuple(self._study.allowed_effects), tuple(case.inputs),
                              lambda: self._starting_mask(lab, arm, folder, case.grid), tuple(case.series),
                              tuple(self._study.scores),
                              dict(case.model.get("scores") or {}) if arm == "assisted" and self._study.scores else None)
        self._paused = False
        self._dirty = False
        self._committed_active = 0.0
        self._opened_clock = self._last_activity = self._counted_until = self._last_save_clock = t
        self._write_state()
        self._log("opened", label=lab, arm=arm, index=index)
        return self._view

    def next(self, mask: sitk.Image | None = None) -> CaseView | None:
        """Open the next reading that may be opened; None when none is left."""
        start = self.position + 1 if self._view is not None else self.position
        for i in list(range(start, self.total)) + list(range(0, start)):
            st = self._state["items"][item_key(*self._order[i])]
            if st["status"] != DONE and self.available(i)[0]:
                return self.open(i, mask)
        if self._view is not None:
            self.close(mask)
        return None

    def previous(self, mask: sitk.Image | None = None) -> CaseView:
        return self.open(max(self.position - 1, 0), mask)

    def close(self, mask: sitk.Image | None = None) -> None:
        """Close the open reading, saving *mask* when it changed (case switch)."""
        if self._view is None:
            return
        if mask is not None and self._dirty and not self._view.locked:
            self.save(mask, reason="case switch")
        self._commit_times()
        self._write_state()
        self._log("closed", label=self._view.label, arm=self._view.arm)
        self._view = None

    # ------------------------------------------------------------------------------ timing
    def _pending(self, t: float) -> float:
        """Active seconds since ``_counted_until``: the timer stops ``idle_timeout_s`` after the
        last activity, and while paused."""
        if self._paused:
            return 0.0
        end = min(t, self._last_activity + self.idle_timeout_s)
        return max(0.0, end - self._counted_until)

    def _accrue(self, t: float) -> None:
        add = self._pending(t)
        self._committed_active += add
        self._counted_until = max(self._counted_until, self._counted_until + add)

    def activity(self, edit: bool = False) -> None:
        """The reader did something (an edit when *edit*): the timer runs again; it stops
        ``idle_timeout_s`` after the last activity."""
        if self._view is None:
            return
        t = self._clock()
        if self._paused:
            self.resume()
        self._accrue(t)
        gap = t - self._last_activity
        if gap > self.idle_timeout_s:
            self._log("idle", label=self._view.label, arm=self._view.arm, seconds=round(gap, 1))
        self._last_activity = self._counted_until = t
        if edit and not self._view.locked:
            self._item_state()["edits"] += 1
            self._edit_seq += 1
            self._dirty = True

    def pause(self, reason: str = "explicit") -> None:
        """Stop the timer (explicit pause, or ``reason="background"``); saves the times."""
        if self._view is None or self._paused:
            return
        self._commit_times()
        self._paused = True
        self._write_state()
        self._log("paused", label=self._view.label, arm=self._view.arm, reason=reason)

    def resume(self) -> None:
        if self._view is None or not self._paused:
            return
        self._paused = False
        self._last_activity = self._counted_until = self._clock()
        self._log("resumed", label=self._view.label, arm=self._view.arm)

    def _commit_times(self) -> None:
        t = self._clock()
        self._accrue(t)
        st = self._item_state()
        st["active_s"] = round(st["active_s"] + self._committed_active, 3)
        st["wall_s"] = round(st["wall_s"] + (t - self._opened_clock), 3)
        self._committed_active = 0.0
        self._opened_clock = t

    def keep_alive(self, every_s: float = 60.0) -> None:
        """Renew the lock's heartbeat (call it on a timer): a session that stops doing so for
        the lock's ``stale_after_s`` (10 min) may be taken over from another machine."""
        t = self._clock()
        if t - self._last_beat >= every_s:
            self._lock.refresh()
            self._last_beat = t

    # --------------------------------------------------------------------------- saving
    def autosave_due(self) -> bool:
        return (self._view is not None and self._dirty and not self._view.locked
                and self._clock() - self._last_save_clock >= self.autosave_s)

    def maybe_autosave(self, mask: sitk.Image | Callable[[], sitk.Image]) -> Path | None:
        """Save a new version when the mask changed and ``autosave_s`` has passed (call it on a timer)."""
        if not self.autosave_due():
            return None
        return self.save(mask() if callable(mask) else mask, reason="autosave")

    def save(self, mask: sitk.Image | str | os.PathLike, reason: str = "manual") -> Path:
        """Write *mask* as the next version ``vNNNN.nii.gz`` (never replacing one); returns its path."""
        pending = self.begin_save(mask)
        return self.finish_save(pending.write(), pending, reason)

    def begin_save(self, mask: sitk.Image | str | os.PathLike) -> "PendingSave":
        """First half of a save, on the caller's (UI) thread: check the mask, note the edit count.
        ``pending.write()`` (the slow part: compress, fsync) may then run on a worker thread; the
        UI thread ends with :meth:`finish_save`. :meth:`save` does all three."""
        view = self._require_open()
        if view.locked:
            raise SubmittedError(f"{view.folder}: case {view.index + 1} was submitted; its mask is locked")
        return PendingSave(self._check_mask(mask, view), view.folder, self._edit_seq, view.label, view.arm)

    def finish_save(self, path: Path, pending: "PendingSave", reason: str = "autosave") -> Path:
        """Record a written version (state, audit log, lock heartbeat)."""
        view = self._require_open()
        if (view.label, view.arm) != (pending.label, pending.arm):
            raise InputError("a save finished after its case was closed", path, "save again")
        self._lock.refresh()  # before the state is written: a session that lost its lock writes nothing more
        self._commit_times()
        st = self._item_state()
        st["versions"] = max(st["versions"], int(path.name[1:].split(".")[0]))
        st["last_version"] = path.name
        st["last_sha256"] = sha256_file(path)
        if self._edit_seq == pending.edit_seq:
            self._dirty = False  # edits made while it was written are saved next time
        self._last_save_clock = self._clock()
        self._write_state()
        self._log("saved", label=view.label, arm=view.arm, version=path.name, reason=reason,
                  sha256=st["last_sha256"], active_s=st["active_s"], edits=st["edits"])
        return path

    @property
    def scores(self) -> dict:
        """The reader's per-breast scores of the open reading (``{side: {kind: value}}``)."""
        return dict(self._item_state().get("scores") or {})

    def set_scores(self, scores: dict) -> None:
        """Store the reader's per-breast scores of the open reading (merged by side): activity for
        the timer, written to ``state.json`` at once and logged; locked once the reading is submitted."""
        from .scores import check_reader_scores

        view = self._require_open()
        if view.locked:
            raise SubmittedError(f"{view.folder}: case {view.index + 1} was submitted already")
        if not self._study.scores:
            raise InputError("this study asks the readers for no scores", self._study.path)
        checked = check_reader_scores(scores, self._study.scores)
        st = self._item_state()
        st["scores"] = {**(st.get("scores") or {}), **checked}
        self.activity()  # timed like an edit; the mask is unchanged, so no new mask version
        self._commit_times()
        self._write_state()
        self._log("scored", label=view.label, arm=view.arm, scores=checked)

    def submit(self, mask: sitk.Image | str | os.PathLike | None = None) -> Path:
        """Save *mask* (or the latest version) as the reading's final mask and lock it."""
        from .scores import complete

        view = self._require_open()
        if view.locked:
            raise SubmittedError(f"{view.folder}: case {view.index + 1} was submitted already")
        if not complete(self._item_state().get("scores"), self._study.scores):
            raise InputError(f"case {view.index + 1} needs the scores of both breasts before it is submitted "
                             f"({', '.join(self._study.scores)})", view.folder, "give them, then submit")
        if mask is not None and self._differs_from_latest(mask, view):
            self.save(mask, reason="submit")
        else:
            self._commit_times()
        img = view.starting_mask()
        final = view.folder / SUBMITTED
        write_image(final, img, durable=True, exclusive=True)
        os.chmod(final, LOCKED_MODE)
        st = self._item_state()
        st["status"] = view.status = DONE
        st["submitted_at"] = self._now()
        st["submitted_sha256"] = sha256_file(final)
        self._write_state()
        self._log("submitted", label=view.label, arm=view.arm, sha256=st["submitted_sha256"],
                  active_s=st["active_s"], wall_s=st["wall_s"], edits=st["edits"])
        return final

    def end(self, mask: sitk.Image | None = None) -> None:
        """Close the open reading and release the lock (the session object is then done)."""
        try:
            self.close(mask)
            self._log("session ended")
        finally:
            self._lock.release()

    def __enter__(self) -> "ReaderSession":
        return self

    def __exit__(self, *exc) -> None:
        self.end()

    # ------------------------------------------------------------------------------ private
    def _require_open(self) -> CaseView:
        if self._view is None:
            raise InputError("no case is open", self.folder, "open a case first")
        return self._view

    def _item_state(self) -> dict:
        v = self._require_open()
        return self._state["items"][item_key(v.label, v.arm)]

    def _check_mask(self, mask, view: CaseView) -> sitk.Image:
        if isinstance(mask, (str, os.PathLike)):
            mask = read_mask(mask, "mask")
        if not isinstance(mask, sitk.Image) or mask.GetDimension() != 3:
            raise InputError("the mask must be a 3D SimpleITK image or a NIfTI path", view.folder)
        if not view.grid.matches(mask):
            raise InputError(f"the mask is not on the exam's reference grid (size {mask.GetSize()} vs "
                             f"{view.grid.size})", view.folder, "resample it onto the pre-contrast grid")
        out = sitk.Cast(mask != 0, sitk.sitkUInt8)
        out.SetOrigin(view.grid.origin)  # identical geometry bit for bit on the stored versions
        out.SetSpacing(view.grid.spacing)
        out.SetDirection(view.grid.direction)
        return out

    def _differs_from_latest(self, mask, view: CaseView) -> bool:
        """Whether *mask* must be saved: changed since the last save, or never saved at all."""
        if self._dirty:
            return True
        versions = list(iter_versions(view.folder))
        if not versions:
            return True
        img = self._check_mask(mask, view)
        latest = read_mask(versions[-1][1], "saved mask")
        return not (sitk.GetArrayViewFromImage(img) == sitk.GetArrayViewFromImage(latest)).all()

    def _starting_mask(self, label: str, arm: str, folder: Path, grid: Grid) -> sitk.Image:
        st = self._state["items"][item_key(label, arm)]
        final = folder / SUBMITTED
        if st["status"] == DONE and final.exists():
            return read_mask(final, "submitted mask")
        versions = list(iter_versions(folder))
        if versions:
            _, path = versions[-1]
            if st.get("last_version") == path.name and st.get("last_sha256") \
                    and sha256_file(path) != st["last_sha256"]:
                raise InputError("the latest saved mask does not match its recorded checksum (copied in part?)",
                                 path, f"copy the study folder again, or delete {path.name} to go back one version")
            return read_mask(path, "saved mask")
        if arm == "assisted":
            return self._model_mask(label)
        return grid.empty()

    def _model_mask(self, label: str) -> sitk.Image:
        case = self._study.case_by_label(label)
        path = self._study.folder / case.model["mask"]
        want = case.model.get("mask_sha256")
        if want and (not path.exists() or sha256_file(path) != want):
            raise InputError("the model's mask is missing or does not match study.json's SHA-256", path,
                             "copy the study folder again (model/ is part of it)")
        return read_mask(path, "model mask")

    def _write_state(self) -> None:
        write_json(self.folder / "state.json", self._state, durable=True, allow_nan=False)

    def _log(self, event: str, **fields) -> None:
        t = self._now()
        rec = {"event": event, "reader": self.reader, "t": round(t, 3), "time": iso(t), "pid": os.getpid()}
        rec.update({k: v for k, v in fields.items() if v is not None})
        append_line(self.folder / "audit.jsonl", rec)


def audit_log(study: Study, reader: str) -> list[dict]:
    """The reader's audit records (a line torn by a kill is skipped)."""
    return read_lines(study.reader_dir(reader) / "audit.jsonl")

"""Atomic file writing and file hashes: the one way every module of the package writes a file.

A file is written under a temporary name in its destination folder and then renamed over the
target, so a reader of the target sees the old file or the new one, never half of one; on any
error (or a signal) the temporary file is removed and the target is left as it was.

* ``durable=True`` also flushes the file to the disk before the rename and the folder after it
  (``fsync``; on a system or network drive that cannot fsync a folder, that step is skipped):
  used where a power cut must not lose a write that was reported done (a study's readers' work,
  the readers' access hashes).
* ``exclusive=True`` (:func:`atomic_target`) never replaces an existing target: the finished file
  is hard-linked to its name, which fails on an existing one (``FileExistsError``).
* File mode: one rule. A new file is created with :data:`FILE_MODE` (0o644) and the operating
  system applies the process umask at creation, exactly as for any ``open(..., "w")``; the umask
  is never read or changed here (``os.umask`` can only be read by setting it, which races with
  other threads).

Writers: :func:`write_bytes`, :func:`write_text`, :func:`write_json`, :func:`write_image`, and
:func:`atomic_target` for a library that writes to a path itself. All take the target path first.
:class:`StagedOutputs` makes several files appear together or not at all;
:func:`check_no_overwrite` refuses to replace results without ``--overwrite``.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..core import interrupts
from ..core.errors import InputError, OutputExistsError, OutputWriteError
from .safety import check_output_dir, created_dirs, remove_empty_dirs

FILE_MODE = 0o644  # before the umask; the OS applies the umask when the file is created
TEMP_PREFIX = ".tmp-"  # temporaries a killed writer leaves behind start with this (see clean-up code)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename, a new name) to the disk where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows and some network file systems cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_temporary(path: Path, folder: bool = False) -> Path:
    """An empty file (or *folder*) next to *path*, named ``.tmp-<random>-<name>`` (the name keeps
    the target's ending, so an image writer picks the same format), created with :data:`FILE_MODE`
    (a folder: 0o755), less the umask."""
    while True:
        tmp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{path.name}")
        try:
            if folder:
                os.mkdir(tmp, 0o755)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            return tmp
        except FileExistsError:
            continue


def write_failed(path: str | os.PathLike, exc: BaseException) -> OutputWriteError:
    """The one-line error for an output that could not be written (*exc*: the OSError, or the
    RuntimeError of an image writer), naming the file and what to do."""
    import errno

    code = getattr(exc, "errno", None)
    text = " ".join(str(getattr(exc, "strerror", None) or exc).split())
    if code in (errno.ENOSPC, errno.EDQUOT) or "no space left" in text.lower():
        problem, fix = "the disk is full", "free some space, or choose an output folder on another disk"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS) or "permission denied" in text.lower():
        problem, fix = f"no permission to write there ({text[:120]})", "choose an output folder you can write to"
    else:
        problem, fix = f"the write failed ({text[:160]})", "check the disk and the output folder, then run again"
    shown = Path(*[part for part in Path(path).parts if not part.startswith(".staging-")])  # where it would appear
    return OutputWriteError(f"{shown}: cannot write this output: {problem}; no partial file was left. Fix: {fix}.")


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_target(path: str | os.PathLike, durable: bool = False, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to *path*; when the block ends without error it becomes *path*.

    ``durable``: fsync the file before and the folder after the rename. ``exclusive``: never
    replace an existing *path* (``FileExistsError``; on a file system without hard links the
    name is checked first and then renamed). On any error the temporary file is removed; an
    OSError while writing or renaming (disk full, no permission) becomes an
    :class:`~..core.errors.OutputWriteError` naming *path* (:func:`write_failed`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temporary(path)
    except OSError as exc:
        raise write_failed(path, exc) from None
    try:
        yield tmp
        if durable:
            _fsync_file(tmp)
        if not exclusive:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and fails on an existing name
            except FileExistsError:
                raise
            except OSError:  # no hard links here (some network shares): check, then rename
                if os.path.lexists(path):
                    raise FileExistsError(path) from None
                os.rename(tmp, path)
    except (OutputWriteError, FileExistsError):
        raise
    except OSError as exc:  # disk full, permission, I/O error while writing or renaming
        raise write_failed(path, exc) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    if durable:
        _fsync_dir(path.parent)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to *path*; when the block ends without error it
    replaces *path* (an old *path* is removed first, so a reader may find none for a moment, but
    never a half-written one). On any error the temporary folder is removed."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path, folder=True)
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes, durable: bool = False) -> Path:
    with atomic_target(path, durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, durable: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), durable)


def _json_default(o):
    """numpy scalars and arrays and paths as JSON."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike, data, durable: bool = False, allow_nan: bool = True) -> Path:
    """*data* as indented JSON; ``allow_nan=False`` refuses NaN/Infinity (not valid JSON) with ValueError."""
    return write_text(path, json.dumps(data, indent=2, default=_json_default, allow_nan=allow_nan) + "\n", durable)


def write_image(path: str | os.PathLike, img, compress: bool = True, durable: bool = False,
                exclusive: bool = False) -> Path:
    """A SimpleITK image (format from the file name; geometry as the image holds it)."""
    import SimpleITK as sitk

    with atomic_target(path, durable, exclusive) as tmp:
        try:
            sitk.WriteImage(img, str(tmp), compress)
        except RuntimeError as exc:  # ITK reports a failed write (disk full, I/O error) as RuntimeError
            raise write_failed(path, exc) from None
    return Path(path)


def check_no_overwrite(paths: Iterable[Path], overwrite: bool, option: str = "--output folder") -> None:
    """Refuse to replace existing results unless *overwrite* is set (*option* names what to change)."""
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{existing[0]}: result exists already ({len(existing)} file(s)). "
            f"Fix: choose another {option}, or pass --overwrite to replace it.")


# Staged outputs made and not yet committed or aborted: a signal that lands between making one and
# entering its ``with`` block would leave its staging folder behind; the command line aborts these
# on its way out (:func:`abort_unfinished_outputs`).
_UNFINISHED: set = set()


def abort_unfinished_outputs() -> None:
    """Abort every :class:`StagedOutputs` not committed or aborted yet (nothing of them stays)."""
    for staged in list(_UNFINISHED):
        staged.abort()


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) on *folder* itself while the block runs; nothing is
    written into it. Where flock is missing (Windows) or the folder cannot be opened, no lock."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # e.g. a network file system without locks: go on unlocked
                pass
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


class StagedOutputs:
    """Write several result files so that either all of them appear or none does.

    Files are first written into a hidden staging folder next to the destination, then moved
    into place one by one with atomic renames once every file has been written.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self._planned: dict[str, Path] = {}
        # the commands check their --output first, naming the option; this is for the Python API
        # (write_result and the other writers): a file, a dangling link, /proc or a name too long
        # for the file system is one InputError, not an OSError from mkdir
        check_output_dir(self.out_dir, option="output")
        interrupts.note_work()
        self._stage = None
        self._created = []
        try:
            with interrupts.signals_deferred():  # the folders made here are always known to abort()
                self._created = created_dirs(self.out_dir)
                try:
                    self._stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.out_dir))
                except OSError:
                    remove_empty_dirs(self._created)
                    raise
                _UNFINISHED.add(self)
        except BaseException:  # a signal held back above acts when the block ends: clean up first
            self.abort()
            raise

    def path(self, name: str, folder: str | os.PathLike = "") -> Path:
        """Where to write *name* now; it appears as ``out_dir/folder/name`` on :meth:`commit`
        (*folder*: a relative sub-folder, made on commit when missing)."""
        parts = Path(folder).parts
        for part in (*parts, name):
            if not part or part in (".", "..") or "/" in part or os.sep in part:
                raise InputError(f"output name {part!r} is not a plain file name", self.out_dir,
                                 "use a case id without path separators or '..'")
        rel = Path(*parts, name)
        self._planned[rel] = self.out_dir / rel
        return self._stage / rel

    def commit(self) -> list[Path]:
        """Move every staged file into place. SIGINT/SIGTERM wait until all are moved."""
        done = []
        with interrupts.signals_deferred(), _folder_lock(self.out_dir):
            # under the lock: two runs committing into one folder at once come out one after the
            # other (the second refused, or all its files replacing all the first's), never mixed
            check_no_overwrite(self._planned.values(), self.overwrite)
            new = {dest for dest in self._planned.values() if not os.path.lexists(dest)}
            for rel, dest in self._planned.items():
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(self._stage / rel, dest)
                except OSError as exc:  # the files moved so far go again: all or nothing
                    for moved in done:
                        if moved in new:
                            moved.unlink(missing_ok=True)
                    raise write_failed(dest, exc) from None
                done.append(dest)
            self.abort()
            interrupts.note_commit()
        return done

    def abort(self) -> None:
        """Remove the staging folder, and the output folders made for it if they stayed empty."""
        import shutil

        with interrupts.signals_deferred():
            if self._stage is not None:
                shutil.rmtree(self._stage, ignore_errors=True)
            remove_empty_dirs(self._created)
            _UNFINISHED.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.abort()  # after a commit only the (already removed) staging folder; otherwise everything
        return False

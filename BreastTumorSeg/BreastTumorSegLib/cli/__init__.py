"""``breasttumorseg`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)`` (adds its parser and sets ``func``). ``func(args)`` returns the exit code.
Errors raised on purpose (:class:`BreastTumorSegError`) become one line on stderr and exit code 2;
SIGINT (Ctrl-C) exits with 130, SIGTERM with 143 (:mod:`..core.interrupts`).
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from .. import __version__
from ..core import interrupts
from ..core.memory import return_freed_memory
from ..core.errors import BreastTumorSegError, Cancelled

# Sub-command modules, in the order `--help` lists them.
COMMANDS = [
    "segment",
    "classify",
    "batch",
    "followup",
    "demo",
    "evaluate",
    "reader-study",
    "study",
    "dicom-list",
    "kinetics",
    "refine",
    "phantom",
    "train",
    "models",
]


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line naming the option and where to look, exit code 2."""

    def error(self, message: str):
        usage = f"see the usage with `{self.prog} --help`"
        if "Fix:" in message:  # the shared validators (cli/_common.py) name their own fix
            message = f"{message.rstrip('.')}; {usage}"
        else:
            message += f". Fix: {usage}"
        self.exit(2, f"{self.prog}: error: {message}.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="breasttumorseg",
        description="Breast tumor segmentation in DCE-MRI (BreastTumorSeg engine).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".{name.replace('-', '_')}", __name__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code: 0 done, 2 refused input (one line on stderr),
    130 / 143 interrupted by SIGINT / SIGTERM (nothing of the interrupted step written; a signal
    that arrives once the outputs are committed is reported and exits 0).

    Called with ``argv=None`` (the installed command, ``python -m``) both signals are ignored once
    the command returns; called with a list (tests, scripts) the previous handlers come back."""
    def work():
        if argv is None:
            # ITK's own warnings go straight to stderr from C++ ("... has unexpected scales in sform",
            # "Non-orthogonal direction matrix coerced to orthogonal"): a refused file already gets our
            # one line naming it, and a file that is read is read as before. Only the installed command
            # silences them; Slicer (which imports the library) keeps its own setting. Imported here,
            # inside the signal handlers: a SIGINT/SIGTERM during SimpleITK's (and numpy's) import
            # must exit 130/143 like any other moment of the run, not with a traceback.
            import SimpleITK as sitk

            sitk.ProcessObject.SetGlobalWarningDisplay(False)
        args = build_parser().parse_args(argv)
        return args.func(args)

    if argv is None:
        # The installed command: pydicom's notes on files it repairs while reading ("Expected
        # implicit VR, but found explicit VR") are not for the user; a file that cannot be used
        # gets our own one-line error.
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
    code = guarded(work, restore=argv is not None)
    if argv is None and interrupts.received() is not None:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """Leave the interrupted command without the interpreter's shutdown.

    By now the outputs are committed or removed and every Python worker thread is joined, but a
    native library's threads (ITK's pool, BLAS) can still be inside a call the signal cut short;
    the interpreter's finalization then aborted about 1 run in 100 of the kinetics stress test
    (``Fatal Python error: PyThreadState_Get ... finalizing``, exit -6 instead of 130/143).
    Only the installed command does this, never an in-process ``main([...])``."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def guarded(work, restore: bool = True) -> int:
    """Run ``work()`` with the command line's exit codes and messages (see :func:`main`); the
    headless Slicer script runs its work through this too."""
    return_freed_memory()
    with interrupts.handle_signals(restore=restore):
        try:
            return _run(work)
        except Cancelled as exc:
            print(f"breasttumorseg: {exc}", file=sys.stderr)
            return 130
        except BreastTumorSegError as exc:
            if interrupts.received() is None:
                print(f"breasttumorseg: error: {' '.join(str(exc).split())}", file=sys.stderr)
                return 2
            return _interrupted()
        except KeyboardInterrupt:
            return _interrupted()
        except BaseException as exc:  # a signal can surface as another error (e.g. an interrupted import)
            if interrupts.received() is None or isinstance(exc, SystemExit):
                raise
            return _interrupted()


def _run(work) -> int:
    """``work()``, then every worker thread joined (no thread may run while the interpreter shuts
    down) and every staged output not committed removed, on the way out of an error or a signal too."""
    try:
        return int(work() or 0)
    finally:
        interrupts.join_worker_threads()
        from ..io.atomic import abort_unfinished_outputs

        abort_unfinished_outputs()


def _interrupted() -> int:
    signum = interrupts.received() or signal.SIGINT
    name = interrupts.signal_name(signum)
    if interrupts.was_committed():
        print(f"breasttumorseg: {name} received after the outputs were written; they are complete", file=sys.stderr)
        return 0
    print(f"breasttumorseg: interrupted by {name}; nothing of the unfinished step was written", file=sys.stderr)
    return interrupts.exit_code(signum)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

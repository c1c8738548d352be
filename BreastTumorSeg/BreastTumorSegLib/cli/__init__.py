"""``breasttumorseg`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)`` (adds its parser and sets ``func``). ``func(args)`` returns the exit code.
Errors raised on purpose (:class:`BreastTumorSegError`) become one line on stderr and exit code 2;
Ctrl-C exits with 130.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..core.errors import BreastTumorSegError, Cancelled

# Sub-command modules, in the order `--help` lists them.
COMMANDS = [
    "segment",
    "demo",
    "evaluate",
    "reader-study",
    "dicom-list",
    "kinetics",
    "phantom",
    "train",
    "models",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="breasttumorseg",
        description="Breast tumor segmentation in DCE-MRI (BreastTumorSeg engine).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".{name.replace('-', '_')}", __name__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Cancelled as exc:
        print(f"breasttumorseg: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("breasttumorseg: interrupted; no output was written", file=sys.stderr)
        return 130
    except BreastTumorSegError as exc:
        print(f"breasttumorseg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

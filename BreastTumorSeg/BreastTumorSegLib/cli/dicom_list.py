"""``breasttumorseg dicom-list DIR``: what the DICOM reader finds, before anything is segmented.

Prints every series (number, description, orientation, matrix, role and why it is used or
ignored), then the DCE phases in the order they will be loaded, with their times in minutes
after the first phase (and after the contrast injection when the scanner recorded it). Only
headers are read. No patient identifier is printed: series are named by number and description.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.errors import InputError
from ..io.safety import check_input_path
from ._common import path_arg


def _series_arg(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def register(sub) -> None:
    p = sub.add_parser(
        "dicom-list", help="list the series of a DICOM folder and the DCE phases found",
        description="Read the DICOM headers below DIR (recursively) and print the series found, the role given "
                    "to each (DCE phase or why it is ignored), and the DCE phase order with acquisition times. "
                    "Run this before `segment DIR` to check what will be segmented.")
    p.add_argument("folder", type=path_arg, metavar="DIR")
    p.add_argument("--series", type=_series_arg, nargs="+", default=None, metavar="N",
                   help="use exactly these series (numbers or SeriesInstanceUIDs) as the DCE phases, "
                        "including ones the reader would ignore")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no paths, UIDs or patient data)")
    p.set_defaults(func=run)


def run(args, stream=None) -> int:
    from ..io.dicom.reader import describe_plan, describe_scan, plan_dce, scan_folder

    stream = stream or sys.stdout
    folder: Path = args.folder
    check_input_path(folder, "DICOM folder", kind="dir")
    scan = scan_folder(folder)
    try:
        plan = plan_dce(scan, args.series)
    except InputError:
        if not args.json and scan.frames:
            print(describe_scan(scan), file=stream)
            print("", file=stream)
        raise
    if args.json:
        print(json.dumps(plan.summary(), indent=2), file=stream)
    else:
        print(describe_plan(plan), file=stream)
    return 0

"""Helpers shared by the sub-commands: terminal progress, the argparse ``type=`` validators of
values several commands take (threshold, device, points, number lists, seeds: the rules are
:mod:`..core.values`), and the checks before an exam is read."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..core import values
from ..core.errors import InputError


def _arg_type(convert, name: str):
    """An argparse ``type=`` from a :mod:`..core.values` check: its InputError becomes argparse's
    one-line error (``argument --x: <problem>. Fix: <fix>``, exit code 2)."""
    def arg_type(text: str):
        try:
            return convert(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(f"{exc.problem}. Fix: {exc.fix}") from None

    arg_type.__name__ = name  # argparse names the type in some messages
    return arg_type


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{text!r} is not a number", fix="give a number, e.g. 0.5") from None


def _nonempty(text: str) -> str:
    if not text.strip():  # Path("") is the current folder: an unset shell variable would write or read there
        raise InputError("the path is empty", fix="give a file or folder name (an unset shell variable gives '')")
    return text


path_arg = _arg_type(lambda t: Path(_nonempty(t)), "path")
input_arg = _arg_type(_nonempty, "path")  # exam inputs stay text: a manifest's 'a;b' phase lists are split later
threshold_arg = _arg_type(lambda t: values.check_threshold(_float(t)), "threshold")
device_arg = _arg_type(values.check_device_name, "device")
point_arg = _arg_type(values.parse_point, "point")
numbers_arg = _arg_type(lambda t: list(values.parse_numbers(t, example="0,1.5,3,4.5")), "numbers")
box_arg = _arg_type(lambda t: list(values.parse_numbers(t, 6, example="-20,-20,-10,20,20,10")), "box")
seeds_arg = _arg_type(values.parse_seeds, "seeds")


def _one_seed(text: str) -> int:
    seeds = values.parse_seeds(text)
    if len(seeds) != 1:
        raise InputError(f"{text!r} is {len(seeds)} seeds", fix="give one seed, a whole number of 0 or more, e.g. 3000")
    return seeds[0]


seed_arg = _arg_type(_one_seed, "seed")


def add_exam_arguments(p: argparse.ArgumentParser) -> None:
    """The one exam a command reads and where its files go, the same for every such command
    (segment, kinetics, classify, refine): INPUT..., --output, --times, --case-id, --series."""
    p.add_argument("inputs", nargs="+", metavar="INPUT", type=input_arg)
    p.add_argument("--output", "-o", required=True, type=path_arg, help="output folder")
    p.add_argument("--times", type=numbers_arg, default=None,
                   help="acquisition times in minutes, one per phase, e.g. 0,1.5,3,4.5 (overrides <case>.json)")
    p.add_argument("--case-id", default=None, help="name for the output files (default: from the input names)")
    p.add_argument("--series", nargs="+", default=None, metavar="N",
                   help="DICOM input: series numbers or UIDs to use as the phases (see `breasttumorseg dicom-list`)")


class TerminalProgress:
    """Progress callback that draws one updating line on stderr (plain lines when not a TTY)."""

    def __init__(self, stream=None, min_interval: float = 0.5):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = min_interval
        self._last = 0.0
        self._last_stage = None

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        new_stage = stage != self._last_stage
        if not new_stage and now - self._last < self.min_interval and fraction < 1.0:
            return
        self._last = now
        self._last_stage = stage
        bar_len = 24
        filled = int(round(bar_len * fraction))
        line = f"[{'#' * filled}{'.' * (bar_len - filled)}] {100 * fraction:5.1f}%  {message or stage}"
        if self.tty:
            self.stream.write("\r" + line[:100].ljust(100))
            if fraction >= 1.0:
                self.stream.write("\n")
        else:  # a log reads one line per update (the Slicer panel reads `--progress json` events)
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def check_exam_command(args) -> None:
    """What `segment` and `kinetics` check before reading anything: the output folder first
    (writable, not an input folder, room for outputs about twice the inputs' size), the case id,
    that every input is a regular file or folder, and a fixed case id's outputs (not existing
    unless --overwrite, never an input file)."""
    from ..io.safety import check_case_id, check_input_path, check_output_dir, input_bytes

    check_output_dir(args.output, args.inputs, need_bytes=2 * input_bytes(args.inputs) + (16 << 20))
    check_case_id(args.case_id)
    for path in args.inputs:
        check_input_path(path, "input", kind="any")


def check_outputs(args, case_id: str, names) -> None:
    """After loading: the case id (it may come from the files) and where its outputs would go."""
    from ..io.atomic import check_no_overwrite
    from ..io.safety import check_case_id, check_not_inputs

    check_case_id(case_id, "case id (from the input names; set it with --case-id)")
    paths = [args.output / n for n in names]
    check_not_inputs(paths, args.inputs)
    check_no_overwrite(paths, args.overwrite)


def warn_about_exam(exam, stream=None) -> None:
    """The DICOM reader's warnings (e.g. two exports of one study merged, phases out of order) on
    stderr, as `dicom-list` shows them: `segment` and `kinetics` go on, the user is told."""
    for warning in (exam.metadata.get("dicom") or {}).get("warnings", []):
        print(f"breasttumorseg: warning: {warning}", file=stream or sys.stderr)

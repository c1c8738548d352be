"""The panel's engine run in a background process: command line, temporary exam, outcome.

:func:`start_run` hands the phases to the engine CLI (:func:`engine_command`) by path when it can
read their files as they are, otherwise exports the exam (:func:`export_exam`) to a temporary
folder, and starts it as an :class:`~.process.EngineProcess` so the GUI stays responsive and Cancel
can kill it. :func:`finished_state` turns a run that has ended into its ``done`` state or one
readable :class:`EngineFailed` line naming the volumes the user sees (not the temporary files).
Loading the output folder into the scene is :meth:`~.logic.SegmentationLogic.finish_background`'s.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..core.exam import DCEExam, MAX_PHASES, MIN_PHASES
from ..models.registry import DEFAULT_MODEL
from .phases import Phase, exam_from_phases, first_case_id, source_files
from .process import EngineProcess, ProcessState


def engine_python() -> str:
    """The Python that runs the engine: Slicer's ``PythonSlicer`` inside Slicer, else this one."""
    exe_dir = Path(sys.executable).parent
    for name in ("PythonSlicer", "PythonSlicer.exe"):
        if (exe_dir / name).exists():
            return str(exe_dir / name)
    return shutil.which("PythonSlicer") or sys.executable


def engine_command(exam_dir, out_dir: str | os.PathLike, model: str = DEFAULT_MODEL,
                   device: str = "auto", threshold: float | None = None, python: str | None = None,
                   extra: Sequence[str] = ()) -> list[str]:
    """Command line of ``breasttumorseg segment`` for one exam folder, or a list of phase files in
    acquisition order (see :func:`engine_environment`)."""
    inputs = [str(exam_dir)] if isinstance(exam_dir, (str, os.PathLike)) else [str(p) for p in exam_dir]
    cmd = [python or engine_python(), "-c", "import sys; from BreastTumorSegLib.cli import main; sys.exit(main())",
           "segment", *inputs, "--output", str(out_dir), "--model", model, "--device", device, "--overwrite",
           "--progress", "json"]
    if threshold is not None:
        cmd += ["--threshold", f"{float(threshold):.6g}"]
    return cmd + list(extra)


def engine_environment(base: dict | None = None) -> dict:
    """Environment for the engine process: this checkout's package importable, one line per update."""
    env = dict(os.environ if base is None else base)
    lib_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([lib_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


class EngineFailed(RuntimeError):
    """The background engine run failed or was cancelled; the message is one readable line."""


@dataclass
class BackgroundRun:
    """A running (or finished) engine process and what is needed to load its results."""

    process: EngineProcess
    workdir: Path
    out_dir: Path
    case_id: str
    reference_node: object
    exam: DCEExam | None  # None when the phases were handed to the engine by file
    # Exported temporary file -> the volume node it came from, so messages name what the user sees.
    exported: dict[str, str] = field(default_factory=dict)

    def user_message(self, message: str) -> str:
        """*message* with the temporary files of an exported exam replaced by the volumes' names."""
        for path, name in self.exported.items():
            message = message.replace(path, f"volume '{name}'")
        return message

    def cleanup(self) -> None:
        """Remove the temporary exam and result files (the process must have ended)."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def export_exam(exam: DCEExam, folder: str | os.PathLike) -> Path:
    """Write *exam* as ``<case>_0000.nrrd``, ... (+ ``<case>.json`` with times) for the engine CLI."""
    from ..io.atomic import write_image, write_json

    from ..io.safety import check_output_dir

    folder = check_output_dir(folder, option="export folder")  # a file, a dangling link, /proc: one InputError
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(exam.phases):
        write_image(folder / f"{exam.case_id}_{i:04d}.nrrd", img, compress=False)
    if exam.times_min is not None:
        write_json(folder / f"{exam.case_id}.json", {"acquisition_times_min": exam.times_min})
    return folder


def start_run(phases: Sequence[Phase], model: str = DEFAULT_MODEL, device: str = "auto",
              threshold: float | None = None, times_min: Sequence[float | None] | None = None,
              register: bool = True, case_id: str | None = None, python: str | None = None,
              workdir: str | os.PathLike | None = None, extra: Sequence[str] = (),
              registered_phases: bool = False) -> BackgroundRun:
    """Start the engine CLI on the exam in the background.

    Phases loaded from image files the engine reads, and unchanged since, are handed to it by
    path (nothing is written); otherwise the exam is exported to a temporary folder. Poll
    ``run.process`` from a timer; call
    :meth:`~.logic.SegmentationLogic.finish_background` when it has ended.
    ``registered_phases`` asks the engine for the motion-corrected phases too (one more full
    copy of the exam written and read: off by default), loaded as a Sequence.
    """
    case_id = case_id or first_case_id(phases)
    files = source_files(phases)
    exam = None
    if files is None:
        exam = exam_from_phases(phases, case_id, times_min)  # the engine command checks the signal (load_exam)
    elif not MIN_PHASES <= len(phases) <= MAX_PHASES:
        exam_from_phases(phases, case_id, times_min)  # raises the readable count error
    work = Path(tempfile.mkdtemp(prefix="BreastTumorSeg-", dir=workdir))
    try:
        out_dir = work / "result"
        flags = ["--reading-images", "--classify"] + ([] if register else ["--no-register"]) + list(extra)
        if registered_phases and register:
            flags.append("--registered-phases")
        if exam is not None:
            inputs = export_exam(exam, work / "exam")
        else:
            inputs = files
            flags += ["--case-id", case_id]
            times = list(times_min) if times_min is not None else [ph.time_min for ph in phases]
            if all(t is not None for t in times):
                flags += ["--times", ",".join(f"{float(t):.6g}" for t in times)]
        cmd = engine_command(inputs, out_dir, model, device, threshold, python, flags)
        process = EngineProcess(cmd, env=engine_environment(), cwd=str(work)).start()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    exported = {} if exam is None else {
        str(work / "exam" / f"{exam.case_id}_{i:04d}.nrrd"): ph.name for i, ph in enumerate(phases)}
    return BackgroundRun(process, work, out_dir, case_id, phases[0].node, exam, exported)


def finished_state(run: BackgroundRun) -> ProcessState:
    """The state of a run that has ended and reported its files; :class:`EngineFailed` with the
    engine's one-line message when it failed or was cancelled, :class:`RuntimeError` while it runs."""
    state = run.process.poll()
    if state.running:
        raise RuntimeError("the engine is still running; cancel it or wait for it to finish")
    if not state.succeeded:
        raise EngineFailed(run.user_message(run.process.error_message()))
    if state.files is None:
        raise EngineFailed("the segmentation engine ended without reporting its results "
                           f"(last output: {(run.process.lines or ['none'])[-1][:200]}). Fix: run it again; "
                           "if it persists, report the Python console's log")
    return state

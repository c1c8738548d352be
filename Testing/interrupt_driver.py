"""The command line with SIGINT or SIGTERM sent to itself at a named moment, for Testing/test_interrupts.py.

    python interrupt_driver.py MOMENT SIGNAL STAGES_FILE -- COMMAND ARGS...

MOMENT: ``stage:NAME`` (as a progress stage NAME starts; the first time), ``before-commit`` (as the staged outputs
start to move into place), ``in-commit`` (while they move, once all are moved: the signal is held
back until the commit ends) or ``none`` (no signal). Every run appends the stages it started to
STAGES_FILE, one per line, and the line ``(outputs committed)`` when its outputs are in place. Then the process runs ``BreastTumorSegLib.cli.main()`` exactly as
``python -m BreastTumorSegLib.cli`` does, so the moment of the signal, and the outcome expected,
do not depend on the machine's speed.
"""
import os
import signal
import sys
from contextlib import contextmanager

from BreastTumorSegLib.core import interrupts
from BreastTumorSegLib.core.progress import Reporter
from BreastTumorSegLib.io.atomic import StagedOutputs


COMMITTED = "(outputs committed)"


def _send(signum: int) -> None:
    os.kill(os.getpid(), signum)


def install(moment: str, signum: int, stages_file: str) -> None:
    stage = Reporter.stage

    @contextmanager
    def stage_and_signal(self, name):
        with open(stages_file, "a") as fh:
            fh.write(name + "\n")
        if moment == f"stage:{name}":
            _send(signum)
        with stage(self, name) as reporter:
            yield reporter

    Reporter.stage = stage_and_signal
    if moment == "before-commit":
        commit = StagedOutputs.commit

        def signal_then_commit(self):
            _send(signum)
            return commit(self)

        StagedOutputs.commit = signal_then_commit
    note_commit = interrupts.note_commit

    def commit_and_signal():
        with open(stages_file, "a") as fh:
            fh.write(COMMITTED + "\n")
        if moment == "in-commit":
            _send(signum)
        note_commit()

    interrupts.note_commit = commit_and_signal


if __name__ == "__main__":
    moment, signame, stages_file, dashes, *command = sys.argv[1:]
    assert dashes == "--", sys.argv
    install(moment, getattr(signal, signame), stages_file)
    sys.argv = ["breasttumorseg", *command]
    from BreastTumorSegLib.cli import main

    sys.exit(main())

"""A reader's session in its own process, for Testing/test_study.py (kill -9, concurrent readers).

    python study_worker.py STUDY READER edit-loop      # edit + autosave forever; prints "edit N T" per edit
    python study_worker.py STUDY READER read-all       # reads every case: edits, saves, submits

In ``edit-loop`` the mask after edit N holds exactly N voxels, so the parent can tell which edit
a saved version holds. Exit code 3: the reader's lock is held by another session.
"""
import sys
import time

import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.study.session import ReaderSession
from BreastTumorSegLib.study.storage import StudyLockedError


def mask_with(n: int, like: sitk.Image) -> sitk.Image:
    arr = np.zeros(sitk.GetArrayFromImage(like).shape, np.uint8)
    arr.reshape(-1)[:n] = 1
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(like)
    return img


def main(study: str, reader: str, mode: str) -> int:
    try:
        session = ReaderSession.open_study(study, reader)
    except StudyLockedError as exc:
        print(f"locked: {exc}", flush=True)
        return 3
    view = session.open()
    if mode == "edit-loop":
        like = view.starting_mask()
        n = int(sitk.GetArrayFromImage(like).sum())
        print(f"resumed {n}", flush=True)
        while True:
            n += 1
            mask = mask_with(n, like)
            session.activity(edit=True)
            print(f"edit {n} {time.time():.3f}", flush=True)
            session.maybe_autosave(mask)
            time.sleep(0.01)
    for i in range(session.total):
        mask = mask_with(10 + i, view.starting_mask())
        session.activity(edit=True)
        session.save(mask)
        session.submit(mask)
        print(f"submitted {view.label} {view.arm}", flush=True)
        view = session.next()
        if view is None:
            break
    session.end()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

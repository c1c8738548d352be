"""io: exams in, results out.

NIfTI/NRRD images (:mod:`.images`), exams from phase files and 4D files (:mod:`.files`), atomic
writes and file hashes (:mod:`.atomic`), Slicer's ``.seg.nrrd`` written
without Slicer (:mod:`.segnrrd`), and the DICOM reader, header parsing, phase ordering and DICOM
SEG writer (:mod:`.dicom`). Uses only :mod:`..core`.
"""
from .files import load_exam  # the public entry point, as in the README

__all__ = ["load_exam"]

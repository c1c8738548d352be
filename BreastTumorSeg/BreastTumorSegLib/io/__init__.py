"""io: exams in, results out.

NIfTI/NRRD phase files and 4D files (:mod:`.files`), atomic writes, and the DICOM reader, header
parsing, phase ordering and DICOM SEG writer (:mod:`.dicom`). Uses only :mod:`..core`.
"""
from .files import load_exam  # noqa: F401  (the public entry point, as in the README)

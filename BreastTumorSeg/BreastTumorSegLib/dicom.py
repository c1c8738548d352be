"""DICOM input (placeholder until the DICOM reader lands; see issue 4)."""
from __future__ import annotations

from pathlib import Path

from .errors import InputError


def folder_has_dicom(folder: Path) -> bool:
    for p in Path(folder).rglob("*"):
        if p.is_file():
            try:
                with open(p, "rb") as fh:
                    fh.seek(128)
                    if fh.read(4) == b"DICM":
                        return True
            except OSError:
                continue
    return False


def load_dicom_exam(folder, times_min=None, case_id=None):
    raise InputError("reading DICOM folders is not supported yet", folder,
                     "convert the series to NIfTI (e.g. with dcm2niix) and name them <case>_0000.nii.gz, ...")

"""io.dicom: DCE exams from DICOM folders of any vendor layout, and DICOM SEG out.

:mod:`.scan` reads a folder's files and :mod:`.headers` turns each into per-frame records (values
via :mod:`.elements`, dates and times via :mod:`.times`); :mod:`.phases` orders them into phases
with times (stacks and roles in :mod:`.stacks`, the temporal split in :mod:`.volumes`, grids in
:mod:`.geometry`); :mod:`.reader` builds the exam, :mod:`.seg` writes the segmentation with highdicom.
"""

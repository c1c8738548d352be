"""io.dicom: DCE exams from DICOM folders of any vendor layout, and DICOM SEG out.

:mod:`.headers` turns files into per-frame records, :mod:`.phases` orders them into phases with
times, :mod:`.reader` builds the exam, :mod:`.seg` writes the segmentation with highdicom.
"""

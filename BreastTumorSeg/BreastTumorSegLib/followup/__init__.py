"""Treatment response across visits (issue 31): the same patient's exams, baseline first.

:mod:`.visits` (identity, dates, phases of each visit), :mod:`.register` (each later visit to the
baseline: rigid then bounded affine on the pre-contrast images of the breast region),
:mod:`.match` (lesions followed as tracks in the baseline frame, Hungarian assignment),
:mod:`.response` (per-lesion and per-exam table, RECIST 1.1), :mod:`.run` (the whole follow-up and
its atomic outputs), :mod:`.picture` (the PNG).
"""

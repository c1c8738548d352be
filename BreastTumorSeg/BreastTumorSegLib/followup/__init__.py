"""Treatment response across visits (issue 31): the same patient's exams, baseline first.

:mod:`.visits` (identity, dates, phases of each visit), :mod:`.register` (each later visit to the
baseline: rigid then bounded affine on the pre-contrast images of the breast region),
:mod:`.fragments` (the segmentation's pieces of one tumor, joined by enhancing tissue, are one lesion; opt-in),
:mod:`.prior` (each known lesion looked for where it was: its enhancing remnant, its extent),
:mod:`.lookback` (a lesion first seen later looked for in the baseline before it is called new),
:mod:`.newfind` (a new lesion found where a later visit enhances and no earlier visit did),
:mod:`.measure` (every track measured by one outline rule at every visit, inside its own region),
:mod:`.match` (lesions followed as tracks in the baseline frame: by extent, then Hungarian assignment),
:mod:`.diameters` (a track's diameter at a visit over all its lesions together),
:mod:`.response` (per-lesion and per-exam table, RECIST 1.1), :mod:`.run` (the whole follow-up and
its atomic outputs), :mod:`.picture` (the PNG).
"""

# Follow-up measures the I-SPY FTV change and RECIST on the plain FTV mask by default: its numbers
# (README, bench_followup.py) were measured with it, and the whole-tumor outline of the segmentation
# default (ftv-outline) makes a small remnant's longest diameter longer (a shrink to 15 % read as SD
# instead of PR in test_followup); with the baseline prior on seeds 6000-6009 (ellipse, heterogeneous)
# it got 21/30 RECIST categories right against ftv's 25/30. Any model: model=... / --model.
#
# OUTLINE_FIND (issue 31, fu21; off until its held-out rule passes, docs/decisions/followup-outline-find-issue31.md):
# segment the visits with ftv-outline (it finds and matches tumors ftv's neighbour rule and opening lose) and
# measure each lesion's volume from its voxels in the plain FTV mask (measure.MeasureSettings.ftv_seeds).
# Read at import: set it before importing the follow-up, or pass model= and MeasureSettings(ftv_seeds=True).
OUTLINE_FIND = False
FOLLOWUP_MODEL = "ftv-outline" if OUTLINE_FIND else "ftv"

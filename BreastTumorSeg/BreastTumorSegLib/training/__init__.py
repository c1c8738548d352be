"""training: making models — one trainer for every network, datasets and synthetic phantoms.

:mod:`.trainer` (one config, one entry point), :mod:`.datasets` (folders, folds, cache) and
:mod:`.phantom` (synthetic DCE exams with exact ground truth). Uses models and preprocess; nothing
outside the command line imports it.
"""

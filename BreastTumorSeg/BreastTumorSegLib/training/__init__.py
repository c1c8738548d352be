"""training: making models — one trainer for every network, datasets and synthetic phantoms.

:mod:`.trainer` (one config (:mod:`.config`), one patch sampler (:mod:`.patches`), one validation
(:mod:`.validation`), one model card writer (:mod:`.modelcard`); the entry point is ``breasttumorseg
train``; the demo U-Net recipe is ``configs/unet-demo.json``), :mod:`.datasets` (folders, folds, the one cache) and
:mod:`.phantom` (synthetic DCE exams with exact ground truth). Uses core, io, preprocess, models
and evaluation; nothing outside the command line imports it.
"""

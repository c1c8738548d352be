"""A stub of an outlining segmenter (``outline_pe`` > 0, as ``ftv-outline``: plain "ftv" gets no kept-lesion step)
for the kept-lesion step tests: its kinetic maps are *pe* as the early PE and ones elsewhere ("valid", ...)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np


class OutliningSegmenter:
    settings = SimpleNamespace(outline_pe=40.0)

    def __init__(self, pe: np.ndarray):
        self.pe = pe

    def kinetic_maps(self, exam):
        return self

    def array(self, name):
        return self.pe if name == "pe_early" else np.ones(self.pe.shape, np.uint8)

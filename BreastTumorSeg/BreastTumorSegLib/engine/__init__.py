"""engine: the end-to-end run — exam in, segmentation, probability map and lesion table out.

:mod:`.pipeline` chains preprocessing, a model and :mod:`.postprocess`; it never imports Slicer.
"""

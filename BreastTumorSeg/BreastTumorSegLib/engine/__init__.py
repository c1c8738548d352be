"""engine: the end-to-end run — exam in, segmentation, probability map and lesion table out.

:mod:`.pipeline` chains preprocessing, a model and :mod:`.postprocess`, as one
:class:`.settings.SegmentSettings` says; it never imports Slicer.
"""

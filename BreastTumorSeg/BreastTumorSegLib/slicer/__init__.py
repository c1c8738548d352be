"""slicer: the Qt-free side of the 3D Slicer module.

The MRML bridge (:mod:`.mrml_bridge`, the only place that touches Slicer nodes), the module logic
(:mod:`.logic`) and the background engine process (:mod:`.process`). :mod:`.gui` needs the Slicer
application (widget, parameter node, dependency installer) and is imported only by ``BreastTumorSeg.py``.
"""

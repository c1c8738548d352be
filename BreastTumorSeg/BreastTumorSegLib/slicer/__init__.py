"""slicer: the Qt-free side of the 3D Slicer module.

The MRML bridge (:mod:`.mrml_bridge`, the only place that touches Slicer nodes), the module logic
(:mod:`.logic`, the one entry point) with its parts: the exam's phases (:mod:`.phases`), the engine
run in a background process (:mod:`.background`, over :mod:`.process`) and a result's kinetics
(:mod:`.kinetics_view`). :mod:`.gui` needs the Slicer application (widget, parameter node,
dependency installer) and is imported only by ``BreastTumorSeg.py``.
"""

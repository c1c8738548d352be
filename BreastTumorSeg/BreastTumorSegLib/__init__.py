"""BreastTumorSegLib: the Qt-free, Slicer-free engine of the BreastTumorSeg extension.

Segments breast tumors in dynamic contrast-enhanced MRI. Everything here runs in plain Python,
under ``Slicer --python-script`` and inside the Slicer GUI alike. Images are SimpleITK images
and keep their geometry (origin, spacing, direction) across every stage.
"""
__version__ = "0.1.0"

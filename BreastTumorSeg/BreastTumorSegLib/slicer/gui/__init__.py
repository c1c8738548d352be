"""slicer.gui: the parts that need the running Slicer application and Qt.

The panel widget, the parameter node and the dependency installer. Only ``BreastTumorSeg.py``
imports them; they stay thin and hold no logic.
"""

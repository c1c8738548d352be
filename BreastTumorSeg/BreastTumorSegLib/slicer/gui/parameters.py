"""The module's parameter node: every choice on the panel, saved with the scene.

Only importable inside Slicer (``slicer.parameterNodeWrapper`` is part of the application, not
of the ``slicer-core`` wheel). Fields whose widget carries a ``SlicerParameterName`` property in
``Resources/UI/BreastTumorSeg.ui`` are bound by ``connectGui``; the others (the model list, the
checked phase and reference volumes, the edited phase times) are synchronised by
the panel (:mod:`.widget`, :mod:`.phase_table`) because their widgets have no standard connector.
"""
from __future__ import annotations

from typing import Annotated, Union

from slicer import (vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLSequenceNode,
                    vtkMRMLTableNode)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from ...core import values
from ...models.registry import DEFAULT_MODEL

INPUT_TYPES = ["Volumes", "Sequence"]
DEVICES = list(values.DEVICES)  # the same names the command line and the engine take


@parameterNodeWrapper
class BreastTumorSegParameterNode:
    """Inputs, model settings, output nodes and comparison choices of the BreastTumorSeg panel."""

    # Inputs: a Sequence node, or scalar volume nodes (one per phase) in the order shown in the table.
    inputType: Annotated[str, Choice(INPUT_TYPES)] = "Volumes"
    inputSequence: Union[vtkMRMLSequenceNode, vtkMRMLScalarVolumeNode]  # or a MultiVolume (a scalar volume)
    phaseVolumes: list[vtkMRMLScalarVolumeNode]
    # Phase times in minutes as confirmed or edited in the table ("0, 1.5, 3"; empty: as guessed).
    phaseTimesMin: str = ""
    # Model
    model: str = DEFAULT_MODEL
    device: Annotated[str, Choice(DEVICES)] = "auto"
    useModelThreshold: bool = True
    threshold: Annotated[float, WithinRange(0.01, 0.99)] = 0.5
    motionCorrection: bool = True
    # Outputs (reused on every run)
    outputSegmentation: vtkMRMLSegmentationNode
    outputProbability: vtkMRMLScalarVolumeNode
    outputLesionTable: vtkMRMLTableNode
    outputSubtraction: vtkMRMLScalarVolumeNode
    outputBreastMask: vtkMRMLScalarVolumeNode  # the lesion gate, for re-thresholding without the model
    outputRegisteredPhases: vtkMRMLSequenceNode  # motion-corrected phases, when asked for
    # Comparison with readers
    referenceSegmentations: list[vtkMRMLSegmentationNode]
    comparisonTable: vtkMRMLTableNode

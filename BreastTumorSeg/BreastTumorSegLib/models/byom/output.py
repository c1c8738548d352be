"""What a foreign model (nnU-Net folder, MONAI bundle) hands back to the engine: its tumor
probability and its own label map as images on the exam's reference grid."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ...core.exam import DCEExam
from ...core.progress import Reporter


def on_reference(exam: DCEExam, prob: np.ndarray, tumor: np.ndarray) -> tuple[sitk.Image, sitk.Image]:
    """``(probability, label)`` arrays (z, y, x on the reference grid) as images with its geometry."""
    images = []
    for arr in (np.clip(prob, 0.0, 1.0).astype(np.float32), tumor.astype(np.uint8)):
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        img.CopyInformation(exam.reference)
        images.append(img)
    return images[0], images[1]


class LabelledSegmenter:
    """Mixin: a segmenter whose :meth:`predict_with_label` gives the model's own label map too;
    :meth:`predict` is its probability half (what the engine's post-processing thresholds)."""

    def predict(self, exam: DCEExam, breast_mask: sitk.Image | None, reporter: Reporter,
                device: str = "auto", **options) -> sitk.Image:
        return self.predict_with_label(exam, breast_mask, reporter, device, **options)[0]

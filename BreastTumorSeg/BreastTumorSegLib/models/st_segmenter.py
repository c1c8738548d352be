"""Segmenter for the spatial-temporal transformer (:mod:`.nets.st_transformer`).

The generic :class:`~.netmodel.NetworkSegmenter` calls ``net(x)``: the transformer then
assumes evenly spaced phases. This segmenter also passes the exam's acquisition times (the
network embeds each phase by its time). Gating by a learned whole-breast mask, as Zhang et al.
did, is the pipeline's (``segment_exam(..., breast_model=...)`` or ``"breast_model"`` in the
card), the same for every model.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.exam import DCEExam
from ..core.imageutil import resample_to
from .network import NetworkSegmenter
from ..core.progress import Reporter


class STSegmenter(NetworkSegmenter):
    """Spatial-temporal transformer fed with the exam's phase times."""

    def predict(self, exam: DCEExam, breast_mask: sitk.Image | None, reporter: Reporter,
                device: str = "auto", **options) -> sitk.Image:
        from .inference import select_device
        from ..training.trainer import predict_volume

        x, mg, crop = self.model_inputs(exam, breast_mask)
        times = np.asarray(exam.effective_times()[1:], np.float32)
        reporter.update(0.0, f"transformer: {len(times)} post-contrast phase(s)")
        prob_crop = predict_volume(self.net, x, select_device(device), times)
        reporter.update(1.0, "network done")
        full = np.zeros(mg.inputs.shape[1:], np.float32)
        full[crop] = prob_crop
        prob = sitk.GetImageFromArray(full)
        prob.CopyInformation(mg.grid)
        return sitk.Clamp(resample_to(prob, exam.reference, sitk.sitkLinear), sitk.sitkFloat32, 0.0, 1.0)

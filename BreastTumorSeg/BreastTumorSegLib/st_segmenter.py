"""Segmenter for the spatial-temporal transformer (:mod:`.nets.st_transformer`).

The generic :class:`~.netmodel.NetworkSegmenter` calls ``net(x)``: the transformer then
assumes evenly spaced phases. This segmenter also passes the exam's acquisition times (the
network embeds each phase by its time) and, when the card names one under
``"breast_model"``, multiplies the probability by a learned whole-breast mask
(:mod:`.breastmask_model`), as Zhang et al. did to remove false positives outside the breasts.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .exam import DCEExam
from .imageutil import resample_to
from .netmodel import NetworkSegmenter
from .progress import Reporter


class STSegmenter(NetworkSegmenter):
    """Spatial-temporal transformer with the exam's phase times and optional breast gating."""

    _breast = None

    def breast_model(self):
        """The learned whole-breast model named by the card (loaded once), or None."""
        name = self.card.get("breast_model")
        if not name:
            return None
        if self._breast is None:
            from .breastmask_model import BreastMaskModel
            extra = [self.card_path.parent] if self.card_path is not None else None
            self._breast = BreastMaskModel.load(name, extra)
        return self._breast

    def predict(self, exam: DCEExam, breast_mask: sitk.Image | None, reporter: Reporter,
                device: str = "auto", **options) -> sitk.Image:
        from .inference import select_device
        from .trainer import predict_volume

        x, mg, crop = self.model_inputs(exam, breast_mask)
        times = np.asarray(exam.effective_times()[1:], np.float32)
        reporter.update(0.0, f"transformer: {len(times)} post-contrast phase(s)")
        prob_crop = predict_volume(self.net, x, select_device(device), times)
        reporter.update(1.0, "network done")
        full = np.zeros(mg.inputs.shape[1:], np.float32)
        full[crop] = prob_crop
        prob = sitk.GetImageFromArray(full)
        prob.CopyInformation(mg.grid)
        out = sitk.Clamp(resample_to(prob, exam.reference, sitk.sitkLinear), sitk.sitkFloat32, 0.0, 1.0)
        gate = self.breast_model()
        if gate is not None:
            out = out * sitk.Cast(gate.predict(exam.pre, device), sitk.sitkFloat32)
        return out

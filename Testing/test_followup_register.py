"""The same-patient check does not refuse a valid visit whose registration started far off
(followup/register.py, ``retry_starts``): the breast regions' centroids can disagree by tens of mm
between visits (development heterogeneous 6016: 253 against 603 mL, a start 27 mm off)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.followup.register import VisitRegistrationSettings, register_visit, registration_error_mm
from BreastTumorSegLib.preprocess.breast_region import breast_region
from BreastTumorSegLib.training.phantom.series import make_visit_series

SMALL = dict(size=(128, 96, 40), spacing=(2.4, 2.4, 4.0))


def test_a_valid_visit_started_30_mm_off_is_registered_from_another_start():
    series = make_visit_series("ellipse", 6000, n_visits=2, **SMALL)
    base, visit = series.visits[0].exam.pre, series.visits[1].exam.pre
    region0, region1 = breast_region(base)[0], breast_region(visit)[0]
    off = sitk.Image(region1)  # the visit's breast region 30 mm further anterior-posterior: a start 30 mm off
    origin = list(off.GetOrigin())
    origin[1] += 30.0
    off.SetOrigin(origin)
    with pytest.raises(InputError, match="anatomy"):  # one start: a wrong minimum, refused as another body
        register_visit(base, region0, visit, off, "visit 2", VisitRegistrationSettings(retry_starts=False))
    reg = register_visit(base, region0, visit, off, "visit 2")
    where = np.argwhere(sitk.GetArrayViewFromImage(series.visits[0].breast_mask) > 0)[::50][:, ::-1]
    points = [base.TransformIndexToPhysicalPoint([int(v) for v in q]) for q in where]
    assert reg.qa["starts_tried"] >= 2 and reg.qa["ncc_after"] > 0.9
    assert registration_error_mm(reg.transform, series.to_baseline[1], points) < 2.0
    # the visit's own region (a start close to the truth): one start, as before the retry existed
    assert register_visit(base, region0, visit, region1, "visit 2").qa["starts_tried"] == 1

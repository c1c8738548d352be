"""What the registry's network segmenters hand to the network: acquisition times reach a
phase-aware network's ``forward`` on every path (CLI, panel, batch all use the registry)."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BreastTumorSegLib.core.progress import Reporter
from BreastTumorSegLib.models.registry import get_segmenter
from BreastTumorSegLib.training.phantom import make_phantom


@pytest.fixture(scope="module")
def uneven_exam():
    # Uneven times: an evenly spaced assumption would be visibly wrong.
    ph = make_phantom(11, n_phases=4, times_min=[0.0, 1.1, 2.9, 7.4], motion_mm=0.0, size="small")
    return ph.exam, ph.breast_mask


def _record_forward(net, calls):
    original = net.forward

    def forward(x, *args, **kwargs):
        calls.append({k: v.detach().cpu().numpy().copy() for k, v in kwargs.items()})
        return original(x, *args, **kwargs)

    net.forward = forward


def test_transformer_receives_the_exams_acquisition_times(uneven_exam):
    exam, breast = uneven_exam
    torch.set_num_threads(2)
    seg = get_segmenter("st-demo")
    calls = []
    _record_forward(seg.net, calls)
    prob = seg.predict(exam, breast, Reporter(), device="cpu")
    assert calls, "the network was not run"
    for kwargs in calls:
        assert np.allclose(kwargs["times"][0], [1.1, 2.9, 7.4], atol=1e-5)
        assert kwargs["phase_mask"][0].tolist() == [True, True, True]
    assert prob.GetSize() == exam.reference.GetSize()
    # The times change the answer: the same exam claimed evenly spaced gives another map.
    even = exam.with_phases(exam.phases)
    even.times_min = [0.0, 1.0, 2.0, 3.0]
    other = seg.predict(even, breast, Reporter(), device="cpu")
    diff = np.abs(sitk.GetArrayViewFromImage(prob) - sitk.GetArrayViewFromImage(other)).max()
    assert diff > 1e-4


def test_hirsch_unet_gets_no_time_arguments(uneven_exam):
    exam, breast = uneven_exam
    seg = get_segmenter("unet-demo")
    calls = []
    _record_forward(seg.net, calls)
    seg.predict(exam, breast, Reporter(), device="cpu")
    assert calls and all(c == {} for c in calls)

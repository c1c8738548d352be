"""Does an exam written the way other software writes it segment like the same exam in our format?

For each development phantom (``training.phantom``, seeds 6000+/7000+ only) the exam is written
in several styles and each is loaded with ``load_exam`` and segmented with the default model:

* ``nifti``          -- the project's own phase files (the reference);
* ``nifti-4d``       -- one 4D .nii.gz (as dcm2niix writes a multi-phase series) + ``dce.json`` times;
* ``dicom-legacy``   -- GE-style classic slices converted by highdicom into one Legacy Converted
  Enhanced MR file (all phases in one file; TriggerTime only in the unassigned groups);
* ``dicom-float``    -- Siemens-style one series per phase, voxels as FloatPixelData;
* ``dicom-jpegls``   -- Siemens-style, JPEG-LS lossless (pydicom + pyjpegls).

Per style: Dice against the phantom's tumor mask, lesions found, the largest voxel difference
from the phantom, and whether the times were read. A style that reads right has the reference's
Dice (up to the integer storage's rounding). Prints a Markdown table.

    OMP_NUM_THREADS=1 python benchmarks/bench_other_software.py --seeds 7000-7001 --threads 1
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "Testing"))

import dicom_fixtures as fx  # noqa: E402
import pydicom  # noqa: E402
from _common import development_seeds, set_threads  # noqa: E402
from BreastTumorSegLib.engine.pipeline import segment_exam  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402
from BreastTumorSegLib.io.files import load_exam  # noqa: E402
from BreastTumorSegLib.training.phantom import make_phantom, write_phantom  # noqa: E402


def _nifti(ph, folder: Path) -> Path:
    write_phantom(ph, folder)
    return folder


def _nifti_4d(ph, folder: Path) -> Path:
    folder.mkdir(parents=True)
    sitk.WriteImage(sitk.JoinSeries(list(ph.exam.phases)), str(folder / "dce.nii.gz"))
    (folder / "dce.json").write_text(json.dumps({"acquisition_times_min": [float(t) for t in ph.exam.times_min]}))
    return folder / "dce.nii.gz"


def _fixture(ph, seed: int) -> fx.FixtureExam:
    return fx.FixtureExam(ph.exam, ph.tumor_mask, seed)


def _dicom_legacy(ph, folder: Path, seed: int) -> Path:
    import highdicom as hd

    paths = fx.write_ge_multiphase(_fixture(ph, seed), folder / "classic")
    legacy = hd.legacy.LegacyConvertedEnhancedMRImage(
        [pydicom.dcmread(p) for p in paths], series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1)
    (folder / "converted").mkdir()
    legacy.save_as(folder / "converted" / "legacy.dcm")
    return folder / "converted"


def _rewrite(paths, change) -> None:
    for p in paths:
        ds = pydicom.dcmread(p)
        change(ds)
        ds.save_as(p)


def _dicom_float(ph, folder: Path, seed: int) -> Path:
    def to_float(ds):
        values = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        del ds.PixelData
        ds.FloatPixelData = values.astype(np.float32).tobytes()
        ds.BitsAllocated = 32
        for key in ("BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):
            delattr(ds, key)
    _rewrite(fx.write_siemens_per_phase(_fixture(ph, seed), folder), to_float)
    return folder


def _dicom_jpegls(ph, folder: Path, seed: int) -> Path:
    _rewrite(fx.write_siemens_per_phase(_fixture(ph, seed), folder), lambda ds: ds.compress(pydicom.uid.JPEGLSLossless))
    return folder


STYLES = {"nifti": lambda ph, d, s: _nifti(ph, d), "nifti-4d": lambda ph, d, s: _nifti_4d(ph, d),
          "dicom-legacy": _dicom_legacy, "dicom-float": _dicom_float, "dicom-jpegls": _dicom_jpegls}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="7000-7001")
    p.add_argument("--styles", default=",".join(STYLES))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    set_threads(a.threads)
    seeds = development_seeds(a.seeds)
    print("| seed | style | Dice | lesions | max voxel diff | times read | load s | segment s |\n"
          "|---|---|---|---|---|---|---|---|")
    for seed in seeds:
        ph = make_phantom(seed)
        for style in a.styles.split(","):
            with tempfile.TemporaryDirectory(prefix="bench_other_") as tmp:
                src = STYLES[style](ph, Path(tmp) / style, seed)
                t0 = time.perf_counter()
                exam = load_exam(src)
                t1 = time.perf_counter()
                res = segment_exam(exam, device="cpu")
                t2 = time.perf_counter()
            diff = max(float(np.abs(sitk.GetArrayFromImage(a_) - sitk.GetArrayFromImage(b_)).max())
                       for a_, b_ in zip(exam.phases, ph.exam.phases))
            print(f"| {seed} | {style} | {dice(res.label, ph.tumor_mask):.3f} | {len(res.lesions)} | {diff:.3g} | "
                  f"{'yes' if exam.times_min is not None else 'no'} | {t1 - t0:.1f} | {t2 - t1:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

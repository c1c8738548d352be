#!/usr/bin/env python
"""Put the two real-anatomy volumes the tests and the hybrid phantoms need in place.

    git clone https://github.com/CBICA/DeepSeA
    python scripts/get_real_anatomy.py DeepSeA

Reads the DICOM series ``demoData/AX_T1_BILAT`` and ``demoData/SAG_T1_3D_BILAT`` of the DeepSeA
checkout and writes them unchanged (voxels and geometry) as ``AX_T1_BILAT.nii.gz`` and
``SAG_T1_3D_BILAT.nii.gz`` into ``$BREASTTUMORSEG_REAL_ANATOMY``, else ``../shared/data/real-anatomy``
beside this checkout (the folder the tests read; see docs/real-anatomy.md for why the volumes are
not in this repository). Existing files are kept.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))

import SimpleITK as sitk  # noqa: E402

from BreastTumorSegLib.io.atomic import write_image  # noqa: E402
from BreastTumorSegLib.training.phantom.hybrid import ANATOMY_FILES, real_anatomy_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("deepsea", type=Path, help="a checkout of https://github.com/CBICA/DeepSeA")
    args = p.parse_args(argv)
    target = real_anatomy_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in ANATOMY_FILES.values():
        series = args.deepsea / "demoData" / name.split(".")[0]
        out = target / name
        if out.is_file():
            print(f"{out}: already there, kept")
            continue
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series))
        if not files:
            print(f"get_real_anatomy: error: no DICOM series in {series}. Fix: pass the folder of a DeepSeA "
                  f"checkout (it holds demoData/)", file=sys.stderr)
            return 2
        write_image(out, sitk.ReadImage(files))
        print(f"{out}: {len(files)} slices from {series}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

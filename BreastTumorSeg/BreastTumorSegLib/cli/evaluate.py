"""``breasttumorseg evaluate``: score one predicted mask against one or more reference masks.

Prints one row per reference (Dice, HD95 in mm, voxel sensitivity, precision, volumes, and per
lesion: true lesions >= 0.1 mL found, lesion sensitivity, false-positive lesions, i.e. predicted
components overlapping no true lesion; see :func:`~BreastTumorSegLib.evaluation.lesions.lesion_level`) and optionally
writes every metric of :class:`BreastTumorSegLib.evaluation.metrics.SegmentationMetrics` to a CSV file.
Masks must share one voxel grid; masks on different grids are refused with a message naming
both files (resampling would change the boundaries being measured).
"""
from __future__ import annotations

import csv
import io as _io
import math
import sys
from pathlib import Path

import SimpleITK as sitk

from ..core.errors import InputError
from ..io.atomic import check_no_overwrite, write_text
from ..io.images import read_mask
from ..io.safety import check_input_path, check_name_lengths, check_not_inputs, check_output_dir
from ..evaluation.metrics import SegmentationMetrics, evaluate
from ._common import path_arg, threshold_arg

SHOWN = [("dice", "Dice", "{:.4f}"), ("hd95_mm", "HD95 mm", "{:.2f}"),
         ("sensitivity", "sens", "{:.3f}"), ("precision", "prec", "{:.3f}"),
         ("pred_volume_ml", "pred mL", "{:.3f}"), ("ref_volume_ml", "ref mL", "{:.3f}"),
         ("lesions_found", "lesions found", "{}"), ("lesion_sensitivity", "lesion sens", "{:.2f}"),
         ("false_positive_lesions", "FP lesions", "{}")]


def _value(m: SegmentationMetrics, key: str):
    if key == "lesions_found":  # true lesions >= 0.1 mL found by a predicted component
        return f"{m.found_lesions}/{m.true_lesions}"
    return getattr(m, key)


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="compare a segmentation with reference masks (Dice, HD95, ...)",
                       description="Compare a predicted tumor mask with one or more reference masks drawn "
                                   "on the same voxel grid. Voxels > 0 are tumor. One row per reference.")
    p.add_argument("--pred", required=True, type=path_arg, help="predicted mask (e.g. <case>_seg.nii.gz)")
    p.add_argument("--ref", required=True, type=path_arg, action="append",
                   help="reference mask; repeat for several readers")
    p.add_argument("--threshold", type=threshold_arg, default=None,
                   help="binarize a probability-map prediction at p >= THRESHOLD (default: voxels > 0)")
    p.add_argument("--csv", type=path_arg, default=None, help="also write every metric to this CSV file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    p.set_defaults(func=run)


def load_mask(path: Path, what: str, threshold: float | None = None) -> sitk.Image:
    """Read a binary mask; a probability map needs an explicit *threshold* (refused otherwise)."""
    return read_mask(path, what, threshold)


def _fmt(value, spec: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return spec.format(value)


def format_table(rows: list[tuple[str, SegmentationMetrics]]) -> str:
    head = ["reference"] + [h for _, h, _ in SHOWN]
    body = [[name] + [_fmt(_value(m, key), spec) for key, _, spec in SHOWN] for name, m in rows]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head] + body]
    return "\n".join(lines)


def to_csv(pred: Path, rows: list[tuple[str, SegmentationMetrics]]) -> str:
    buf = _io.StringIO()
    dicts = [m.as_dict() for _, m in rows]
    writer = csv.DictWriter(buf, fieldnames=["prediction", "reference"] + list(dicts[0]), lineterminator="\n")
    writer.writeheader()
    for (name, _), d in zip(rows, dicts):
        writer.writerow({"prediction": str(pred), "reference": name, **d})
    return buf.getvalue()


def run(args) -> int:
    for path in [args.pred, *args.ref]:
        check_input_path(path, "mask")
    if args.csv is not None:
        check_name_lengths(args.csv, f"--csv {args.csv}")
        check_output_dir(args.csv.parent, option="--csv")
        if args.csv.is_dir():
            raise InputError("--csv names a folder", args.csv, "give a file name such as metrics.csv")
        check_not_inputs([args.csv], [args.pred, *args.ref])
        check_no_overwrite([args.csv], args.overwrite, option="--csv file")
    pred = load_mask(args.pred, "predicted mask", args.threshold)
    rows = []
    for ref_path in args.ref:
        ref = load_mask(ref_path, "reference mask")
        rows.append((str(ref_path), evaluate(pred, ref, str(args.pred), str(ref_path))))
    print(f"prediction: {args.pred}")
    print(format_table(rows))
    if args.csv is not None:
        write_text(args.csv, to_csv(args.pred, rows))
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0

"""A whole simulated reader study through the session engine, from `study init` to the report.

Makes N small phantom exams (``phantom.make_phantom``, 4 mm voxels, one tumour each), a simulated
model (probability map around the true tumour, ``readerstudy.simulate_case``), then:

1. ``breasttumorseg study init`` — 3 readers, arms unaided and assisted, wash-out 4 cases;
2. each reader reads every case in her order through ``ReaderSession`` (open, edits, autosaves,
   submit): unaided masks are simulated readers of the true tumour, assisted masks keep the model's
   boundary where a smooth random field says so and the reader's own elsewhere; active times are
   **simulated** (a fake clock: unaided ~N(14, 3) min, assisted ~N(6, 2) min per case, the
   from-scratch versus refine contrast Zhang et al. reported) — not measurements;
3. ``study status``, ``study export``, ``breasttumorseg reader-study`` (report with arms);
4. a picture of the hanging protocol of one case (``docs/study_hanging_protocol.png``).

Prints a table of how long each step took (real time on this machine). Writes into
``docs/example_study/`` (report) and a scratch folder (study, exams) given by ``--work``.

    python benchmarks/make_example_study_session.py [--cases 12] [--work /tmp/btseg-study] [--seed 0]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from BreastTumorSegLib.cli import main as cli  # noqa: E402
from BreastTumorSegLib.evaluation.simulation import SimulatedRater, _smooth_noise, simulate_case  # noqa: E402
from BreastTumorSegLib.study.definition import load_study  # noqa: E402
from BreastTumorSegLib.study.session import ReaderSession  # noqa: E402
from BreastTumorSegLib.training.phantom import make_phantom, write_phantom  # noqa: E402

# boundary bias and noise of the order of the 4 mm voxels, so that readers differ visibly
READERS = (SimulatedRater("R1", -2.0, 3.0), SimulatedRater("R2", 1.0, 3.0), SimulatedRater("R3", 3.0, 3.0))
MODEL = SimulatedRater("model", 1.0, 2.5)
MINUTES = {"unaided": (14.0, 3.0), "assisted": (6.0, 2.0)}


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--work", type=Path, default=Path("/tmp/btseg-study-example"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "example_study")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    (args.work / "model").mkdir(parents=True)
    timings = {}

    t0 = time.perf_counter()
    rows, sims, seed = ["case,path"], {}, 1
    while len(sims) < args.cases:
        seed += 1
        ph = make_phantom(seed, n_phases=3, motion_mm=0.0, spacing=4.0, n_tumors=1, tumor_radius_mm=9.0)
        truth = sitk.Cast(ph.tumor_mask > 0, sitk.sitkUInt8)
        if sitk.GetArrayFromImage(truth).sum() < 20:
            continue
        case = f"P{seed:03d}"
        write_phantom(ph, args.work / "exams" / case)
        rows.append(f"{case},exams/{case}")
        sims[case] = simulate_case(case, truth, READERS, MODEL, rng)
        sitk.WriteImage(sitk.Cast(sims[case].model_prob >= 0.5, sitk.sitkUInt8),
                        str(args.work / "model" / f"{case}_seg.nii.gz"))
        sitk.WriteImage(sims[case].model_prob, str(args.work / "model" / f"{case}_prob.nii.gz"))
    (args.work / "cases.csv").write_text("\n".join(rows) + "\n")
    timings["make phantom exams and simulated model"] = time.perf_counter() - t0

    study = args.work / "study"
    t0 = time.perf_counter()
    assert cli(["study", "init", "--cases", str(args.work / "cases.csv"), "--readers", "R1,R2,R3",
                "--arms", "unaided,assisted", "--model", "ftv", "--model-outputs", str(args.work / "model"),
                "--washout-cases", "4", "--seed", str(args.seed), "--output", str(study)]) == 0
    timings[f"study init ({args.cases} cases, breast regions)"] = time.perf_counter() - t0

    s_def = load_study(study)
    case_of = {c.label: c.id for c in s_def.cases}
    save_times = []
    t0 = time.perf_counter()
    for r in READERS:
        clock = FakeClock()
        session = ReaderSession(s_def, r.name, clock=clock)
        view = session.open()
        while view is not None:
            sim = sims[case_of[view.label]]
            own = sitk.GetArrayFromImage(sim.readers[r.name]) > 0
            if view.arm == "unaided":
                mask = own
            else:
                start = sitk.GetArrayFromImage(view.starting_mask()) > 0
                keep = _smooth_noise(rng, own.shape, sim.readers[r.name].GetSpacing()[::-1]) > -0.5
                mask = np.where(keep, start, own)
            img = sitk.GetImageFromArray(mask.astype(np.uint8))
            img.CopyInformation(sim.readers[r.name])
            mean, sd = MINUTES[view.arm]
            total = max(1.0, rng.normal(mean, sd)) * 60
            start = clock.t
            while clock.t - start < total:  # an edit every 20 s, an autosave when due
                clock.t += 20
                session.activity(edit=True)
                ts = time.perf_counter()
                if session.maybe_autosave(img) is not None:
                    save_times.append(time.perf_counter() - ts)
            session.submit(img)
            clock.t += 5
            view = session.next()
        session.end()
    timings[f"3 readers x {2 * args.cases} readings (sessions, autosaves)"] = time.perf_counter() - t0
    timings["one autosave (median; 4 mm phantom grid)"] = float(np.median(save_times))

    t0 = time.perf_counter()
    cli(["study", "status", str(study)])
    table = args.work / "table.csv"
    assert cli(["study", "export", str(study), "--output", str(table)]) == 0
    timings["status + export"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert cli(["reader-study", str(table), "--output", str(args.out), "--overwrite", "--quiet",
                "--margins", "-0.05", "0.05"]) == 0
    timings["reader-study report"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hanging_protocol_figure(s_def, ROOT / "docs" / "study_hanging_protocol.png")
    timings["hanging-protocol picture (with registration)"] = time.perf_counter() - t0
    (args.out / "README.md").write_text(
        "# Example reader-study report from a simulated session study\n\n"
        f"Made by `python benchmarks/make_example_study_session.py --cases {args.cases} --seed {args.seed}`: "
        "phantom exams, simulated readers and model, **simulated reading times** (a fake clock: unaided "
        "~14 min, assisted ~6 min per case). The numbers show the report's form, not any real result.\n")

    print(f"\n| step | seconds |\n| --- | --- |")
    for k, v in timings.items():
        print(f"| {k} | {v:.2f} |")
    return 0


def hanging_protocol_figure(study, path: Path) -> None:
    """The three images a reader gets for the first case, the model's mask outlined (assisted start)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    session = ReaderSession(study, study.readers[0])
    view = next(session.open(i) for i, it in enumerate(session.items()) if it["arm"] == "assisted" and it["available"])
    images = view.hanging_protocol()
    mask = sitk.GetArrayFromImage(view.starting_mask())
    session.end()
    k = int(np.argmax(mask.sum(axis=(1, 2)))) if mask.any() else mask.shape[0] // 2
    fig = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, (name, img) in zip(axes, images.items()):
        a = sitk.GetArrayFromImage(img)[k]
        ax.imshow(a, cmap="gray", vmin=np.percentile(a, 1), vmax=np.percentile(a, 99.5))
        if mask[k].any():
            ax.contour(mask[k], levels=[0.5], colors="#f34a33", linewidths=1.0)
        ax.set_title(f"{name}", fontsize=10)
        ax.set_axis_off()
    fig.suptitle(f"{view.title} ({view.label}, {view.arm}: starts from the model's mask)", fontsize=10)
    fig.savefig(path, metadata={"Software": None})


if __name__ == "__main__":
    sys.exit(main())

"""Memory per reader session and stroke-to-rendered-overlay time of the web reader station on trame-slicer.

    python benchmarks/bench_web_sessions.py            # 448x448x160 clinical phantom, 2 phases, 3 readers
    python benchmarks/bench_web_sessions.py --small    # a quick run on a small phantom

Makes a one-case study (phantom written as NIfTI, not timed), then opens one reader workspace
after the other in this process, as the station does: each gets her engine session and her own
trame-slicer session (a SlicerApp scene with the registered subtraction, first post-contrast and
pre-contrast, her segmentation, three remote slice views and a 3D view, a trame server on
127.0.0.1). Reports per reader:

- the resident memory the session adds (VmRSS after the case is open and its views have drawn,
  minus before);
- the time to open the case (registration included);
- stroke to rendered overlay: a Paint stroke given to the subtraction's slice view as the mouse
  events trame's remote view forwards from the browser (press, 8 moves, release), until the view
  has rendered and its pixels are read back (what trame then encodes and sends) with the
  segment's colour in them (median of 5 strokes; JPEG encoding and the network not included);
- the same with the segment's 3D surface shown (it is rebuilt after each stroke);
- the same with all three readers' views rendering after each stroke (three concurrent readers).

Prints a table. Run it in an environment with the `web` extra (trame-slicer, slicer-core 5.11).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))

VIEW_PX = 512  # the slice view's size in the browser (pixels)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def frame_pixels(view):
    """Render the view and read its pixels back (numpy RGB), as trame's remote view does."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    view.render_window().Render()
    w2i = vtkWindowToImageFilter()
    w2i.SetInput(view.render_window())
    w2i.ReadFrontBufferOff()
    w2i.Update()
    img = w2i.GetOutput()
    return vtk_to_numpy(img.GetPointData().GetScalars()).reshape(-1, img.GetNumberOfScalarComponents())


def stroke(view, y_frac: float) -> None:
    iren = view.interactor()
    pts = [(int(VIEW_PX * (0.35 + 0.03 * i)), int(VIEW_PX * y_frac)) for i in range(10)]
    iren.SetEventInformation(*pts[0], 0, 0)
    iren.InvokeEvent("MouseMoveEvent")
    iren.InvokeEvent("LeftButtonPressEvent")
    for x, y in pts[1:]:
        iren.SetEventInformation(x, y, 0, 0)
        iren.InvokeEvent("MouseMoveEvent")
    iren.InvokeEvent("LeftButtonReleaseEvent")


def reddish(px) -> int:
    """Pixels of the tumour segment's colour (red dominant) in a frame."""
    r, g, b = (px[:, i].astype(int) for i in range(3))
    return int(((r > 120) & (r > g + 60) & (r > b + 60)).sum())


async def run(args) -> int:
    import SimpleITK as sitk  # noqa: F401

    from BreastTumorSegLib.study.coordinator import init_study
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom
    from BreastTumorSegLib.web.workspace import ReaderWorkspace

    readers = [f"r{i + 1}" for i in range(args.readers)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ph = make_phantom(7, n_phases=2, n_tumors=1, motion_mm=0, size="small" if args.small else "clinical")
        write_phantom(ph, root / "exams", layout="mamamia")
        (root / "cases.csv").write_text(f"case,path\n{ph.case_id},exams/images/{ph.case_id}\n")
        init_study(root / "cases.csv", readers, ["unaided"], root / "study", seed=1)
        size = ph.exam.pre.GetSize()
        del ph
        gc.collect()
        rows, spaces = [], []
        base = rss_mb()
        for r in readers:
            before = rss_mb()
            t0 = time.perf_counter()
            ws = ReaderWorkspace(root / "study", r)
            ws.ensure_open(0)
            await ws.start_view()
            t_open = time.perf_counter() - t0
            view = ws.view.scene.slice_view("Red")
            for v in ws.view.scene.app.view_manager.get_views():
                v.update_size(VIEW_PX, VIEW_PX)
                v.render()
            view.fit_view_to_content()
            frame_pixels(view)
            gc.collect()
            after = rss_mb()
            ws.view.scene.set_effect("Paint")
            medians = []
            for show_3d in (False, True):  # the segment's 3D surface off (the default), then on
                ws.view.scene.editor.set_surface_representation_enabled(show_3d)
                times, red = [], []
                for i in range(5):
                    t0 = time.perf_counter()
                    stroke(view, 0.3 + 0.04 * i + (0.2 if show_3d else 0.0))
                    px = frame_pixels(view)
                    times.append(time.perf_counter() - t0)
                    red.append(reddish(px))
                assert red[-1] > red[0] > 0, f"no overlay rendered after the strokes ({red})"
                medians.append(statistics.median(times))
            ws.view.scene.editor.set_surface_representation_enabled(False)
            spaces.append(ws)
            rows.append([r, after - before, t_open, *medians])
        # three concurrent readers: one stroke each, every reader's views render after each stroke
        conc = []
        for i in range(3):
            t0 = time.perf_counter()
            for ws in spaces:
                stroke(ws.view.scene.slice_view("Red"), 0.75 + 0.02 * i)
                for v in ws.view.scene.slice_views():
                    frame_pixels(v)
            conc.append((time.perf_counter() - t0) / len(spaces))
        peak = rss_mb()
        for ws in spaces:
            ws.release()  # saves, ends her session, stops her trame server (a task on this loop)
        await asyncio.sleep(1.0)
        spaces.clear()
        gc.collect()
        released = rss_mb()

    print(f"exam {size[0]}x{size[1]}x{size[2]} voxels, 2 phases; {len(readers)} reader sessions in one process; "
          f"slice views {VIEW_PX}x{VIEW_PX} px")
    print("| reader | RSS added (MB) | open case, registration included (s) | stroke to rendered overlay, "
          "median of 5 (ms) | the same with the 3D surface shown (ms) |")
    print("| --- | --- | --- | --- | --- |")
    for r, mb, to, t2d, t3d in rows:
        print(f"| {r} | {mb:.0f} | {to:.1f} | {t2d * 1000:.0f} | {t3d * 1000:.0f} |")
    print(f"three readers stroking in turn, all three slice views of each re-rendered: "
          f"{statistics.median(conc) * 1000:.0f} ms per reader's stroke (median of 3 rounds)")
    print(f"RSS: {base:.0f} MB before the first session, {peak:.0f} MB with all open, "
          f"{released:.0f} MB after releasing them")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="a small phantom instead of a clinical-size one")
    p.add_argument("--readers", type=int, default=3)
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

"""Render the reader-study panel (ReaderPanelController) to docs/reader_panel.png without Slicer.

The panel's Qt widgets are real PySide6 widgets on the offscreen platform, driven by a real
ReaderSession on a tiny study of one phantom exam over a headless MRML scene (slicer-core); a few
simulated minutes of work are on its timer. Slicer's embedded Segment Editor and slice views are
not part of the picture (they exist only in the Slicer application).

    QT_QPA_PLATFORM=offscreen python docs/render_reader_panel.py [--output docs/reader_panel.png]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "Testing"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=ROOT / "docs" / "reader_panel.png")
    args = ap.parse_args(argv)

    from qt_harness import application, qt_namespace

    from BreastTumorSegLib.slicer import mrml_bridge as mb
    from BreastTumorSegLib.slicer.gui.reader_panel import ReaderPanelController
    from BreastTumorSegLib.slicer.reader_logic import ReaderLogic
    from BreastTumorSegLib.study.coordinator import init_study
    from BreastTumorSegLib.study.session import ReaderSession
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    work = Path(tempfile.mkdtemp(prefix="btseg-reader-panel-"))
    rows = ["case,path"]
    for s in range(2, 42):  # 40 cases named in the table; only the first is read here
        rows.append(f"P{s:03d},exam")
    write_phantom(make_phantom(2, n_phases=3, motion_mm=0.0, spacing=4.0, n_tumors=1), work / "exam")
    (work / "cases.csv").write_text("\n".join(rows) + "\n")
    study = init_study(work / "cases.csv", ["alice", "bob", "carol"], ["unaided"], work / "study", seed=3,
                       breast_region=False)
    clock = [0.0]

    class Host:
        def show_error(self, what, exc):
            print(what, exc, file=sys.stderr)

        def confirm(self, text):
            return True

        def open_segment_editor(self, *a):
            pass

    qt = qt_namespace()
    app = application()
    window = qt.QWidget()
    window.setWindowTitle("Breast Tumor Reader Study")
    panel = ReaderPanelController(qt, window, Host(), ReaderLogic(mb.MRMLContext.headless(), register=False),
                                  lambda r: ReaderSession(study, r, clock=lambda: clock[0]), study.readers)
    panel.start()
    for _ in range(23):  # eight minutes of work, an edit every 20 s
        clock[0] += 20
        panel.session.activity(edit=True)
    panel.tick()  # an autosave is due: written in the worker thread ...
    if panel._save_thread is not None:
        panel._save_thread.join()
    panel.tick()  # ... and recorded on the next tick
    window.resize(420, 170)
    window.show()
    app.processEvents()
    window.grab().save(str(args.output))
    panel.close()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

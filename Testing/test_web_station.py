"""The web reader station (``breasttumorseg study serve``) in a real headless Chromium.

Playwright drives Debian's ``chromium`` (``.ci/install-test-browser`` installs it in CI; the
browser tests skip, saying why, only when it is missing). The station runs on a thread of this
process over a tiny two-case study (64 x 54 x 24 phantoms, two readers, both arms, the phantom's
truth as the "model output" of the assisted arm, autosave every second). The screenshots in
``docs/`` are taken here: with ``BREASTTUMORSEG_UPDATE_DOCS=1`` they are written into ``docs/``,
otherwise into the test's temporary folder (so a test run leaves the checkout unchanged).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
UPDATE_DOCS = os.environ.get("BREASTTUMORSEG_UPDATE_DOCS") == "1"
CHROMIUM = shutil.which("chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# ------------------------------------------------------------------------ no browser needed
def test_display_frame_round_trips_any_axis_order_and_direction():
    from BreastTumorSegLib.web.render import DisplayFrame

    rng = np.random.default_rng(0)
    arr = rng.random((4, 5, 6))
    for perm in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        for signs in ([1, 1, 1], [-1, 1, -1], [1, -1, 1]):
            d = np.zeros((3, 3))
            for col, (row, s) in enumerate(zip(perm, signs)):
                d[row, col] = s
            frame = DisplayFrame.of(d.ravel(), (1.0, 2.0, 3.0))
            disp = frame.to_display(arr)
            assert np.array_equal(frame.from_display(disp), arr)
            # the display's slice axis is the one pointing superior
            assert frame.spacing[0] == (1.0, 2.0, 3.0)[perm.index(2)]
            # one display slice maps back to a one-voxel slab of the grid (what a stroke sends to Slicer)
            for k in range(disp.shape[0]):
                slab, (i0, j0, k0) = frame.slab(k, disp[k], arr.shape)
                n_k, n_j, n_i = slab.shape
                assert np.array_equal(slab, arr[k0:k0 + n_k, j0:j0 + n_j, i0:i0 + n_i])
                assert sorted(slab.shape)[0] == 1


def test_axial_lps_grid_is_shown_radiologically():
    """Identity direction (LPS): patient right (low x) on the left of the screen, anterior up."""
    from BreastTumorSegLib.web.render import DisplayFrame

    frame = DisplayFrame.of(np.eye(3).ravel(), (0.7, 0.7, 2.0))
    arr = np.zeros((3, 4, 5))
    arr[1, 0, 0] = 1  # k=1 (slice), j=0 (most anterior), i=0 (most right)
    disp = frame.to_display(arr)
    assert disp[1, 0, 0] == 1 and frame.spacing == (2.0, 0.7, 0.7)


def test_stroke_mask_is_a_thick_polyline_in_millimetres():
    from BreastTumorSegLib.web.render import stroke_mask

    m = stroke_mask((40, 40), [[20, 5], [20, 35]], radius_mm=3.0, row_mm=1.0, col_mm=1.0)
    assert m[20, 5:36].all() and m[17, 20] and not m[16, 20] and not m[20, 0]
    # 2 mm pixels: the same radius covers half the pixels
    m2 = stroke_mask((40, 40), [[20, 20]], radius_mm=4.0, row_mm=2.0, col_mm=2.0)
    assert m2[18, 20] and not m2[17, 20]


def test_replacing_one_slice_of_a_segment_keeps_the_rest():
    """The stroke path: one slice goes to Slicer's segmentation logic, the other slices stay."""
    pytest.importorskip("slicer")
    from BreastTumorSegLib.slicer import mrml_bridge as mb

    ctx = mb.MRMLContext.headless()
    ref = sitk.Image(20, 16, 8, sitk.sitkFloat32)
    ref.SetSpacing((2.0, 2.0, 3.0))
    ref.SetOrigin((10.0, -5.0, 7.0))
    node = mb.image_to_volume_node(ctx, ref, "ref")
    start = np.zeros((8, 16, 20), np.uint8)
    start[2:6, 2:5, 2:5] = 1
    label = sitk.GetImageFromArray(start)
    label.CopyInformation(ref)
    seg = mb.label_to_segmentation(ctx, label, reference_node=node)
    new = np.zeros((1, 16, 20), np.uint8)
    new[0, 10:12, 10:13] = 1  # slice 4: the old voxels go, these come
    mb.replace_segment_region(seg, mb.TUMOR_SEGMENT_ID, new, (0, 0, 4), ref)
    want = start.copy()
    want[4] = new[0]
    got = sitk.GetArrayFromImage(mb.segment_to_label(ctx, seg, mb.TUMOR_SEGMENT_ID, reference=node))
    assert np.array_equal(got, want)


def test_tokens_are_stored_hashed_and_checked(tmp_path):
    from BreastTumorSegLib.web.auth import check_token, issue_tokens, read_access

    tokens = issue_tokens(tmp_path, ["a", "b"])
    text = (tmp_path / "access.json").read_text()
    assert tokens["a"] not in text and tokens["b"] not in text
    records = read_access(tmp_path)
    assert check_token(records, "a", tokens["a"])
    assert not check_token(records, "a", tokens["b"]) and not check_token(records, "c", tokens["a"])
    new = issue_tokens(tmp_path, ["a"])  # re-issued: the old token stops working, b keeps hers
    records = read_access(tmp_path)
    assert check_token(records, "a", new["a"]) and not check_token(records, "a", tokens["a"])
    assert check_token(records, "b", tokens["b"])


def test_station_binds_to_loopback_unless_told(tmp_path):
    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.web.server import check_host

    assert check_host("127.0.0.1", False) == "127.0.0.1"
    with pytest.raises(InputError, match="HTTPS"):
        check_host("0.0.0.0", False)
    assert check_host("0.0.0.0", True) == "0.0.0.0"


# ---------------------------------------------------------------------------- the study
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from BreastTumorSegLib.study.coordinator import init_study
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom
    from BreastTumorSegLib.web.auth import issue_tokens

    root = tmp_path_factory.mktemp("webstudy")
    (root / "model").mkdir()
    rows, truths = [], {}
    for seed in (11, 12):
        ph = make_phantom(seed, shape_mm=(192, 160, 72), spacing=3.0, orientation="axial", n_phases=2,
                          n_tumors=1, tumor_radius_mm=12, motion_mm=0)
        write_phantom(ph, root / "exams", layout="mamamia")
        rows.append(f"{ph.case_id},exams/images/{ph.case_id}")
        sitk.WriteImage(ph.tumor_mask, str(root / "model" / f"{ph.case_id}_seg.nii.gz"))
        truths[ph.case_id] = ph.tumor_mask
    (root / "cases.csv").write_text("case,path\n" + "\n".join(rows) + "\n")
    folder = root / "study"
    init_study(root / "cases.csv", ["a", "b", "c"], ["unaided", "assisted"], folder, seed=1, model="st-demo",
               model_outputs=root / "model", autosave_s=1.0)
    tokens = issue_tokens(folder, ["a", "b"])
    return {"folder": folder, "tokens": tokens, "case_ids": [r.split(",")[0] for r in rows], "root": root,
            "truths": truths}


def test_paint_erase_threshold_and_undo_go_through_the_mrml_segment(study):
    """Reader c (not on the web): the workspace's tools, checked against the phantom's truth."""
    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.study.definition import load_study
    from BreastTumorSegLib.web.workspace import ReaderWorkspace

    folder = study["folder"]
    st = load_study(folder)
    index = next(i for i, (_, arm) in enumerate(st.orders["c"]) if arm == "unaided")
    label = st.orders["c"][index][0]
    truth_img = study["truths"][st.case_by_label(label).id]
    ws = ReaderWorkspace(folder, "c")
    try:
        ws.ensure_open(index)
        assert ws.info()["voxels"] == 0
        audit = [json.loads(ln) for ln in (folder / "readers" / "c" / "audit.jsonl").read_text().splitlines()]
        assert [r["event"] for r in audit[-3:]] == ["opened", "paused", "resumed"]  # loading is not reading time
        assert audit[-2]["reason"] == "loading"
        truth = ws.frame.to_display(sitk.GetArrayFromImage(truth_img)).astype(bool)
        k = int(np.argmax(truth.sum(axis=(1, 2))))
        rows, cols = np.nonzero(truth[k])
        centre = [[float(rows.mean()), float(cols.mean())]]
        sub = ws._display["sub"][k]
        lo = float(np.median(sub[truth[k]])) / 2  # half the tumor's enhancement
        # threshold paint with a brush much larger than the tumor: only enhancing voxels are taken
        ws.stroke("threshold", k, centre, radius_mm=30.0, lo=lo, hi=None)
        got = ws._mask_disp[k]
        assert (sub[got] >= lo).all()
        dice = 2 * (got & truth[k]).sum() / (got.sum() + truth[k].sum())
        assert dice >= 0.8, dice
        # what the engine saves is the MRML segment, on the exam's own grid and geometry
        saved = ws.current_mask()
        assert saved.GetSize() == truth_img.GetSize()
        assert np.allclose(saved.GetOrigin(), truth_img.GetOrigin(), atol=1e-4)
        assert np.allclose(saved.GetDirection(), truth_img.GetDirection(), atol=1e-6)
        assert np.array_equal(ws.frame.to_display(sitk.GetArrayFromImage(saved)).astype(bool), ws._mask_disp)
        n = int(got.sum())
        k2 = k + 1 if k + 1 < truth.shape[0] else k - 1  # a stroke on another slice leaves slice k alone
        assert ws.stroke("paint", k2, [[0.0, 0.0], [0.0, 10.0]], radius_mm=3.0) > 0
        assert ws._mask_disp[k].sum() == n
        assert ws.stroke("erase", k, centre, radius_mm=3.0) > 0
        assert 0 < ws._mask_disp[k].sum() < n
        assert ws.stroke("paint", k, [[0.0, 0.0], [0.0, 10.0]], radius_mm=3.0) > 0
        assert ws.undo() and ws.undo()
        assert ws._mask_disp[k].sum() == n  # two undos: back to the threshold-paint result
        n2 = int(ws._mask_disp[k2].sum())
        assert n2 > 0  # the stroke on the other slice is still there
        assert np.array_equal(ws.frame.to_display(sitk.GetArrayFromImage(ws.current_mask())).astype(bool),
                              ws._mask_disp)  # the MRML segment holds exactly what is shown
        with pytest.raises(InputError):
            ws.stroke("paint", 999, centre, radius_mm=3.0)
        with pytest.raises(InputError):
            ws.stroke("fill-everything", k, centre, radius_mm=3.0)
    finally:
        ws.release()
    assert not (folder / "readers" / "c" / "session.lock").exists()
    versions = sorted((folder / "readers" / "c" / label / "unaided").glob("v*.nii.gz"))
    assert versions and _mask_sum(versions[-1]) == n + n2  # released = saved


@pytest.fixture(scope="module")
def station(study):
    pytest.importorskip("aiohttp")
    from BreastTumorSegLib.web.server import BackgroundStation

    bg = BackgroundStation(study["folder"], tick_s=0.3)
    url = bg.start()
    yield {"url": url, "bg": bg, **study}
    bg.stop()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (CI installs it with .ci/install-test-browser; "
                    "locally: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


def _login(page, url, reader, token):
    page.goto(url + "/")
    page.fill("#reader", reader)
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url("**/worklist")


def _voxels(page) -> int:
    from playwright.sync_api import expect

    expect(page.locator("#volume")).to_have_attribute("data-voxels", __import__("re").compile(r"\d+"))
    return int(page.locator("#volume").get_attribute("data-voxels"))


def _stroke(page, y0=0.35, y1=0.45, x0=0.3, x1=0.7):
    box = page.locator("#paint").bounding_box()
    page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y0)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * x1, box["y"] + box["height"] * y1, steps=10)
    page.mouse.up()


def _wait_for(cond, timeout=20.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _mask_sum(path: Path) -> int:
    return int(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).sum())


def _open_item(folder: Path, reader: str, index: int) -> tuple[str, str]:
    order = json.loads((folder / "study.json").read_text())["orders"][reader]
    return tuple(order[index])


def test_reader_paints_autosaves_reloads_and_submits(station, browser, tmp_path):
    from playwright.sync_api import expect

    shots = DOCS if UPDATE_DOCS else tmp_path

    url, folder = station["url"], station["folder"]
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(url + "/")
    page.screenshot(path=str(shots / "web_station_login.png"))
    page.fill("#reader", "a")
    page.fill("#token", "not-her-token")
    page.click("#login")
    expect(page.locator("#message")).to_contain_text("Wrong reader name or token")
    _login(page, url, "a", station["tokens"]["a"])
    expect(page.locator("#worklist")).to_contain_text("case 1 of 4")

    label, arm = _open_item(folder, "a", 0)
    page.click("a.case >> nth=0")
    page.wait_for_url("**/case/0")
    expect(page.locator("#title")).to_have_text("case 1 of 4")
    start = _voxels(page)
    model = _mask_sum(folder / "model" / label / "seg.nii.gz")
    assert start == (model if arm == "assisted" else 0)  # assisted starts from the model's mask

    _stroke(page)
    expect(page.locator("#volume")).not_to_have_attribute("data-voxels", str(start))
    painted = _voxels(page)
    assert painted > start
    versions = folder / "readers" / "a" / label / arm
    _wait_for(lambda: any(versions.glob("v*.nii.gz")), what="the autosave")
    expect(page.locator("#state")).to_have_text("saved")
    saved = sorted(versions.glob("v*.nii.gz"))[-1]
    assert _mask_sum(saved) == painted  # the saved version is what the reader sees

    page.reload()
    assert _voxels(page) == painted  # same scene after a reload
    expect(page.locator("#state")).to_have_text("saved")  # back in front: the background pause ended
    page.screenshot(path=str(shots / "web_station_case.png"))

    page.click("#pause")  # Pause stops the timer (the engine's audit log records it)
    expect(page.locator("#state")).to_have_text("paused")
    timer = page.locator("#timer").inner_text()
    page.wait_for_timeout(1500)
    assert page.locator("#timer").inner_text() == timer
    audit = [json.loads(ln) for ln in (folder / "readers" / "a" / "audit.jsonl").read_text().splitlines()]
    assert any(r["event"] == "paused" and r.get("reason") == "explicit" for r in audit)
    page.click("#pause")
    expect(page.locator("#state")).to_have_text("saved")

    # an idle reader's work is saved and her scene released; the next visit reopens from disk
    bg = station["bg"]
    ws = bg.station.workspaces["a"]
    ws.last_seen -= 10 * bg.station.release_after_s
    bg.station.worker.submit(bg.station.tick_sync).result(60)
    assert "a" not in bg.station.workspaces and not (folder / "readers" / "a" / "session.lock").exists()
    # the study folder is the engine's: the session the Slicer reader mode uses sees the same work,
    # and while it holds her lock the station says so instead of opening a second session
    from BreastTumorSegLib.study.session import ReaderSession

    with ReaderSession.open_study(folder, "a") as elsewhere:
        view = elsewhere.open(0)
        assert int(sitk.GetArrayFromImage(view.starting_mask()).sum()) == painted
        page.reload()
        expect(page.locator("#message")).to_contain_text("open elsewhere")
        assert str(folder) not in page.content()
        elsewhere.close()
    page.reload()
    assert _voxels(page) == painted  # the stroke came back from the study folder

    page.click("#submit")
    expect(page.locator("#submit")).to_have_text("Confirm submit")
    page.click("#submit")
    page.wait_for_url("**/case/1")
    final = versions / "submitted.nii.gz"
    assert final.exists() and not os.stat(final).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert _mask_sum(final) == painted
    label1, arm1 = _open_item(folder, "a", 1)
    expect(page.locator("#title")).to_have_text("case 2 of 4")
    expect(page.locator("#progress")).to_have_text("1 of 4 submitted")
    if arm1 == "unaided":
        assert _voxels(page) == 0  # no model output in the unaided arm

    # the submitted case opens read-only: strokes are refused
    page.goto(url + "/case/0")
    expect(page.locator("#state")).to_have_text("submitted (locked)")
    r = page.request.post(url + "/api/case/0/stroke", headers={"X-Station": "1"},
                          data={"tool": "paint", "slice": 0, "points": [[1, 1]], "radius_mm": 3})
    assert r.status == 409 and "locked" in r.json()["error"]
    assert _mask_sum(final) == painted

    # no case id, exam path or study path in what the reader's browser got
    html = page.content() + page.request.get(url + "/worklist").text()
    for secret in station["case_ids"] + [str(station["root"]), "exams", "readers/"]:
        assert secret not in html
    ctx.close()


def test_second_reader_sees_only_her_cases_and_forged_urls_are_refused(station, browser):
    from playwright.sync_api import expect

    url, folder = station["url"], station["folder"]
    a = browser.new_context()
    pa = a.new_page()
    _login(pa, url, "a", station["tokens"]["a"])
    b = browser.new_context()
    pb = b.new_page()
    _login(pb, url, "b", station["tokens"]["b"])  # both logged in at the same time
    expect(pb.locator("#who")).to_have_text("b")
    expect(pb.locator("#progress")).to_have_text("0 of 4 submitted")  # a's submission is not hers
    pb.click("a.case >> nth=0")
    pb.wait_for_url("**/case/0")
    label_b, arm_b = _open_item(folder, "b", 0)
    expect(pb.locator("#title")).to_have_text("case 1 of 4")
    assert _voxels(pb) == (_mask_sum(folder / "model" / label_b / "seg.nii.gz") if arm_b == "assisted" else 0)

    label_a, arm_a = _open_item(folder, "a", 0)
    forged = ["/case/4", "/case/99", "/case/-1", "/api/case/99/info", "/case/..%2F..%2Fstudy.json",
              "/case/0/../../study.json", "/readers/a/state.json", f"/readers/a/{label_a}/{arm_a}/submitted.nii.gz",
              "/study.json", "/access.json", "/api/case/0/slice/../../../etc/passwd", "/api/case/0/slice/sub/999.png"]
    for path in forged:
        r = pb.request.get(url + path, max_redirects=0)
        assert r.status == 404, (path, r.status)
    # a's open case is not reachable with b's session: b's case 1 is not open -> conflict, no data
    r = pb.request.get(url + "/api/case/1/info")
    assert r.status == 409
    # malformed edits are refused, not crashed on; an unknown action is not found
    for body, status in (({"tool": "paint", "slice": 0, "points": "x"}, 400),
                         ({"tool": "paint", "slice": 0, "points": [["a", 1]]}, 400),
                         ({"tool": "paint", "slice": 0, "points": [[None, 1]]}, 400),
                         ({"tool": "flood", "slice": 0, "points": [[1, 1]]}, 409),
                         ({"tool": "paint", "slice": 10 ** 6, "points": [[1, 1]]}, 409)):
        r = pb.request.post(url + "/api/case/0/stroke", headers={"X-Station": "1"}, data=body)
        assert r.status == status, (body, r.status)
    assert pb.request.post(url + "/api/case/0/format-disk", headers={"X-Station": "1"}, data={}).status == 404
    assert pb.request.post(url + "/api/case/0/undo", data={}).status == 403  # no X-Station header: refused
    # without a session nothing but the log-in page
    anon = browser.new_context()
    r = anon.request.get(url + "/api/case/0/info")
    assert r.status == 401
    r = anon.request.get(url + "/case/0", max_redirects=0)
    assert r.status == 303 and r.headers["location"] == "/"
    refused = [json.loads(ln) for ln in (folder / "station.jsonl").read_text().splitlines()]
    assert sum(r.get("reader") == "b" and r.get("status") == 404 for r in refused) >= len(forged)
    assert any(r["reason"] == "log-in with a wrong reader name or token" for r in refused)  # a's typo, test 1
    log_text = (folder / "station.jsonl").read_text()
    assert not any(cid in log_text for cid in station["case_ids"])
    for c in (a, b, anon):
        c.close()


def test_two_tabs_share_one_session_and_logout_refuses_the_replayed_cookie(station, browser):
    from playwright.sync_api import expect

    url, folder = station["url"], station["folder"]
    ctx = browser.new_context()
    tab1 = ctx.new_page()
    _login(tab1, url, "b", station["tokens"]["b"])
    tab1.goto(url + "/case/0")
    tab2 = ctx.new_page()
    tab2.goto(url + "/case/0")
    before = _voxels(tab1)
    _stroke(tab2, 0.5, 0.55)
    expect(tab2.locator("#volume")).not_to_have_attribute("data-voxels", str(before))
    tab1.reload()
    assert _voxels(tab1) == _voxels(tab2) > before  # one scene for both tabs
    assert len([w for w in station["bg"].station.workspaces if w == "b"]) == 1

    cookie = next(c for c in ctx.cookies() if c["name"] == "bts_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    tab1.click("#logout")
    tab1.wait_for_url(url + "/")
    replay = browser.new_context()
    replay.add_cookies([cookie])
    r = replay.request.get(url + "/api/case/0/info")
    assert r.status == 401
    refused = [json.loads(ln) for ln in (folder / "station.jsonl").read_text().splitlines()]
    assert any(r.get("reason") == "session cookie replayed after logout" and r.get("reader") == "b" for r in refused)
    # logging out saved her work and released her study lock
    assert "b" not in station["bg"].station.workspaces
    assert not (folder / "readers" / "b" / "session.lock").exists()
    label, arm = _open_item(folder, "b", 0)
    assert _mask_sum(sorted((folder / "readers" / "b" / label / arm).glob("v*.nii.gz"))[-1]) == _voxels(tab2)
    ctx.close()
    replay.close()


def test_cli_issues_tokens_and_serves_on_localhost_then_stops_cleanly(study, capsys):
    """``study tokens`` then ``study serve`` as a coordinator runs them; Ctrl-C saves and releases."""
    import http.client
    import re
    import signal
    import socket
    import subprocess
    import sys
    import urllib.parse

    pytest.importorskip("aiohttp")
    folder = study["folder"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "BreastTumorSeg"), "OMP_NUM_THREADS": "1"}
    from BreastTumorSegLib.cli import main

    cli = [sys.executable, "-m", "BreastTumorSegLib.cli", "study"]
    assert main(["study", "tokens", str(folder), "--readers", "c"]) == 0
    token = re.search(r"^\s+c\t(\S+)$", capsys.readouterr().out, flags=re.M).group(1)
    assert token not in (folder / "access.json").read_text()

    assert main(["study", "serve", str(folder), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "HTTPS" in err

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(cli + ["serve", str(folder), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        _wait_for(up, timeout=90, what="the station to listen")

        def request(method, path, body=None, cookie=None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
            if cookie:
                headers["Cookie"] = cookie
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode()

        status, _, html = request("GET", "/")
        assert status == 200 and "Log in" in html
        status, headers, _ = request("POST", "/login", urllib.parse.urlencode({"reader": "c", "token": token}))
        assert status == 303
        cookie = headers["Set-Cookie"].split(";")[0]
        status, headers, html = request("GET", "/worklist", cookie=cookie)
        assert status == 200 and "case 1 of 4" in html
        assert headers["X-Frame-Options"] == "DENY" and "script-src 'self'" in headers["Content-Security-Policy"]
        assert (folder / "readers" / "c" / "session.lock").exists()  # her session is open
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr  # Ctrl-C: 130 as the README's exit-code table says (issue 27)
    assert "Traceback" not in stderr
    assert f"http://127.0.0.1:{port}/" in stdout
    assert not (folder / "readers" / "c" / "session.lock").exists()  # released on exit
    for cid in study["case_ids"]:
        assert cid not in stdout + stderr  # no case ids in the server's log

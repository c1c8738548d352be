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
    tokens = issue_tokens(folder, ["a", "b", "c"])
    return {"folder": folder, "tokens": tokens, "case_ids": [r.split(",")[0] for r in rows], "root": root,
            "truths": truths}


@pytest.fixture(scope="module")
def station(study):
    pytest.importorskip("aiohttp")
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (the station's views; `pip install -e "
                        "\".[web]\"` or \".[test]\", which pin slicer-core 5.11)")
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


def _voxels(page, other_than=None) -> int:
    """The segment's voxel count the station reports (its header polls the case's info)."""
    from playwright.sync_api import expect

    loc = page.locator("#volume")
    expect(loc).to_have_attribute("data-voxels", __import__("re").compile(r"\d+"), timeout=60_000)
    if other_than is not None:
        expect(loc).not_to_have_attribute("data-voxels", str(other_than), timeout=60_000)
    return int(loc.get_attribute("data-voxels"))


def _settled(page, other_than=None) -> int:
    """The voxel count once it has stopped changing (two of the header's polls agree)."""
    n = _voxels(page, other_than)
    while True:
        page.wait_for_timeout(4500)
        m = _voxels(page)
        if m == n:
            return n
        n = m


def _views(page):
    """trame-slicer's page in the case page's frame, once its three slice views have drawn."""
    frame = page.frame_locator("#views")
    frame.locator("img, video, canvas").first.wait_for(timeout=120_000)
    page.wait_for_timeout(1500)
    return frame


def _effect(frame, icon: str) -> None:
    frame.locator(f"button:has(.{icon})").first.click()


def _view_box(page, n: int = 0) -> dict:
    """Page coordinates of slice view *n* (0: the subtraction) inside the frame."""
    frame_box = page.locator("#views").bounding_box()
    inner = page.frame_locator("#views").locator(".rca-view, [class*=remote]").nth(n)
    try:
        box = inner.bounding_box(timeout=5000)
    except Exception:  # noqa: BLE001 - fall back on the layout: three views across the top half
        box = None
    if box is None:
        w = frame_box["width"] - 360
        box = {"x": frame_box["x"] + 360 + n * w / 3, "y": frame_box["y"] + 64, "width": w / 3,
               "height": (frame_box["height"] - 64) / 2}
    return box


def _stroke(page, points, n: int = 0) -> None:
    """Press, move through *points* (fractions of view *n*), release."""
    box = _view_box(page, n)
    xy = [(box["x"] + box["width"] * x, box["y"] + box["height"] * y) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=6)
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


def test_reader_edits_with_slicer_effects_autosaves_reloads_and_submits(station, browser, tmp_path):
    from playwright.sync_api import expect
    from scipy import ndimage

    shots = DOCS if UPDATE_DOCS else tmp_path

    url, folder = station["url"], station["folder"]
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
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
    frame = _views(page)
    start = _voxels(page)
    model = _mask_sum(folder / "model" / label / "seg.nii.gz")
    assert start == (model if arm == "assisted" else 0)  # assisted starts from the model's mask

    # Paint (Slicer's brush) on the subtraction's view
    _effect(frame, "mdi-brush")
    _stroke(page, [(0.3, 0.4), (0.5, 0.42), (0.7, 0.45)])
    painted = _settled(page, other_than=start)
    assert painted > start
    versions = folder / "readers" / "a" / label / arm
    _wait_for(lambda: any(versions.glob("v*.nii.gz")) and
              _mask_sum(sorted(versions.glob("v*.nii.gz"))[-1]) == painted, timeout=30, what="the autosave")
    expect(page.locator("#state")).to_have_text("saved", timeout=30_000)

    page.reload()
    frame = _views(page)
    assert _voxels(page) == painted  # the same scene after a reload
    page.screenshot(path=str(shots / "web_station_case.png"))

    # another orientation: all three views follow (linked)
    frame.locator("#orient-coronal").click()
    page.wait_for_timeout(2000)
    page.screenshot(path=str(shots / "web_station_coronal.png"))
    frame.locator("#orient-axial").click()
    page.wait_for_timeout(1000)

    # Draw: a closed polygon on the subtraction fills its inside
    _effect(frame, "mdi-draw")
    _stroke(page, [(0.35, 0.55), (0.55, 0.55), (0.55, 0.7), (0.35, 0.7), (0.35, 0.56)])
    drawn = _settled(page, other_than=painted)
    assert drawn > painted

    # Threshold (Slicer's effect, its Apply button) then Islands, keep the largest; Undo
    _effect(frame, "mdi-auto-fix")
    page.wait_for_timeout(1000)
    frame.get_by_role("button", name="Apply").first.click()
    thresholded = _settled(page, other_than=drawn)
    _effect(frame, "mdi-scatter-plot")
    page.wait_for_timeout(1000)
    frame.get_by_text("Keep largest", exact=False).first.click()
    page.wait_for_timeout(500)
    frame.get_by_role("button", name="Apply").first.click()
    kept = _settled(page, other_than=thresholded)
    assert kept < thresholded
    page.click("#undo")  # the station's Undo undoes the editor's last step
    assert _settled(page, other_than=kept) == thresholded
    frame.get_by_role("button", name="Apply").first.click()  # islands again: one component left
    assert _settled(page, other_than=thresholded) == kept
    page.wait_for_timeout(3000)
    assert _settled(page) == kept  # nothing changes after an effect's result has settled
    _wait_for(lambda: _mask_sum(sorted(versions.glob("v*.nii.gz"))[-1]) == kept, timeout=30, what="the autosave")
    saved = sitk.GetArrayFromImage(sitk.ReadImage(str(sorted(versions.glob("v*.nii.gz"))[-1])))
    assert ndimage.label(saved > 0)[1] == 1  # islands "keep largest": one connected component saved

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
    bg.call(bg.station.tick_sync)
    assert "a" not in bg.station.workspaces and not (folder / "readers" / "a" / "session.lock").exists()
    page.reload()
    _views(page)
    assert _voxels(page) == kept  # the edits came back from the study folder

    page.click("#submit")
    expect(page.locator("#submit")).to_have_text("Confirm submit")
    page.click("#submit")
    page.wait_for_url("**/case/1", timeout=120_000)
    final = versions / "submitted.nii.gz"
    assert final.exists() and not os.stat(final).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert _mask_sum(final) == kept
    expect(page.locator("#title")).to_have_text("case 2 of 4")
    expect(page.locator("#progress")).to_have_text("1 of 4 submitted")

    # the submitted case opens read-only
    page.goto(url + "/case/0")
    expect(page.locator("#state")).to_have_text("submitted (locked)", timeout=60_000)
    assert _mask_sum(final) == kept

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
              "/study.json", "/access.json", "/api/case/0/slice/../../../etc/passwd", "/api/case/0/slice/sub/999.png",
              "/view/4/index.html", "/view/99/ws", "/view/-1/index.html", "/view/x/index.html",
              "/view/0/..%2F..%2Fstudy.json"]
    for path in forged:
        r = pb.request.get(url + path, max_redirects=0)
        assert r.status == 404, (path, r.status)
    # a's open case is not reachable with b's session: b's case 1 is not open -> conflict, no data
    r = pb.request.get(url + "/api/case/1/info")
    assert r.status == 409
    # b's case 1 is not open: its views are not served (409, no data)
    assert pb.request.get(url + "/view/1/index.html").status == 409
    # edits go through Slicer's effects in the views: the old stroke endpoint is gone
    assert pb.request.post(url + "/api/case/0/stroke", headers={"X-Station": "1"},
                           data={"tool": "paint", "slice": 0, "points": [[1, 1]]}).status == 404
    # the views are framed by the station's own page only, and carry no station cookie upstream
    r = pb.request.get(url + "/view/0/index.html")
    assert r.status == 200 and r.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]
    assert pb.request.post(url + "/api/case/0/format-disk", headers={"X-Station": "1"}, data={}).status == 404
    assert pb.request.post(url + "/api/case/0/undo", data={}).status == 403  # no X-Station header: refused
    # without a session nothing but the log-in page
    anon = browser.new_context()
    r = anon.request.get(url + "/api/case/0/info")
    assert r.status == 401
    r = anon.request.get(url + "/case/0", max_redirects=0)
    assert r.status == 303 and r.headers["location"] == "/"
    r = anon.request.get(url + "/view/0/index.html", max_redirects=0)
    assert r.status == 303 and r.headers["location"] == "/"  # not logged in: to the log-in page
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
    frame2 = _views(tab2)
    _effect(frame2, "mdi-brush")
    _stroke(tab2, [(0.3, 0.6), (0.6, 0.62)])
    after = _settled(tab2, other_than=before)
    tab1.reload()
    _views(tab1)
    assert _voxels(tab1) == after > before  # one scene for both tabs
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
    assert _mask_sum(sorted((folder / "readers" / "b" / label / arm).glob("v*.nii.gz"))[-1]) == after
    ctx.close()
    replay.close()


def test_click_to_correct_in_the_assisted_arm(station, browser):
    """A "not tumor" click on the model's lesion takes it out, a "tumor" click at the same point
    grows it back from the contrast kinetics (engine/refine.py), Undo takes a click back; the
    unaided arm offers no clicks."""
    from playwright.sync_api import expect

    from BreastTumorSegLib.evaluation.metrics import dice
    from BreastTumorSegLib.web.reader_scene import PHASES

    url, folder, bg = station["url"], station["folder"], station["bg"]
    order = json.loads((folder / "study.json").read_text())["orders"]["c"]
    index = 0
    label, arm = order[index]
    assert arm == "assisted"  # the study's seed puts reader c's assisted reading of a case first
    unaided = next(i for i, (lab, a) in enumerate(order) if a == "unaided" and
                   all(lab2 != lab for lab2, _ in order[:i]))
    token = station["tokens"]["c"]
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        _login(page, url, "c", token)
        page.goto(f"{url}/case/{index}")
        frame = _views(page)
        model = sitk.ReadImage(str(folder / "model" / label / "seg.nii.gz"))  # the phantom's truth
        truth = sitk.GetArrayFromImage(model) > 0
        assert _voxels(page) == int(truth.sum())  # the assisted arm opens with the model's mask
        # the subtraction's view centred on the lesion (its middle voxel), so the click goes to its middle
        k, j, i = (int(round(v)) for v in np.argwhere(truth).mean(0))
        lps = model.TransformIndexToPhysicalPoint((i, j, k))
        ras = (-lps[0], -lps[1], lps[2])

        def centre():
            view = bg.station.workspaces["c"].view.scene.slice_view(PHASES["sub"][1])
            view.get_view_node().JumpSliceByCentering(*ras)
            view.schedule_render()

        bg.call(centre)
        page.wait_for_timeout(1500)

        def click_mode(mode):  # the toolbar's mode, once the station has it (trame sends state changes batched)
            frame.locator(f"#click-{mode.replace(' ', '-')}").click()
            _wait_for(lambda: bg.call(lambda: bg.station.workspaces["c"].view.server.state.click_mode) == mode,
                      timeout=30, what=f"click mode {mode!r} on the station")

        def clicks():
            return bg.call(lambda: list(bg.station.workspaces["c"].corrector.log))

        box = _view_box(page, 0)
        middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

        click_mode("not tumor")
        page.mouse.click(*middle)
        assert _settled(page, other_than=int(truth.sum())) == 0, clicks()  # the whole lesion was "not tumor"
        log = clicks()
        assert log[-1]["action"] == "removed" and log[-1]["sign"] == "-"
        assert np.linalg.norm(np.subtract(log[-1]["ras_mm"], ras)) < 6.0  # the click landed where the mouse was

        click_mode("tumor")
        page.mouse.click(*middle)
        _wait_for(lambda: len(clicks()) == 2, timeout=60, what="the second click")
        assert clicks()[-1]["action"] == "added", clicks()
        grown = _settled(page, other_than=0)
        versions = folder / "readers" / "c" / label / arm
        _wait_for(lambda: any(versions.glob("v*.nii.gz")) and
                  _mask_sum(sorted(versions.glob("v*.nii.gz"))[-1]) == grown, timeout=30, what="the autosave")
        saved = sitk.GetArrayFromImage(sitk.ReadImage(str(sorted(versions.glob("v*.nii.gz"))[-1]))) > 0
        assert dice(saved, truth) >= 0.8  # grown back from the kinetics: the phantom's lesion
        page.click("#undo")  # the station's Undo takes the last click back
        assert _settled(page, other_than=grown) == 0
        _effect(frame, "mdi-brush")  # choosing an effect ends the click mode
        expect(frame.locator("#click-off")).to_have_class(__import__("re").compile(r"v-btn--active"))

        page.goto(f"{url}/case/{unaided}")  # the unaided arm: no click-to-correct
        frame = _views(page)
        expect(frame.locator("#orient-axial")).to_be_visible()
        assert frame.locator("#click-mode").count() == 0
        page.click("#logout")  # saves and releases her study lock (the next test serves the study again)
        page.wait_for_url(url + "/")
    finally:  # her study lock goes back even when a check failed (the CLI test below serves her)
        if bg.station.workspaces.get("c") is not None:
            bg.station.workspaces["c"].last_seen -= 10 * bg.station.release_after_s
            bg.call(bg.station.tick_sync)
        ctx.close()


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

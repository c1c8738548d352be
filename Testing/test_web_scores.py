"""The web station's per-breast score form (web/scores.py) in a real headless Chromium.

A one-case study (two readings: unaided, assisted) made with ``scores=["probability", "birads"]`` and a model (its outputs given):
the form appears on the case page, a breast is stored once both of its scores are given, Submit
is refused while a breast lacks them, the model's score is shown in the assisted arm only, a
submitted reading's scores are read-only, and the API refuses out-of-range values.
"""
from __future__ import annotations

import json
import shutil

import pytest
from study_fixtures import write_study_cases

pytest.importorskip("aiohttp")
CHROMIUM = shutil.which("chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (the station's views; `pip install -e "
                        "\".[web]\"` or \".[test]\", which pin slicer-core 5.11)")
    from BreastTumorSegLib.study.coordinator import init_study
    from BreastTumorSegLib.web.auth import issue_tokens
    from BreastTumorSegLib.web.server import BackgroundStation

    root = write_study_cases(tmp_path_factory.mktemp("webscores"), (2,), n_phases=2)
    folder = root / "study"
    study = init_study(root / "cases.csv", ["a"], ["unaided", "assisted"], folder, seed=3, model="ftv",
                       model_outputs=root / "model", breast_region=False, scores=["probability", "birads"])
    tokens = issue_tokens(folder, ["a"])
    bg = BackgroundStation(folder, tick_s=0.3)
    url = bg.start()
    yield {"url": url, "folder": folder, "token": tokens["a"], "study": study}
    bg.stop()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (CI installs it with .ci/install-test-browser)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


def test_reader_scores_each_breast_on_the_web_station(station, browser):
    from playwright.sync_api import expect

    url, folder, study = station["url"], station["folder"], station["study"]
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(url + "/")
    page.fill("#reader", "a")
    page.fill("#token", station["token"])
    page.click("#login")
    page.wait_for_url("**/worklist")
    order = study.orders["a"]
    for i, (label, arm) in enumerate(order):
        page.goto(f"{url}/case/{i}")
        expect(page.locator("#scores")).to_be_visible()
        model = study.case_by_label(label).model["scores"]
        for side in ("left", "right"):
            want = f"model: {round(100 * model[side])} %" if arm == "assisted" else ""
            expect(page.locator(f"#model-{side}")).to_have_text(want)
        page.fill("#prob-left", "15")
        page.locator("#prob-left").dispatch_event("change")
        expect(page.locator("#scores-state")).to_have_text("left: not complete yet")
        page.select_option("#birads-left", "2")
        expect(page.locator("#scores-state")).to_have_text("scores saved")
        page.click("#submit")
        page.click("#submit")  # confirm: refused, the right breast has no scores yet
        expect(page.locator("#message")).to_contain_text("scores of both breasts")
        expect(page.locator("#submit")).to_have_text("Submit")  # the next submit asks again
        page.fill("#prob-right", "85")
        page.locator("#prob-right").dispatch_event("change")
        page.select_option("#birads-right", "4B")
        expect(page.locator("#scores-state")).to_have_text("scores saved")
        state = json.loads((folder / "readers" / "a" / "state.json").read_text())
        assert state["items"][f"{label}/{arm}"]["scores"] == {"left": {"probability": 15.0, "birads": "2"},
                                                               "right": {"probability": 85.0, "birads": "4B"}}
        page.click("#submit")
        page.click("#submit")
        page.wait_for_url(f"**/{'case/' + str(i + 1) if i + 1 < len(order) else 'worklist'}")
    # a submitted reading shows its scores read-only; the API refuses to change them
    page.goto(f"{url}/case/0")
    expect(page.locator("#prob-left")).to_have_value("15")
    expect(page.locator("#prob-left")).to_be_disabled()
    r = page.request.post(f"{url}/api/scores/0", headers={"X-Station": "1"}, data={"left": {"probability": 50,
                                                                                          "birads": "3"}})
    assert r.status == 409 and "submitted" in r.json()["error"] and str(folder) not in r.text()
    r = page.request.post(f"{url}/api/scores/9", headers={"X-Station": "1"}, data={"left": {"probability": 5}})
    assert r.status == 404

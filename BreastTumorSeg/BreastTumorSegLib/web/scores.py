"""The reader's per-breast scores on the web station: one HTML fragment, one script, one route.

Self-contained beside the case page's viewer: ``FORM`` goes into the case page, ``/scores.js``
drives it, and ``/api/scores/{index}`` reads (GET) and stores (POST) the scores of the open
reading through :meth:`ReaderSession.set_scores` (validated, timed, written to ``state.json`` at
once; refused once submitted). The form stays hidden when the study asks for no scores; the
model's per-breast probability is shown in the assisted arm only. ``Submit`` is refused by the
session (409, shown on the page) while a breast lacks a score.
"""
from __future__ import annotations

import json

FORM = """<fieldset id="scores" hidden><legend>Scores per breast</legend>
<table><tr><th></th><th class="prob">probability of malignancy</th><th class="birads">BI-RADS</th><th></th></tr>
<tr><td>Left</td><td class="prob"><input id="prob-left" type="number" min="0" max="100" step="1" size="4"> %</td>
<td class="birads"><select id="birads-left"></select></td><td id="model-left" class="caption"></td></tr>
<tr><td>Right</td><td class="prob"><input id="prob-right" type="number" min="0" max="100" step="1" size="4"> %</td>
<td class="birads"><select id="birads-right"></select></td><td id="model-right" class="caption"></td></tr>
</table><span id="scores-state" class="caption"></span></fieldset>"""

SCRIPT_TAG = '<script src="/scores.js"></script>'

SCRIPT = r"""
"use strict";
(() => {
const idx = document.body.dataset.index, sides = ["left", "right"];
const CATS = ["", "1", "2", "3", "4A", "4B", "4C", "4", "5", "6", "0"];
const $ = (id) => document.getElementById(id);
let kinds = [];
async function call(body) {
  const r = await fetch(`/api/scores/${idx}`, {method: body === undefined ? "GET" : "POST",
    headers: {"Content-Type": "application/json", "X-Station": "1"}, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body)});
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}
function fill(j) {
  kinds = j.kinds;
  $("scores").hidden = kinds.length === 0;
  for (const el of document.querySelectorAll("#scores .prob")) el.hidden = !kinds.includes("probability");
  for (const el of document.querySelectorAll("#scores .birads")) el.hidden = !kinds.includes("birads");
  for (const s of sides) {
    const given = j.scores[s] || {};
    $(`prob-${s}`).value = given.probability === undefined ? "" : given.probability;
    $(`birads-${s}`).value = given.birads === undefined ? "" : given.birads;
    $(`prob-${s}`).disabled = $(`birads-${s}`).disabled = j.locked;
    $(`model-${s}`).textContent = j.model && j.model[s] !== undefined ? `model: ${Math.round(100 * j.model[s])} %` : "";
  }
  $("scores-state").textContent = j.locked ? "submitted (locked)" : "";
}
async function changed(s) {
  const rec = {};
  if (kinds.includes("probability") && $(`prob-${s}`).value !== "") rec.probability = parseFloat($(`prob-${s}`).value);
  if (kinds.includes("birads") && $(`birads-${s}`).value !== "") rec.birads = $(`birads-${s}`).value;
  if (Object.keys(rec).length < kinds.length) { $("scores-state").textContent = `${s}: not complete yet`; return; }
  try { fill(await call({[s]: rec})); $("scores-state").textContent = "scores saved"; }
  catch (e) { $("scores-state").textContent = e.message; }
}
for (const s of sides) {
  for (const c of CATS) { const o = document.createElement("option"); o.value = o.textContent = c; $(`birads-${s}`).appendChild(o); }
  $(`prob-${s}`).addEventListener("change", () => changed(s));
  $(`birads-${s}`).addEventListener("change", () => changed(s));
}
call().then(fill).catch((e) => { $("scores-state").textContent = e.message; });
})();
"""


def _state(ws) -> dict:
    view = ws.session.current
    return {"kinds": list(view.score_kinds), "scores": ws.session.scores if view.score_kinds else {},
            "model": view.model_scores, "locked": view.locked}


async def json_body(request):
    """The request's JSON body, or None when it is not JSON: also a body nested so deep that the
    parser gives up (RecursionError, not a ValueError: a 500 with a traceback before)."""
    try:
        return await request.json()
    except (ValueError, RecursionError):
        return None


async def api_scores(request, case_request, open_case):
    from aiohttp import web

    station, reader, index = case_request(request)
    body = None
    if request.method == "POST":
        body = await json_body(request)
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text=json.dumps({"error": 'send {"left": {...}, "right": {...}}'}),
                                     content_type="application/json")

    def work():
        ws = open_case(station, reader, index, active=body is not None)
        if body is not None:
            ws.session.set_scores(body)  # an InputError / SubmittedError becomes a 409 with its message
        return _state(ws)

    return web.json_response(await station.run(work))


async def script(request):
    from aiohttp import web

    return web.Response(text=SCRIPT, content_type="application/javascript")


def add_routes(app, case_request, open_case) -> None:
    """Register ``/scores.js`` and ``/api/scores/{index}`` on the station's aiohttp application;
    *case_request* and *open_case* are the station's own (authenticated request -> station, reader,
    index; -> the reader's workspace on that case)."""
    async def handler(request):
        return await api_scores(request, case_request, open_case)

    app.router.add_get("/scores.js", script)
    app.router.add_get(r"/api/scores/{index}", handler)
    app.router.add_post(r"/api/scores/{index}", handler)

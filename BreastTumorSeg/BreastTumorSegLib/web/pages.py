"""The station's HTML pages and its one script. Pages show pseudonymised positions only
("case 7 of 40"), never a case id, file name or path."""
from __future__ import annotations

from html import escape

from . import scores

STYLE = """
body{font-family:system-ui,sans-serif;background:#16181d;color:#e6e6e6;margin:0}
header{display:flex;gap:1em;align-items:center;padding:.5em 1em;background:#23262e}
header .grow{flex:1} a{color:#8ec5ff} button{font-size:1em;padding:.3em .8em;margin:.1em}
main{padding:1em} table{border-collapse:collapse} td,th{padding:.3em .8em;border-bottom:1px solid #333}
div.case{display:flex;flex-direction:column;height:100vh} div.case iframe{flex:1;border:0;width:100%}
.error{color:#ff8080} .ok{color:#8f8}
"""


def page(title: str, body: str, script: bool = False, data: str = "") -> str:
    js = '<script src="/station.js"></script>' if script else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body{data}>{body}{js}</body></html>")


def login_page(message: str = "") -> str:
    msg = f'<p class="error" id="message">{escape(message)}</p>' if message else ""
    return page("Reader station: log in", f"""
<header><b>BreastTumorSeg reader station</b></header>
<main><h2>Log in</h2>{msg}
<form method="post" action="/login" autocomplete="off">
<p><label>Reader <input name="reader" id="reader" required></label></p>
<p><label>Token <input name="token" id="token" type="password" required></label></p>
<p><button type="submit" id="login">Log in</button></p></form></main>""")


def _header(reader: str, extra: str = "") -> str:
    return (f'<header><b>Reader station</b><span>reader: <b id="who">{escape(reader)}</b></span>{extra}'
            '<span class="grow"></span><a href="/worklist">worklist</a>'
            '<form method="post" action="/logout" style="margin:0"><button id="logout">Log out</button></form></header>')


def worklist_page(reader: str, items: list[dict], done: int) -> str:
    rows = "".join(
        f'<tr><td><a href="/case/{it["index"]}" class="case">{escape(it["title"])}</a></td>'
        f'<td>{escape(it["status"])}</td><td>{"" if it["available"] else "not yet (wash-out)"}</td></tr>'
        for it in items)
    return page("Worklist", _header(reader) + f"""
<main><h2>Your worklist</h2><p id="progress">{done} of {len(items)} submitted</p>
<table id="worklist"><tr><th>reading</th><th>status</th><th></th></tr>{rows}</table></main>""")


def message_page(reader: str, text: str) -> str:
    return page("Reader station", _header(reader) + f'<main><p class="error" id="message">{escape(text)}</p></main>')


def case_page(reader: str, index: int, title: str) -> str:
    """The case: the station's header (position, time, saved state, Undo, Pause, Submit) over
    trame-slicer's views and segment editor (framed from ``/view/<index>/``)."""
    extra = (f'<span id="title">{escape(title)}</span><span id="progress"></span>'
             '<span>time <b id="timer">0:00</b></span><span id="state"></span><span id="volume"></span>'
             '<button id="undo">Undo</button><button id="pause">Pause</button><button id="submit">Submit</button>'
             '<span id="message" class="error"></span>')
    return page(title, '<div class="case">' + _header(reader, extra) + scores.FORM +
                f'<iframe id="views" title="views and segment editor" src="/view/{int(index)}/index.html"></iframe>'
                '</div>' + scores.SCRIPT_TAG, script=True, data=f' data-index="{int(index)}"')


SCRIPT = r"""
"use strict";
const idx = document.body.dataset.index;
let info = null, poller = null, active = 0, submitArmed = false;
const $ = (id) => document.getElementById(id);
async function api(path, body) {
  const r = await fetch(`/api/case/${idx}/${path}`, {method: body === undefined ? "GET" : "POST",
    headers: {"Content-Type": "application/json", "X-Station": "1"}, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body)});
  if (r.status === 401) { location.href = "/"; throw new Error("logged out"); }
  if (r.status === 409 && path === "info") {  // released as idle, or another tab opened another case
    clearInterval(poller); $("message").textContent = "This case was closed here (idle, or another case was " +
      "opened in another tab). Reload the page to continue."; throw new Error("closed"); }
  const j = await r.json();
  if (!r.ok) { $("message").textContent = j.error || r.statusText; throw new Error(j.error); }
  return j;
}
function fmt(s) { s = Math.floor(s); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; }
function show(j) {
  info = j; active = j.active_s;
  $("progress").textContent = `${j.done} of ${j.total} submitted`;
  $("state").textContent = j.locked ? "submitted (locked)" : j.paused ? "paused" : (j.unsaved ? "unsaved changes" : "saved");
  $("state").className = j.unsaved ? "" : "ok";
  $("volume").textContent = `segmented: ${j.volume_ml.toFixed(2)} mL`;
  $("volume").dataset.voxels = j.voxels;
  $("pause").textContent = j.paused ? "Resume" : "Pause";
}
async function start() {
  let j = await api("info");
  if (j.paused && j.pause_reason === "background") j = await api("resume", {});  // back in front
  show(j);
  $("undo").onclick = async () => show(await api("undo", {}));
  $("pause").onclick = async () => show(await api(info.paused ? "resume" : "pause", {reason: "explicit"}));
  $("submit").onclick = async () => {
    if (!submitArmed) { submitArmed = true; $("submit").textContent = "Confirm submit"; return; }
    submitArmed = false; $("submit").textContent = "Submit";  // a refused submit asks again next time
    const j = await api("submit", {});
    location.href = j.next === null ? "/worklist" : `/case/${j.next}`;
  };
  setInterval(() => { if (info && !info.paused && !info.locked) { active += 1; $("timer").textContent = fmt(active); } }, 1000);
  poller = setInterval(async () => show(await api("info")), 2000);
  document.addEventListener("visibilitychange", async () => {
    if (document.hidden && !info.paused) show(await api("pause", {reason: "background"}));
    else if (!document.hidden && info.paused && info.pause_reason === "background") show(await api("resume", {})); });
  $("timer").textContent = fmt(active);
}
start();
"""

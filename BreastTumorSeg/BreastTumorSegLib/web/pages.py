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
.views{display:flex;gap:1em;align-items:flex-start;flex-wrap:wrap}
.view{position:relative;background:#000} .view img{display:block;image-rendering:pixelated}
.view canvas{position:absolute;left:0;top:0;cursor:crosshair}
.caption{font-size:.85em;color:#aaa} .tools label{margin-right:.8em}
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
    extra = (f'<span id="title">{escape(title)}</span><span id="progress"></span>'
             '<span>time <b id="timer">0:00</b></span><span id="state"></span>')
    return page(title, _header(reader, extra) + """
<main>
<div class="tools">
 <label><input type="radio" name="tool" value="paint" checked> paint</label>
 <label><input type="radio" name="tool" value="erase"> erase</label>
 <label><input type="radio" name="tool" value="threshold"> threshold paint</label>
 <label>range <input id="lo" type="number" step="any" size="6"> to <input id="hi" type="number" step="any" size="6"></label>
 <label>brush <input id="radius" type="number" value="3" min="0.5" max="30" step="0.5" size="4"> mm</label>
 <button id="undo">Undo</button><button id="pause">Pause</button><button id="submit">Submit</button>
 <span id="volume"></span>
</div>
<p><label>slice <input id="slice" type="range" min="0" max="0" value="0"></label> <span id="sliceno"></span>
 <span class="caption">mouse wheel scrolls; paint on the subtraction; Ctrl+Z undoes</span></p>
<div class="views" id="views"></div>
""" + scores.FORM + """
<p id="message" class="error"></p>
</main>""" + scores.SCRIPT_TAG, script=True, data=f' data-index="{int(index)}"')


SCRIPT = r"""
"use strict";
const idx = document.body.dataset.index;
let info = null, poller = null, k = 0, stamp = 0, drawing = false, pts = [], busy = false, active = 0, submitArmed = false;
const wl = {};
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
function src(v) { const [w, l] = wl[v]; return `/api/case/${idx}/slice/${v}/${k}.png?w=${w}&l=${l}&overlay=1&s=${stamp}`; }
function refresh() {
  $("sliceno").textContent = `${k + 1} / ${info.slices}`; $("slice").value = k;
  for (const v of info.views) $(`img-${v.key}`).src = src(v.key);
}
function build() {
  const [ss, rs, cs] = info.spacing;
  for (const v of info.views) {
    wl[v.key] = info.windows[v.key].slice();
    const big = v.key === "sub", maxpx = big ? 480 : 280;
    const scale = maxpx / Math.max(info.rows * rs, info.cols * cs);
    const W = Math.round(info.cols * cs * scale), H = Math.round(info.rows * rs * scale);
    const [w0, l0] = info.windows[v.key];
    const div = document.createElement("div");
    div.innerHTML = `<div class="view" id="view-${v.key}" style="width:${W}px;height:${H}px">
      <img id="img-${v.key}" width="${W}" height="${H}" alt="${v.name}">
      ${big ? `<canvas id="paint" width="${W}" height="${H}"></canvas>` : ""}</div>
      <div class="caption">${v.name}${big ? " (paint here)" : ""}</div>
      <div class="caption">window <input type="range" id="w-${v.key}" min="${w0 / 20}" max="${w0 * 4}" step="any" value="${w0}">
      level <input type="range" id="l-${v.key}" min="${l0 - 2 * w0}" max="${l0 + 2 * w0}" step="any" value="${l0}"></div>`;
    $("views").appendChild(div);
    for (const which of ["w", "l"]) $(`${which}-${v.key}`).addEventListener("input", (e) => {
      wl[v.key][which === "w" ? 0 : 1] = parseFloat(e.target.value); $(`img-${v.key}`).src = src(v.key); });
    $(`view-${v.key}`).addEventListener("wheel", (e) => { e.preventDefault();
      k = Math.max(0, Math.min(info.slices - 1, k + (e.deltaY > 0 ? 1 : -1))); refresh(); });
  }
  $("slice").max = info.slices - 1;
  $("slice").addEventListener("input", (e) => { k = parseInt(e.target.value); refresh(); });
  const c = $("paint"), ctx = c.getContext("2d");
  const at = (e) => [e.offsetY / c.height * info.rows, e.offsetX / c.width * info.cols];
  c.addEventListener("mousedown", (e) => { if (e.button !== 0 || info.locked) return; drawing = true; pts = [at(e)]; });
  c.addEventListener("mousemove", (e) => { if (!drawing) return; pts.push(at(e));
    ctx.fillStyle = "rgba(255,200,0,.6)"; ctx.beginPath();
    ctx.arc(e.offsetX, e.offsetY, Math.max(2, parseFloat($("radius").value) / cs * c.width / info.cols), 0, 7); ctx.fill(); });
  const finish = async () => { if (!drawing) return; drawing = false; const p = pts; pts = [];
    const tool = document.querySelector("input[name=tool]:checked").value;
    const body = {tool, slice: k, points: p, radius_mm: parseFloat($("radius").value)};
    if (tool === "threshold") { body.lo = parseFloat($("lo").value); body.hi = parseFloat($("hi").value); }
    try { show(await api("stroke", body)); } finally { ctx.clearRect(0, 0, c.width, c.height); stamp++; refresh(); } };
  c.addEventListener("mouseup", finish); c.addEventListener("mouseleave", finish);
}
async function start() {
  let j = await api("info");
  if (j.paused && j.pause_reason === "background") j = await api("resume", {});  // back in front
  show(j); k = j.start_slice; build(); refresh();
  $("lo").value = (j.windows.sub[1]).toFixed(1); $("hi").value = (j.windows.sub[1] + j.windows.sub[0]).toFixed(1);
  $("undo").onclick = async () => { show(await api("undo", {})); stamp++; refresh(); };
  document.addEventListener("keydown", (e) => { if (e.ctrlKey && e.key === "z") $("undo").click(); });
  $("pause").onclick = async () => show(await api(info.paused ? "resume" : "pause", {reason: "explicit"}));
  $("submit").onclick = async () => {
    if (!submitArmed) { submitArmed = true; $("submit").textContent = "Confirm submit"; return; }
    submitArmed = false; $("submit").textContent = "Submit";  // a refused submit asks again next time
    const j = await api("submit", {});
    location.href = j.next === null ? "/worklist" : `/case/${j.next}`;
  };
  setInterval(() => { if (info && !info.paused && !info.locked) { active += 1; $("timer").textContent = fmt(active); } }, 1000);
  poller = setInterval(async () => show(await api("info")), 5000);
  document.addEventListener("visibilitychange", async () => {
    if (document.hidden && !info.paused) show(await api("pause", {reason: "background"}));
    else if (!document.hidden && info.paused && info.pause_reason === "background") show(await api("resume", {})); });
  $("timer").textContent = fmt(active);
}
start();
"""

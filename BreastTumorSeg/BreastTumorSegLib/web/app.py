"""The station's web server (aiohttp): log-in, worklist, case pages, the case API and the views.

A case's views and editor are trame-slicer's (:mod:`.trame_session`): one trame server per open
case on 127.0.0.1, reached only through ``/view/<index>/...`` here, after the reader's session
cookie and worklist are checked. All work on a reader's scene runs on the event loop's thread
(trame renders there; VTK objects stay on one thread); registering a case's phases when it opens
runs on a small pool beside it, so one reader opening a large exam does not hold up the others. Every refusal -- a wrong token, a replayed cookie after logout, a
case or path outside the reader's worklist -- is answered 401/404 and logged with the reader and
the reason, never with a case id or a path of the study.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import ClientSession, web

from ..core.errors import BreastTumorSegError
from ..study.definition import load_study
from ..study.storage import StudyLockedError, append_line
from . import pages, proxy, scores
from .auth import Sessions, check_token, read_access
from .workspace import STOPPING, ReaderWorkspace

COOKIE = "bts_session"
LOG = logging.getLogger("BreastTumorSeg.web")
# The case's views (trame's Vue client: it compiles its templates, hence 'unsafe-eval') are framed by
# the station's own case page only.
VIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-inline' 'unsafe-eval'; connect-src 'self'; "
                               "worker-src 'self' blob:; frame-ancestors 'self'; form-action 'none'",
    "X-Frame-Options": "SAMEORIGIN",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Station:
    """The state of one running station: the study, logged-in browsers and readers' workspaces."""

    def __init__(self, study_folder, release_after_s: float = 900.0, tick_s: float = 2.0):
        self.folder = Path(study_folder)
        self.study = load_study(self.folder)
        self.access = read_access(self.folder)
        self.sessions = Sessions()
        self.workspaces: dict[str, ReaderWorkspace] = {}
        self.release_after_s = float(release_after_s)
        self.tick_s = float(tick_s)
        self.loader = ThreadPoolExecutor(2, thread_name_prefix="load")  # registration (SimpleITK)
        self._task = None

        self.client = None  # the aiohttp client that forwards /view/ requests to the trame servers

    async def run(self, fn, *args):
        """Run scene work on the loop's thread: trame renders there, and VTK stays on one thread."""
        return fn(*args)

    def record_refusal(self, reader: str | None, why: str, status: int) -> None:
        """Log a refusal with the reader and the reason only (no path, no case id)."""
        rec = {"event": "refused", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "reader": reader, "reason": why, "status": status}
        LOG.warning("refused (%s) %s: %s", status, reader or "not logged in", why)
        try:
            append_line(self.folder / "station.jsonl", rec)
        except OSError as exc:
            LOG.error("cannot write station.jsonl: %s", exc)

    def refuse(self, request, reader: str | None, why: str, status: int):
        """Record a refusal and raise the HTTP error (JSON for the API, a page otherwise)."""
        self.record_refusal(reader, why, status)
        if request.path.startswith("/api/"):
            raise (web.HTTPUnauthorized if status == 401 else web.HTTPNotFound)(
                text=json.dumps({"error": why}), content_type="application/json")
        if status == 401:
            raise web.HTTPSeeOther("/")
        raise web.HTTPNotFound(text=pages.message_page(reader or "", "Not found."), content_type="text/html")

    def workspace_sync(self, reader: str) -> ReaderWorkspace:
        ws = self.workspaces.get(reader)
        if ws is None:
            ws = self.workspaces[reader] = ReaderWorkspace(self.folder, reader)
            LOG.info("reader %s: session opened", reader)
        ws.touch()
        return ws

    def tick_sync(self) -> None:
        """Autosave every workspace; save and release the ones idle longer than release_after_s."""
        now = time.monotonic()
        for reader, ws in list(self.workspaces.items()):
            try:
                if now - ws.last_seen > self.release_after_s:
                    ws.release()
                    del self.workspaces[reader]
                    LOG.info("reader %s: idle for %.0f s, saved and released", reader, now - ws.last_seen)
                else:
                    ws.session.keep_alive()  # the engine's lock heartbeat: an idle reader's lock stays hers
                    ws.autosave()
            except BreastTumorSegError as exc:
                LOG.error("reader %s: %s", reader, exc)

    def release_sync(self, reader: str) -> None:
        """(loop thread) Save the reader's work, end her session and free her scene."""
        ws = self.workspaces.pop(reader, None)
        if ws is not None:
            try:
                ws.release()
            except BreastTumorSegError as exc:
                LOG.error("reader %s: %s", reader, exc)

    def release_all_sync(self) -> None:
        for reader in list(self.workspaces):
            self.release_sync(reader)

    async def ticker(self):
        while True:
            await asyncio.sleep(self.tick_s)
            await self.run(self.tick_sync)


STATION = web.AppKey("station", Station)


def _reader(request) -> str | None:
    station = request.app[STATION]
    sid = request.cookies.get(COOKIE)
    reader = station.sessions.reader(sid)
    if reader is None:
        replay = station.sessions.revoked_reader(sid)
        why = "session cookie replayed after logout" if replay else "not logged in"
        station.refuse(request, replay, why, 401)
    return reader


MAX_BODY = 4 << 20  # the largest request body the station accepts (a log-in form is a few hundred bytes)


@web.middleware
async def guard(request, handler):
    if request.method == "POST":
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        if request.content_length is None and request.body_exists:
            await request.read()  # a chunked body: read up to client_max_size, 413 beyond it
    if request.method == "POST" and request.path.startswith("/api/") and request.headers.get("X-Station") != "1":
        raise web.HTTPForbidden(text="missing X-Station header")
    origin = request.headers.get("Origin")
    if request.method == "POST" and origin and origin.split("://", 1)[-1] != request.host:
        raise web.HTTPForbidden(text="cross-origin request refused")
    try:
        response = await handler(request)
    except web.HTTPNotFound as exc:
        if exc.text and exc.text.startswith(("{", "<!doctype")):
            raise
        station = request.app[STATION]
        reader = station.sessions.reader(request.cookies.get(COOKIE))
        station.refuse(request, reader, "no such page", 404)
    except BreastTumorSegError as exc:  # e.g. the reader is reading in Slicer (the engine's lock)
        LOG.info("refused: %s", exc)
        station = request.app[STATION]
        if isinstance(exc, StudyLockedError):
            text = "Your reading is open elsewhere (Slicer or another station). Close it there first."
        else:  # the engine's messages name files; the reader sees them relative to the study
            text = str(exc)
            for root in {str(station.folder.resolve()), str(station.folder)}:
                text = text.replace(root, "STUDY")
        if request.path.startswith("/api/"):
            response = web.json_response({"error": text}, status=409)
        else:
            reader = station.sessions.reader(request.cookies.get(COOKIE)) or ""
            response = web.Response(text=pages.message_page(reader, text), content_type="text/html", status=409)
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith("/view/") and response.status < 300:
        response.headers.update(VIEW_HEADERS)
    return response


async def home(request):
    if request.app[STATION].sessions.reader(request.cookies.get(COOKIE)):
        raise web.HTTPSeeOther("/worklist")
    return web.Response(text=pages.login_page(), content_type="text/html")


async def login(request):
    station = request.app[STATION]
    form = await request.post()
    reader, token = str(form.get("reader", ""))[:64], str(form.get("token", ""))[:256]
    ok = await station.run(check_token, station.access, reader, token)
    if not ok:
        station.record_refusal(None, "log-in with a wrong reader name or token", 401)
        return web.Response(text=pages.login_page("Wrong reader name or token."), content_type="text/html",
                            status=401)
    sid = station.sessions.create(reader)
    LOG.info("reader %s: logged in", reader)
    resp = web.HTTPSeeOther("/worklist")
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/",
                    secure=request.headers.get("X-Forwarded-Proto") == "https")
    raise resp


async def logout(request):
    station = request.app[STATION]
    sid = request.cookies.get(COOKIE)
    reader = station.sessions.revoke(sid) if sid else None
    if reader:  # one session per reader: logging out ends it on every tab and browser
        station.sessions.revoke_reader(reader)
        LOG.info("reader %s: logged out", reader)
        await station.run(station.release_sync, reader)
    resp = web.HTTPSeeOther("/")
    resp.del_cookie(COOKIE, path="/")
    raise resp


async def worklist(request):
    reader = _reader(request)
    station = request.app[STATION]

    def work():
        ws = station.workspace_sync(reader)
        return ws.worklist(), ws.session.done()

    items, done = await station.run(work)
    return web.Response(text=pages.worklist_page(reader, items, done), content_type="text/html")


def _index(request, station, reader) -> int:
    raw = request.match_info["index"]
    ws = station.workspaces.get(reader)
    total = ws.session.total if ws else len(station.study.orders[reader])
    index = int(raw) if raw.isdigit() and len(raw) < 7 else -1
    if not 0 <= index < total:
        station.refuse(request, reader, "case not in the reader's worklist", 404)
    return index


async def case(request):
    reader = _reader(request)
    station = request.app[STATION]
    index = _index(request, station, reader)

    def begin():
        ws = station.workspace_sync(reader)
        ok, why = ws.session.available(index)
        return (ws, ws.begin_open(index), "") if ok else (ws, None, why)

    ws, view, why = await station.run(begin)
    if view is not None:  # registration on the loader pool: the other readers keep working
        try:
            prepared = await asyncio.get_running_loop().run_in_executor(station.loader, ws.prepare, view)
        except BaseException:
            await station.run(ws.session.resume)
            raise
        await station.run(ws.finish_open, view, *prepared)
    if not why:
        await ws.start_view()
    title = None if why else await station.run(lambda: ws.session.current.title)
    if title is None:
        return web.Response(text=pages.message_page(reader, f"This case cannot be opened yet: {why}."),
                            content_type="text/html", status=409)
    return web.Response(text=pages.case_page(reader, index, title), content_type="text/html")


def _case_request(request) -> tuple[Station, str, int]:
    """(station, reader, index) of an API call on one of the reader's cases (401/404 otherwise)."""
    reader = _reader(request)
    station = request.app[STATION]
    return station, reader, _index(request, station, reader)


def _open_case(station: Station, reader: str, index: int, active: bool = True) -> ReaderWorkspace:
    """(loop thread) the reader's workspace with case *index* open, else 409. *active*: the
    request is the reader's doing (keeps her workspace from being released as idle)."""
    ws = station.workspaces.get(reader)
    if ws is None or ws.view is None or ws.session.current is None or ws.session.current.index != index:
        raise web.HTTPConflict(text=json.dumps({"error": "this case is not open here; reload the page"}),
                               content_type="application/json")
    if active:
        ws.touch()
    return ws


def _num(value, default=None):
    try:
        x = float(value)
    except (TypeError, ValueError):
        return default
    return x if math.isfinite(x) else default


async def api_info(request):
    """The case's state; the page polls it, so it does not count as the reader's activity."""
    station, reader, index = _case_request(request)
    return web.json_response(await station.run(lambda: _open_case(station, reader, index, active=False).info()))


async def api_view(request):
    """GET (and the websocket) of the open case's trame-slicer page, forwarded to its server."""
    station, reader, index = _case_request(request)
    ws = await station.run(lambda: _open_case(station, reader, index))
    port = await ws.start_view()
    tail = request.match_info["tail"]
    if ".." in tail.split("/") or port is None:
        station.refuse(request, reader, "no such page", 404)
    upstream = f"http://127.0.0.1:{port}/{tail}"
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await proxy.websocket(request, station.client, upstream)
    return await proxy.get(request, station.client, upstream, prefix=f"/view/{index}/")


async def api_action(request):
    station, reader, index = _case_request(request)
    action = request.match_info["action"]
    body = await scores.json_body(request)
    body = body if isinstance(body, dict) else {}

    def work():
        ws = _open_case(station, reader, index)
        out = {}
        if action == "undo":
            out["undone"] = ws.undo()
        elif action == "pause":
            ws.pause("background" if body.get("reason") == "background" else "explicit")
        elif action == "resume":
            ws.resume()
        elif action == "submit":
            return {"next": ws.submit()}
        else:
            return None
        out.update(ws.info())
        return out

    result = await station.run(work)
    if result is None:
        station.refuse(request, reader, "no such action", 404)
    return web.json_response(result)


async def no_icon(request):
    return web.Response(status=204)


async def script(request):
    return web.Response(text=pages.SCRIPT, content_type="application/javascript")


async def _start_ticker(app):
    station = app[STATION]
    station._task = asyncio.create_task(station.ticker())
    station.client = ClientSession(auto_decompress=False)


async def _stop(app):
    station = app[STATION]
    if station._task is not None:
        station._task.cancel()
    await station.run(station.release_all_sync)
    if STOPPING:  # every released reader's trame server stopped and its views freed, on this thread
        await asyncio.gather(*list(STOPPING), return_exceptions=True)
    if station.client is not None:
        await station.client.close()


def make_app(station: Station) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[STATION] = station
    app.router.add_get("/", home)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/worklist", worklist)
    app.router.add_get("/station.js", script)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get(r"/case/{index}", case)
    app.router.add_get(r"/api/case/{index}/info", api_info)
    app.router.add_get(r"/view/{index}/{tail:.*}", api_view)
    app.router.add_post(r"/api/case/{index}/{action}", api_action)
    scores.add_routes(app, _case_request, _open_case)  # the reader's per-breast scores (web/scores.py)
    app.on_startup.append(_start_ticker)
    app.on_cleanup.append(_stop)
    return app

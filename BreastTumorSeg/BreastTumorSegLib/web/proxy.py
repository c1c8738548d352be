"""Forwarding a checked request to a reader's trame server on 127.0.0.1 (pages, scripts, websocket).

Only GET and the websocket upgrade are forwarded; the caller has checked the reader's session and
her worklist. Nothing of the browser's request but the path, the query and the content negotiation
headers goes upstream (no cookie: the trame server never sees the station's session).
"""
from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

FORWARDED_HEADERS = ("Accept", "Accept-Encoding", "Accept-Language", "If-None-Match", "If-Modified-Since")
RETURNED_HEADERS = ("Content-Type", "Content-Encoding", "ETag", "Last-Modified", "Location")


async def get(request: web.Request, client, url: str, prefix: str) -> web.Response:
    headers = {k: request.headers[k] for k in FORWARDED_HEADERS if k in request.headers}
    async with client.get(url, params=request.query, headers=headers, allow_redirects=False) as r:
        body = await r.read()
        out = web.Response(body=body, status=r.status)
        for k in RETURNED_HEADERS:
            if k in r.headers:
                out.headers[k] = r.headers[k]
        location = out.headers.get("Location")
        if location and location.startswith("/"):  # an absolute redirect of trame's stays under the case
            out.headers["Location"] = prefix + location.lstrip("/")
        return out


async def websocket(request: web.Request, client, url: str) -> web.WebSocketResponse:
    """Relay one websocket both ways until either side closes."""
    browser = web.WebSocketResponse(max_msg_size=0, autoping=True)
    await browser.prepare(request)
    async with client.ws_connect(url.replace("http://", "ws://", 1), max_msg_size=0) as upstream:
        async def pump(src, dst):
            async for msg in src:
                if msg.type == WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                else:
                    break

        tasks = [asyncio.create_task(pump(browser, upstream)), asyncio.create_task(pump(upstream, browser))]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
    await browser.close()
    return browser

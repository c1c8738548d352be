"""Starting the station: in the foreground (the CLI) or on a background thread (tests, scripts)."""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import threading

from aiohttp import web

from ..core import interrupts
from ..core.errors import InputError
from .app import Station, make_app

LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


def check_host(host: str, allow_remote: bool) -> str:
    """Only loopback unless the coordinator says otherwise (then behind an HTTPS proxy)."""
    if host in LOCAL_HOSTS:
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InputError(f"{host!r} is not an IP address", "--host", "give e.g. 127.0.0.1 or 0.0.0.0") from None
    if not allow_remote:
        raise InputError(f"--host {host} would let other machines reach the station without HTTPS", "--host",
                         "keep 127.0.0.1 behind an HTTPS reverse proxy, or add --allow-remote if the proxy "
                         "runs on another machine")
    return host


def serve(study_folder, host: str = "127.0.0.1", port: int = 8080, release_after_s: float = 900.0,
          print_fn=print) -> None:
    """Run the station until Ctrl-C or SIGTERM (readers' work is saved and their sessions released
    on exit); the signal is recorded (:func:`..core.interrupts.received`), so the command line
    exits 130 / 143. A port in use or not allowed is one :class:`InputError`."""
    station = Station(study_folder, release_after_s=release_after_s)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print_fn(f"reader station for study {station.study.name!r} at http://{host}:{port}/ "
             f"({len(station.study.readers)} readers; Ctrl-C stops)")
    loop = asyncio.new_event_loop()

    def stop(signum: int) -> None:  # on the loop, between requests: a clean stop, no task left failed
        interrupts.note_signal(signum)
        raise web.GracefulExit()

    for signum in interrupts.SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        web.run_app(make_app(station), host=host, port=port, print=None, handle_signals=False, loop=loop,
                    access_log_format='%a "%r" %s %b')
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            why = {errno.EADDRINUSE: "is in use by another program", errno.EACCES: "needs administrator rights",
                   errno.EADDRNOTAVAIL: "is not an address of this machine"}[exc.errno]
            raise InputError(f"port {port} on {host} {why}", "--port",
                             "choose another port, e.g. --port 8081 (or stop the program using it)") from None
        raise
    finally:
        station.loader.shutdown(wait=True, cancel_futures=True)


class BackgroundStation:
    """The station on a thread with its own event loop (``with BackgroundStation(study) as url:``)."""

    def __init__(self, study_folder, host: str = "127.0.0.1", port: int = 0, **station_kwargs):
        self.station = Station(study_folder, **station_kwargs)
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._runner = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="station")

    def start(self) -> str:
        self._thread.start()

        async def up():
            self._runner = web.AppRunner(make_app(self.station), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            return site._server.sockets[0].getsockname()[1]

        self.port = asyncio.run_coroutine_threadsafe(up(), self._loop).result(60)
        return f"http://{self.host}:{self.port}"

    def call(self, fn, *args, timeout: float = 60.0):
        """Run *fn* on the station's loop thread (where its scenes live) and return its result."""
        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self.station.loader.shutdown(wait=True)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

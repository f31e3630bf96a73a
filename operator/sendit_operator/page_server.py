"""The status page's server: GET only, on its own port, in the operator's event loop (aiohttp,
which kopf runs on). It reads the batches from kopf's index (what the watch stream last
showed) and their Events from the API server (listed at most every few seconds, whatever the
number of viewers); nothing it serves can change anything."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from . import page
from .kube import describe

log = logging.getLogger("sendit.operator")
Bodies = Callable[[], Iterable[Mapping[str, Any]]]
ListEvents = Callable[[], list[dict[str, Any]]]
EVENTS_TTL = 5.0
ASSETS = {"page.css": "text/css", "page.js": "text/javascript", "favicon.svg": "image/svg+xml"}
HEADERS = {
    # Every asset is the operator's own: nothing inline, nothing from elsewhere, no forms.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Events:
    """The batches' Events, listed at most every EVENTS_TTL seconds."""

    def __init__(self, fetch: ListEvents) -> None:
        self.fetch = fetch
        self.rows: list[page.EventRow] = []
        self.at = -EVENTS_TTL
        self.lock = asyncio.Lock()

    async def get(self) -> list[page.EventRow]:
        async with self.lock:
            if time.monotonic() - self.at >= EVENTS_TTL:
                try:
                    raw = await asyncio.to_thread(self.fetch)
                    self.rows = [page.event_row(e) for e in raw]
                except Exception as exc:  # the page still shows the batches
                    log.warning("listing the batches' Events failed (%s)", describe(exc))
                self.at = time.monotonic()
            return self.rows


def app(bodies: Bodies, events: Events) -> web.Application:
    assets = {
        name: (resources.files(__package__) / "assets" / name).read_bytes() for name in ASSETS
    }

    def rows() -> list[page.BatchRow]:
        return [page.batch_row(b) for b in bodies()]

    def find(request: web.Request) -> page.BatchRow | None:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        return next((b for b in rows() if (b.namespace, b.name) == (ns, name)), None)

    def mine(all_events: list[page.EventRow], b: page.BatchRow) -> list[page.EventRow]:
        return [e for e in all_events if (e.namespace, e.batch) == (b.namespace, b.name)]

    def html(text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)

    async def index(request: web.Request) -> web.Response:
        return html(page.index_page(rows(), await events.get(), _now()))

    async def index_fragment(request: web.Request) -> web.Response:
        return html(page.index_fragment(rows(), await events.get(), _now()))

    async def batch(request: web.Request) -> web.Response:
        b = find(request)
        if b is None:
            ns, name = request.match_info["namespace"], request.match_info["name"]
            return html(page.missing_page(ns, name), 404)
        return html(page.batch_page(b, mine(await events.get(), b), _now()))

    async def batch_fragment(request: web.Request) -> web.Response:
        b = find(request)
        if b is None:
            return html("", 404)
        return html(page.batch_fragment(b, mine(await events.get(), b), _now()))

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info.get("name", "favicon.svg")
        if name not in assets:
            raise web.HTTPNotFound()
        headers = {**HEADERS, "Cache-Control": "max-age=300"}
        return web.Response(body=assets[name], content_type=ASSETS[name], headers=headers)

    application = web.Application()
    application.add_routes(
        [
            web.get("/", index),
            web.get("/fragment", index_fragment),
            web.get("/batches/{namespace}/{name}", batch),
            web.get("/fragment/batches/{namespace}/{name}", batch_fragment),
            web.get("/assets/{name}", asset),
            web.get("/favicon.ico", asset),
        ]
    )
    return application


async def start(bodies: Bodies, events: Events, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app(bodies, events), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("status page on %s:%d", host, port)
    return runner


def _now() -> datetime:
    return datetime.now(UTC)

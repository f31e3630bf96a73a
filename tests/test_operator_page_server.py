"""The status page's server (operator/sendit_operator/page_server.py) on 127.0.0.1: GET only,
every asset its own, Events listed at most every few seconds. Batches come from a list here
(as from kopf's index in the operator); the browser test on the real control plane is
tests/test_operator_page_browser.py."""

from __future__ import annotations

import socket

import aiohttp
import pytest
import pytest_asyncio

from sendit_operator import page_server

pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BATCH = {
    "metadata": {"name": "b1", "namespace": "team-a", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"source": {"folders": ["Doe^John"]}},
    "status": {"phase": "Sending", "progress": "3/4", "percent": 75},
}
EVENT = {
    "involvedObject": {"kind": "SenditBatch", "namespace": "team-a", "name": "b1"},
    "reason": "Sending",
    "message": "delivering",
    "lastTimestamp": "2026-01-01T00:00:05Z",
}


@pytest_asyncio.fixture
async def served():
    calls: list[int] = []

    def fetch() -> list[dict]:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("the API server is away")
        return [EVENT]

    port = free_port()
    runner = await page_server.start(lambda: [BATCH], page_server.Events(fetch), "127.0.0.1", port)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        yield session, calls
    await runner.cleanup()


async def test_pages_and_fragments_are_served_with_a_strict_policy(served):
    session, calls = served
    async with session.get("/") as r:
        html = await r.text()
        assert r.status == 200 and r.content_type == "text/html"
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert 'data-batch="team-a/b1"' in html and "delivering" in html and "Doe" not in html
    async with session.get("/fragment") as r:
        fragment = await r.text()
    assert "<html" not in fragment and 'value="75"' in fragment
    async with session.get("/batches/team-a/b1") as r:
        assert r.status == 200 and "delivering" in await r.text()
    async with session.get("/fragment/batches/team-a/b1") as r:
        assert r.status == 200 and "<html" not in await r.text()
    assert calls == [1]  # listed once for all four: the Events are kept a few seconds


async def test_assets_are_the_operators_own(served):
    session, _ = served
    for name, kind in (("page.css", "text/css"), ("page.js", "text/javascript")):
        async with session.get(f"/assets/{name}") as r:
            assert r.status == 200 and r.content_type == kind and len(await r.read()) > 100
    async with session.get("/assets/..%2Fpage.py") as r:
        assert r.status == 404


async def test_nothing_but_get(served):
    session, _ = served
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/", "/batches/team-a/b1", "/fragment"):
            async with session.request(method, path) as r:
                assert r.status == 405, (method, path)


async def test_an_unknown_batch_is_404_and_a_failed_event_list_keeps_the_page(served, monkeypatch):
    session, calls = served
    async with session.get("/batches/team-a/nope") as r:
        assert r.status == 404 and "No SenditBatch nope in team-a" in await r.text()
    monkeypatch.setattr(page_server, "EVENTS_TTL", 0.0)
    for _ in range(2):  # the second listing fails: the last one is shown
        async with session.get("/") as r:
            assert r.status == 200 and "delivering" in await r.text()
    assert len(calls) == 2

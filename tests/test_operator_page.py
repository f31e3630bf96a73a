"""The status page's rows and HTML (operator/sendit_operator/page.py): what a batch's status and
Events hold, escaped, and nothing from its spec."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

from sendit_operator import page

NOW = datetime(2026, 1, 1, 1, 0, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
FOLDER = "Doe^John 1970-01-01 MRN123"  # a source folder named as some archives name them


def body(name: str = "b1", **status) -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "source": {"volume": {"hostPath": {"path": f"/data/{FOLDER}"}}, "folders": [FOLDER]}
        },
        "status": {
            "phase": "Processing",
            "message": "1/2 shards processed",
            "progress": "30/120",
            "percent": 25,
            "imagesPerSecond": 2.5,
            "secondsLeft": 36,
            "startTime": "2026-01-01T00:10:00Z",
            "counts": {"discovered": 120, "anonymized": 25, "withheld": 3, "failed": 2},
            "reasons": {"withheld": {"burned-in-header": 3}, "failed": {"unreadable": 2}},
            "shards": {
                "1": {"stage": "processing", "discovered": 60, "anonymized": 5},
                "0": {"stage": "processed", "discovered": 60, "anonymized": 20, "withheld": 3},
            },
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Processing",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:10:00Z",
                },
            ],
            **status,
        },
    }


def event(**kw) -> dict:
    return {
        "involvedObject": {"kind": "SenditBatch", "namespace": "team-a", "name": "b1"},
        "type": "Normal",
        "reason": "Processing",
        "message": "de-identifying",
        "count": 1,
        "lastTimestamp": "2026-01-01T00:59:30Z",
        **kw,
    }


class Tags(HTMLParser):
    """Every start tag and attribute, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def test_a_row_holds_the_status_not_the_spec():
    row = page.batch_row(body())
    assert (row.namespace, row.name, row.phase, row.progress, row.percent) == (
        "team-a",
        "b1",
        "Processing",
        "30/120",
        25,
    )
    assert row.counts.withheld == 3 and row.reasons.failed == {"unreadable": 2}
    assert [s.index for s in row.shards] == ["0", "1"]
    assert row.rate == 2.5 and row.seconds_left == 36
    everything = page.index_page([row], [page.event_row(event())], NOW)
    everything += page.batch_page(row, [page.event_row(event())], NOW)
    assert "Doe" not in everything and "MRN" not in everything and "/data" not in everything


def test_the_index_shows_phase_progress_counts_rate_start_and_age():
    html = page.index_page([page.batch_row(body())], [page.event_row(event())], NOW)
    (progress,) = [a for t, a in tags(html) if t == "progress"]
    assert progress == {"max": "100", "value": "25", "aria-label": "30/120 · 25% · 36s left"}
    row = re.search(r'<tr data-batch="team-a/b1">(.*?)</tr>', html).group(1)
    cells = re.findall(r'<td class="num (\w+)(?: some)?">([^<]*)</td>', row)
    assert cells == [
        ("anonymized", "25"),
        ("withheld", "3"),
        ("failed", "2"),
        ("sent", "0"),
        ("rate", "2.5 img/s"),
        ("age", "1h ago"),
    ]
    assert "2026-01-01 00:10:00 UTC" in row and ">Processing</span>" in row
    assert 'href="/batches/team-a/b1"' in row
    assert "de-identifying" in html and "30s ago" in html  # the recent Events
    assert 'data-phase="Processing"><span class="n">1</span>' in html


def test_the_batch_page_shows_shards_conditions_reasons_and_its_events():
    html = page.batch_page(page.batch_row(body()), [page.event_row(event())], NOW)
    shards = [a["data-shard"] for t, a in tags(html) if t == "tr" and "data-shard" in a]
    assert shards == ["0", "1"]
    assert "<td>Ready</td>" in html and "burned-in-header" in html and "unreadable" in html
    main = next(a for t, a in tags(html) if t == "main")
    assert main["data-fragment"] == "/fragment/batches/team-a/b1"


def test_everything_shown_is_escaped():
    """A hostile value in every field a viewer sees: no tag or attribute comes of it."""
    hostile = body(
        name=HOSTILE,
        phase=HOSTILE,
        message=HOSTILE,
        progress=HOSTILE,
        startTime=HOSTILE,
        conditions=[{"type": HOSTILE, "status": HOSTILE, "reason": HOSTILE, "message": HOSTILE}],
        shards={HOSTILE: {"stage": HOSTILE}},
    )
    hostile["metadata"]["namespace"] = HOSTILE
    events = [page.EventRow(HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, 1, HOSTILE)]
    row = page.batch_row(hostile)
    for html in (
        page.index_page([row], events, NOW),
        page.batch_page(row, events, NOW),
        page.missing_page(HOSTILE, HOSTILE),
    ):
        found = tags(html)
        scripts = [a for t, a in found if t == "script"]
        assert scripts == [{"src": "/assets/page.js", "defer": None}]
        assert "img" not in [t for t, _ in found]
        assert not any(k.startswith("on") for _, a in found for k in a)
        assert all(not v or "javascript:" not in v for _, a in found for v in a.values())
        assert HOSTILE not in html and "&lt;script&gt;" in html
        hrefs = [a["href"] for t, a in found if t == "a" and a["href"].startswith("/batches/")]
        assert all(re.fullmatch(r"/batches/[\w%.-]+/[\w%.-]+", h) for h in hrefs), hrefs


def test_an_empty_cluster_and_missing_values_render():
    html = page.index_page([], [], NOW)
    assert "No SenditBatches" in html and "No events." in html
    bare = page.batch_row({"metadata": {"name": "new", "namespace": "n"}})
    assert (bare.phase, bare.progress, bare.percent, bare.rate) == ("Queued", "0/0", 0, None)
    assert "No shard has reported yet." in page.batch_page(bare, [], NOW)

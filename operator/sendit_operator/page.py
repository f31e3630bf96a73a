"""The read-only status page: typed rows read from what a batch's status and its Events hold,
rendered to HTML. Pure.

A row is made from the batch's name, namespace, creation time and status only: the spec (where
source folders are named) is never read. Every value is escaped where it is written into HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from itertools import groupby
from typing import Any
from urllib.parse import quote

from sendit_api.clock import parse
from sendit_api.status import FAILED_REASONS, PHASES, QUEUED, WITHHELD_REASONS, Counts, Reasons

from .status import shards_of

JSON = Mapping[str, Any]
REFRESH_SECONDS = 5
INDEX_EVENTS, BATCH_EVENTS = 12, 30
NONE = "\u2013"  # an en dash: no value


@dataclass(frozen=True)
class ShardRow:
    index: str
    stage: str
    counts: Counts
    updated: str


@dataclass(frozen=True)
class ConditionRow:
    type: str
    status: str
    reason: str
    message: str
    since: str


@dataclass(frozen=True)
class BatchRow:
    namespace: str
    name: str
    created: str
    phase: str
    message: str
    progress: str  # "done/total"
    percent: int
    counts: Counts
    reasons: Reasons
    rate: float | None  # images per second, while running
    seconds_left: int | None
    start: str
    completion: str
    shards: tuple[ShardRow, ...]
    conditions: tuple[ConditionRow, ...]


@dataclass(frozen=True)
class EventRow:
    namespace: str
    batch: str
    type: str  # Normal | Warning
    reason: str
    message: str
    count: int
    last: str
    order: int = 0  # the API server's resourceVersion: which came first within a second


def batch_row(body: JSON) -> BatchRow:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    shards = shards_of(status)
    return BatchRow(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        created=str(meta.get("creationTimestamp") or ""),
        phase=str(status.get("phase") or QUEUED),
        message=str(status.get("message") or ""),
        progress=str(status.get("progress") or "0/0"),
        percent=max(0, min(100, int(status.get("percent") or 0))),
        counts=Counts.of(status.get("counts") or {}),
        reasons=Reasons.of(status.get("reasons") or {}),
        rate=_float(status.get("imagesPerSecond")),
        seconds_left=_int(status.get("secondsLeft")),
        start=str(status.get("startTime") or ""),
        completion=str(status.get("completionTime") or ""),
        shards=tuple(
            ShardRow(k, s.stage, s.counts, s.updated)
            for k, s in sorted(shards.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)
        ),
        conditions=tuple(
            ConditionRow(
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                str(c.get("message", "")),
                str(c.get("lastTransitionTime", "")),
            )
            for c in status.get("conditions") or []
        ),
    )


def event_row(event: JSON) -> EventRow:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    meta = event.get("metadata") or {}
    last = event.get("lastTimestamp") or event.get("eventTime") or meta.get("creationTimestamp")
    return EventRow(
        namespace=str(involved.get("namespace") or meta.get("namespace") or ""),
        batch=str(involved.get("name", "")),
        type=str(event.get("type") or "Normal"),
        reason=str(event.get("reason") or ""),
        message=str(event.get("message") or event.get("note") or ""),
        count=int(event.get("count") or 1),
        last=str(last or "")[:19] + "Z" if last else "",
        order=int(rv) if (rv := str(meta.get("resourceVersion", ""))).isdigit() else 0,
    )


def newest(events: Iterable[EventRow], n: int) -> list[EventRow]:
    return sorted(events, key=lambda e: (e.last, e.order), reverse=True)[:n]


# -- pages -----------------------------------------------------------------------------------


def index_page(batches: Sequence[BatchRow], events: Sequence[EventRow], now: datetime) -> str:
    return layout("Sendit batches", "/fragment", index_fragment(batches, events, now))


def batch_page(batch: BatchRow, events: Sequence[EventRow], now: datetime) -> str:
    title = f"{batch.name} · Sendit"
    return layout(title, f"/fragment{batch_path(batch)}", batch_fragment(batch, events, now))


def missing_page(namespace: str, name: str) -> str:
    text = f"No SenditBatch {name} in {namespace} (or it is not watched by this operator)."
    return layout("Not found · Sendit", "", f'<p class="empty">{_e(text)}</p>{_back()}')


def layout(title: str, fragment: str, content: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/page.css">
<script src="/assets/page.js" defer></script>
</head>
<body>
<header class="top">
  <a class="brand" href="/">Sendit</a>
  <span class="sub">batches, read-only</span>
  <span id="refresh" class="refresh" data-seconds="{REFRESH_SECONDS}"></span>
</header>
<main id="content" data-fragment="{_e(fragment)}">
{content}
</main>
</body>
</html>
"""


def index_fragment(batches: Sequence[BatchRow], events: Sequence[EventRow], now: datetime) -> str:
    if not batches:
        body = '<p class="empty">No SenditBatches in the watched namespaces yet.</p>'
    else:
        ordered = sorted(batches, key=lambda b: (b.namespace, b.name))
        body = "".join(
            _namespace(ns, list(rows), now) for ns, rows in groupby(ordered, lambda b: b.namespace)
        )
    return (
        _summary(batches)
        + body
        + '<section class="card"><h2>Recent events</h2>'
        + _events(newest(events, INDEX_EVENTS), with_batch=True, now=now)
        + "</section>"
    )


def batch_fragment(b: BatchRow, events: Sequence[EventRow], now: datetime) -> str:
    counts = "".join(
        f'<div class="stat" data-count="{k}"><span class="n">{v}</span>'
        f'<span class="k">{_e(k)}</span></div>'
        for k, v in b.counts.as_dict().items()
    )
    timing = [
        ("Started", _when(b.start)),
        ("Age", _age(b.created, now)),
        ("Finished", _when(b.completion)),
        ("Rate", _rate(b.rate)),
        ("Time left", _left(b.seconds_left)),
    ]
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in timing)
    return f"""{_back()}
<section class="card batch" data-batch="{_e(b.namespace)}/{_e(b.name)}">
  <div class="title">
    <h1>{_e(b.name)}</h1><span class="ns">{_e(b.namespace)}</span>{_phase(b.phase)}
  </div>
  <p class="message">{_e(b.message)}</p>
  {_bar(b, large=True)}
  <div class="stats">{counts}</div>
  <dl class="facts">{facts}</dl>
</section>
<section class="card"><h2>Withheld and failed, by reason</h2>{_reasons(b.reasons)}</section>
<section class="card"><h2>Shards</h2>{_shards(b.shards, now)}</section>
<section class="card"><h2>Conditions</h2>{_conditions(b.conditions, now)}</section>
<section class="card"><h2>Events</h2>{_events(newest(events, BATCH_EVENTS), False, now)}</section>
"""


def batch_path(b: BatchRow) -> str:
    return f"/batches/{quote(b.namespace, safe='')}/{quote(b.name, safe='')}"


# -- parts -----------------------------------------------------------------------------------


def _summary(batches: Sequence[BatchRow]) -> str:
    tally = {p: sum(b.phase == p for b in batches) for p in PHASES}
    cells = "".join(
        f'<div class="chip phase-{p.lower()}" data-phase="{p}"><span class="n">{n}</span>'
        f'<span class="k">{p}</span></div>'
        for p, n in tally.items()
    )
    return f'<section class="summary">{cells}</section>'


def _table(columns: Sequence[tuple[str, bool]], rows: str, cls: str = "") -> str:
    """A table of `rows` (rendered, escaped) under `columns`: (title, numeric) pairs."""
    head = "".join(f"<th{' class=num' if num else ''}>{title}</th>" for title, num in columns)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _namespace(namespace: str, rows: list[BatchRow], now: datetime) -> str:
    columns = (
        ("Batch", False),
        ("Phase", False),
        ("Progress", False),
        ("Anonymized", True),
        ("Withheld", True),
        ("Failed", True),
        ("Sent", True),
        ("Rate", True),
        ("Started", False),
        ("Age", True),
    )
    body = "".join(_row(b, now) for b in rows)
    return (
        f'<section class="card"><h2>Namespace <span class="ns">{_e(namespace)}</span></h2>'
        f"{_table(columns, body, 'batches')}</section>"
    )


def _row(b: BatchRow, now: datetime) -> str:
    c = b.counts
    return (
        f'<tr data-batch="{_e(b.namespace)}/{_e(b.name)}">'
        f'<td class="name"><a href="{_e(batch_path(b))}">{_e(b.name)}</a></td>'
        f'<td class="phase">{_phase(b.phase)}</td>'
        f'<td class="progress">{_bar(b)}</td>'
        f'<td class="num anonymized">{c.anonymized}</td>'
        f'<td class="num withheld{_some(c.withheld)}">{c.withheld}</td>'
        f'<td class="num failed{_some(c.failed)}">{c.failed}</td>'
        f'<td class="num sent">{c.sent}</td>'
        f'<td class="num rate">{_e(_rate(b.rate))}</td>'
        f'<td class="start">{_e(_when(b.start))}</td>'
        f'<td class="num age">{_e(_age(b.created, now))}</td>'
        "</tr>"
    )


def _some(n: int) -> str:
    return " some" if n else ""


def _phase(phase: str) -> str:
    return f'<span class="badge phase-{_e(phase.lower())}">{_e(phase)}</span>'


def _bar(b: BatchRow, large: bool = False) -> str:
    label = f"{b.progress} · {b.percent}%"
    if b.seconds_left is not None:
        label += f" · {_left(b.seconds_left)} left"
    return (
        f'<div class="bar{" large" if large else ""} phase-{_e(b.phase.lower())}">'
        f'<progress max="100" value="{b.percent}" aria-label="{_e(label)}"></progress>'
        f'<span class="label">{_e(label)}</span></div>'
    )


def _reasons(r: Reasons) -> str:
    if not r:
        return '<p class="empty">None withheld or failed.</p>'
    rows = [("withheld", k, r.withheld.get(k, 0)) for k in WITHHELD_REASONS] + [
        ("failed", k, r.failed.get(k, 0)) for k in FAILED_REASONS
    ]
    cells = "".join(
        f'<tr><td>{o}</td><td>{_e(k)}</td><td class="num">{n}</td></tr>' for o, k, n in rows if n
    )
    return _table((("Outcome", False), ("Reason", False), ("Images", True)), cells)


def _shards(shards: Sequence[ShardRow], now: datetime) -> str:
    if not shards:
        return '<p class="empty">No shard has reported yet.</p>'
    rows = "".join(
        f'<tr data-shard="{_e(s.index)}"><td>{_e(s.index)}</td><td>{_e(s.stage)}</td>'
        f'<td class="num">{s.counts.discovered}</td><td class="num">{s.counts.anonymized}</td>'
        f'<td class="num">{s.counts.withheld}</td><td class="num">{s.counts.failed}</td>'
        f'<td class="num">{s.counts.sent}</td><td class="num">{_e(_age(s.updated, now))}</td>'
        "</tr>"
        for s in shards
    )
    titles = ("Shard", "Stage", "Images", "Anonymized", "Withheld", "Failed", "Sent", "Reported")
    return _table([(t, i > 1) for i, t in enumerate(titles)], rows)


def _conditions(conditions: Sequence[ConditionRow], now: datetime) -> str:
    if not conditions:
        return '<p class="empty">No conditions yet.</p>'
    rows = "".join(
        f'<tr><td>{_e(c.type)}</td><td class="cond-{_e(c.status.lower())}">{_e(c.status)}</td>'
        f"<td>{_e(c.reason)}</td><td>{_e(c.message)}</td>"
        f'<td class="num">{_e(_age(c.since, now))}</td></tr>'
        for c in conditions
    )
    columns = (("Type", False), ("Status", False), ("Reason", False), ("Message", False))
    return _table((*columns, ("Since", True)), rows)


def _events(events: Sequence[EventRow], with_batch: bool, now: datetime) -> str:
    if not events:
        return '<p class="empty">No events.</p>'

    def batch(e: EventRow) -> str:
        if not with_batch:
            return ""
        path = f"/batches/{quote(e.namespace, safe='')}/{quote(e.batch, safe='')}"
        return f'<td><a href="{_e(path)}">{_e(e.namespace)}/{_e(e.batch)}</a></td>'

    rows = "".join(
        f'<tr class="event-{_e(e.type.lower())}"><td class="num">{_e(_age(e.last, now))}</td>'
        f"{batch(e)}<td>{_e(e.type)}</td><td>{_e(e.reason)}</td><td>{_e(e.message)}</td>"
        f'<td class="num">{e.count}</td></tr>'
        for e in events
    )
    columns = [("When", True), *([("Batch", False)] if with_batch else [])]
    columns += [("Type", False), ("Reason", False), ("Message", False), ("Count", True)]
    return _table(columns, rows, "events")


def _back() -> str:
    return '<p class="back"><a href="/">&larr; All batches</a></p>'


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _when(ts: str) -> str:
    return ts.replace("T", " ").replace("Z", " UTC") if ts else NONE


def _age(ts: str, now: datetime) -> str:
    """How long ago, in its two largest units (3d 4h, 5m 12s)."""
    try:
        seconds = max(0, int((now - parse(ts)).total_seconds()))
    except ValueError:
        return NONE
    return _duration(seconds) + " ago" if seconds else "now"


def _duration(seconds: int) -> str:
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "m")]
    parts.append((seconds % 60, "s"))
    shown = [f"{n}{u}" for n, u in parts if n]
    return " ".join(shown[:2]) or "0s"


def _rate(rate: float | None) -> str:
    return f"{rate:g} img/s" if rate else NONE


def _left(seconds: int | None) -> str:
    return _duration(seconds) if seconds is not None else NONE


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    f = _float(value)
    return None if f is None else int(f)

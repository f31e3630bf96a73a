"""Prometheus metrics: labels are phases, outcomes and reason classes only (each a small fixed
set), never a batch's name or data."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

from sendit_api.clock import parse
from sendit_api.status import PHASES, Counts, Reasons, ShardReport

OUTCOMES = ("anonymized", "withheld", "failed", "skipped", "sent")

BATCHES = Gauge("sendit_batches", "SenditBatches by phase", ["phase"])
IMAGES = Counter("sendit_images_total", "Images by outcome, as reported by workers", ["outcome"])
REASONS = Counter(
    "sendit_images_by_reason_total",
    "Images withheld or failed, by reason class, as reported by workers",
    ["outcome", "reason"],
)
DURATION = Histogram(
    "sendit_batch_duration_seconds",
    "From a batch's first Job to its final phase",
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400),
)
DELIVERY = Histogram(
    "sendit_delivery_seconds",
    "A shard's delivery: from its images de-identified (or its send stage started) to every "
    "image acknowledged by every destination",
    buckets=(1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200),
)


@dataclass(frozen=True)
class Seen:
    """What the metrics have counted of one batch so far."""

    counts: Counts = field(default_factory=Counts)
    reasons: Reasons = field(default_factory=Reasons)
    delivered: frozenset[str] = frozenset()  # shards whose delivery time was observed


def seen(counts: Counts, reasons: Reasons, shards: Mapping[str, ShardReport]) -> Seen:
    sent = frozenset(k for k, s in shards.items() if s.delivery_seconds is not None)
    return Seen(counts, reasons, sent)


def observe(before: Seen | None, after: Seen, shards: Mapping[str, ShardReport]) -> None:
    """Count what workers reported since the last look. The first look at a batch (a batch
    new to this process, or every batch after a restart) only sets the baseline: what it
    shows was counted before, or is counted from the next look on. A retried shard can
    report less: only increments are counted."""
    if before is None:
        return
    for outcome in OUTCOMES:
        _inc(
            IMAGES.labels(outcome), getattr(after.counts, outcome) - getattr(before.counts, outcome)
        )
    for outcome in ("withheld", "failed"):
        now, then = getattr(after.reasons, outcome), getattr(before.reasons, outcome)
        for reason, n in now.items():
            _inc(REASONS.labels(outcome, reason), n - then.get(reason, 0))
    for shard in sorted(after.delivered - before.delivered):
        DELIVERY.observe(shards[shard].delivery_seconds or 0.0)


def _inc(counter: Counter, delta: int) -> None:
    if delta > 0:
        counter.inc(delta)


def set_phases(phases: list[str]) -> None:
    tally = Tally(phases)
    for phase in PHASES:
        BATCHES.labels(phase).set(tally[phase])


def observe_duration(start: str, end: str) -> None:
    DURATION.observe(max(0.0, (parse(end) - parse(start)).total_seconds()))

"""Prometheus metrics: labels are phases and outcomes only, never a batch's data."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram

from sendit_api.clock import parse
from sendit_api.status import PHASES, Counts

OUTCOMES = ("anonymized", "withheld", "failed", "skipped", "sent")

BATCHES = Gauge("sendit_batches", "SenditBatches by phase", ["phase"])
IMAGES = Counter("sendit_images_total", "Images by outcome, as reported by workers", ["outcome"])
DURATION = Histogram(
    "sendit_batch_duration_seconds",
    "From a batch's first Job to its final phase",
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400),
)


def set_phases(phases: list[str]) -> None:
    tally = Tally(phases)
    for phase in PHASES:
        BATCHES.labels(phase).set(tally[phase])


def add_images(before: Counts, after: Counts) -> None:
    """Count what workers reported since the last look (a retried shard can report less)."""
    for outcome in OUTCOMES:
        delta = getattr(after, outcome) - getattr(before, outcome)
        if delta > 0:
            IMAGES.labels(outcome).inc(delta)


def observe_duration(start: str, end: str) -> None:
    DURATION.observe(max(0.0, (parse(end) - parse(start)).total_seconds()))

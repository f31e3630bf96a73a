"""The operator's metrics, read back from the Prometheus client's registry: increments counted
once, a first look only a baseline, label values from fixed sets."""

from __future__ import annotations

from prometheus_client import REGISTRY

from sendit_api.status import Counts, Reasons, ShardReport
from sendit_operator import metrics


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_images_and_reasons_count_increments_not_totals():
    before = (value("sendit_images_total", outcome="anonymized"),)
    withheld = value("sendit_images_by_reason_total", outcome="withheld", reason="burned-in-header")
    first = metrics.seen(Counts(anonymized=5), Reasons({"burned-in-header": 1}), {})
    metrics.observe(None, first, {})  # a batch first seen: its counts are the baseline
    assert value("sendit_images_total", outcome="anonymized") == before[0]
    later = metrics.seen(Counts(anonymized=8), Reasons({"burned-in-header": 3}), {})
    metrics.observe(first, later, {})
    metrics.observe(later, later, {})  # the same status again adds nothing
    assert value("sendit_images_total", outcome="anonymized") == before[0] + 3
    after = value("sendit_images_by_reason_total", outcome="withheld", reason="burned-in-header")
    assert after == withheld + 2
    # A retried shard that reports less is not counted down (nor up again to where it was).
    metrics.observe(later, metrics.seen(Counts(anonymized=2), Reasons(), {}), {})
    assert value("sendit_images_total", outcome="anonymized") == before[0] + 3


def test_a_shards_delivery_time_is_observed_once():
    count = value("sendit_delivery_seconds_count")
    sending = {"0": ShardReport("sending")}
    sent = {"0": ShardReport("sent", delivery_seconds=12.5), "1": ShardReport("sending")}
    a = metrics.seen(Counts(), Reasons(), sending)
    b = metrics.seen(Counts(), Reasons(), sent)
    metrics.observe(a, b, sent)
    metrics.observe(b, b, sent)
    assert value("sendit_delivery_seconds_count") == count + 1
    assert value("sendit_delivery_seconds_bucket", le="15.0") >= 1

"""Pub/Sub events against Google's emulator: versioned JSON, attributes, ordering, stable ids."""

from __future__ import annotations

import json

import pytest

from sendit_worker.destinations.errors import DestinationError
from sendit_worker.destinations.pubsub import SCHEMA, PubSubSink, event_id, make_event

pytestmark = pytest.mark.emulators


def test_event_ids_are_stable_and_distinct() -> None:
    a = make_event("series.delivered", "b1", "2.25.9", images=3)
    b = make_event("series.delivered", "b1", "2.25.9", images=3)
    assert a.id == b.id == event_id("b1", "series.delivered", "2.25.9")
    assert a.id != make_event("series.delivered", "b1", "2.25.8").id
    assert a.id != make_event("series.delivered", "b2", "2.25.9").id
    body = json.loads(a.data)
    assert body["schema"] == SCHEMA and body["id"] == a.id and body["images"] == 3
    assert a.attributes == {
        "schema": SCHEMA,
        "type": "series.delivered",
        "batch": "b1",
        "event_id": a.id,
    }


def test_published_with_attributes_and_ordering_key(pubsub_emulator) -> None:
    topic = pubsub_emulator.topic("sendit-test", "events-unit")
    sink = PubSubSink(topic)
    sink.preflight()
    events = [make_event("batch.started", "b1")] + [
        make_event("series.delivered", "b1", f"2.25.{n}", images=n) for n in range(5)
    ]
    for e in events:
        sink.publish(e)
    got = pubsub_emulator.pull("sendit-test", "events-unit")
    assert [m.attributes["event_id"] for m in got] == [e.id for e in events]  # in order
    assert {m.ordering_key for m in got} == {"b1"}
    assert json.loads(got[1].data)["images"] == 0


def test_missing_topic_is_one_clear_error_naming_it(pubsub_emulator) -> None:
    sink = PubSubSink("projects/sendit-test/topics/nope")
    with pytest.raises(DestinationError, match="topic 'projects/sendit-test/topics/nope'"):
        sink.preflight()

"""Pub/Sub events: versioned JSON, attributes to filter on, one ordering key per batch, and a
stable event id so consumers can drop the duplicates a rerun may publish.

Events carry counts and pseudonymous ids only. Schema `sendit.event/v1`:
  {"schema", "id", "type", "batch", "time", ...type-specific fields}
  batch.started   {}
  series.delivered {"patient", "study", "series", "images", "objects", "rows", "uris": [..]}
  batch.done / batch.failed {"counts": {...}, "message"?}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.cloud import pubsub_v1

from .google_errors import preflight_error

SCHEMA = "sendit.event/v1"
TIMEOUT = 60


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    batch: str
    data: bytes
    attributes: dict[str, str]


def event_id(batch: str, type_: str, subject: str = "") -> str:
    return hashlib.sha256(f"{SCHEMA}\0{batch}\0{type_}\0{subject}".encode()).hexdigest()[:32]


def make_event(type_: str, batch: str, subject: str = "", **fields: Any) -> Event:
    """A versioned event. `subject` (a pseudonymous id) makes the id unique within the batch."""
    eid = event_id(batch, type_, subject)
    body = {
        "schema": SCHEMA,
        "id": eid,
        "type": type_,
        "batch": batch,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **fields,
    }
    attributes = {"schema": SCHEMA, "type": type_, "batch": batch, "event_id": eid}
    return Event(eid, type_, batch, json.dumps(body, sort_keys=True).encode(), attributes)


class PubSubSink:
    def __init__(self, topic: str, publisher: Any = None) -> None:
        self.topic = topic  # projects/P/topics/T
        self.publisher = publisher or pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )

    def preflight(self) -> None:
        try:
            self.publisher.get_topic(topic=self.topic, timeout=TIMEOUT)
        except Exception as exc:
            raise preflight_error(exc, f"Pub/Sub topic {self.topic!r}") from None

    def publish(self, event: Event) -> str:
        """Publish and wait for the server's message id (the publisher retries transient errors)."""
        future = self.publisher.publish(
            self.topic, event.data, ordering_key=event.batch, **event.attributes
        )
        try:
            return future.result(timeout=TIMEOUT)
        except Exception:
            # An ordering key stops after a failure until resumed; the caller decides what next.
            self.publisher.resume_publish(self.topic, event.batch)
            raise

"""The `destinations:` block of a SenditBatch spec as typed settings (defaults: the CRD)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .errors import DestinationError


@dataclass(frozen=True)
class GcsConfig:
    bucket: str
    prefix: str = ""
    layout: str = "dicom"  # dicom | tar.gz | nifti
    concurrency: int = 8
    checksum: str = "crc32c"  # crc32c | md5


@dataclass(frozen=True)
class BigQueryConfig:
    project: str
    dataset: str
    table: str
    location: str = "US"
    endpoint: str | None = None  # an emulator or mock; else $BIGQUERY_EMULATOR_HOST, else Google

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def api_endpoint(self) -> str | None:
        endpoint = self.endpoint or os.environ.get("BIGQUERY_EMULATOR_HOST")
        if endpoint and "://" not in endpoint:
            endpoint = f"http://{endpoint}"
        return endpoint


@dataclass(frozen=True)
class PubSubConfig:
    topic: str  # projects/PROJECT/topics/TOPIC


@dataclass(frozen=True)
class Destinations:
    gcs: GcsConfig | None = None
    bigquery: BigQueryConfig | None = None
    pubsub: PubSubConfig | None = None

    @property
    def any(self) -> bool:
        return any((self.gcs, self.bigquery, self.pubsub))

    @classmethod
    def from_spec(cls, destinations: dict[str, Any]) -> Destinations:
        gcs = destinations.get("gcs")
        bigquery = destinations.get("bigquery")
        pubsub = destinations.get("pubsub")
        return cls(
            gcs=GcsConfig(**gcs) if gcs else None,
            bigquery=BigQueryConfig(**bigquery) if bigquery else None,
            pubsub=PubSubConfig(topic=topic_path(pubsub)) if pubsub else None,
        )


def topic_path(pubsub: dict[str, Any]) -> str:
    topic = pubsub["topic"]
    if topic.startswith("projects/"):
        return topic
    project = pubsub.get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise DestinationError(
            f"Pub/Sub topic {topic!r}: give it as projects/P/topics/T or set pubsub.project"
        )
    return f"projects/{project}/topics/{topic}"

"""Destinations: where de-identified images go (GCS), their safe metadata (BigQuery), and
what happened (Pub/Sub). Delivery is exactly once: every name, job id and event id is derived
from pseudonymous identifiers, so a rerun finds what an earlier run already delivered.
"""

from __future__ import annotations

from .config import BigQueryConfig, Destinations, GcsConfig, PubSubConfig
from .errors import DeliveryError, DestinationError

__all__ = [
    "BigQueryConfig",
    "DeliveryError",
    "DestinationError",
    "Destinations",
    "GcsConfig",
    "PubSubConfig",
]

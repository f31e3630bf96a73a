"""Delivery errors: messages name the resource (bucket, table, topic), never a patient."""

from __future__ import annotations

from ..errors import ConfigError


class DestinationError(ConfigError):
    """A destination is missing or not usable: found before any data moves."""


class DeliveryError(RuntimeError):
    """Delivery did not complete; what was delivered is recorded, a rerun completes it."""

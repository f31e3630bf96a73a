"""Delivery errors: messages name the resource (bucket, table, topic), never a patient."""

from __future__ import annotations

from sendit_api.errors import Permanent, Transient

from ..report import Report


class DestinationError(Permanent):
    """A destination is missing, forbidden or misconfigured: found before any data moves."""


class DestinationUnavailable(Transient):
    """A destination did not answer usefully just now (429, 5xx, a timeout, no connection)."""


class DeliveryError(Transient):
    """Delivery did not complete; what was delivered is recorded, a rerun completes it."""

    report: Report | None = None  # the run's report so far, when the runner knows it

"""Timestamps as the Kubernetes API writes them (RFC 3339, UTC, seconds)."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def timestamp(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).strftime(FORMAT)


def parse(text: str) -> datetime:
    return datetime.strptime(text, FORMAT).replace(tzinfo=UTC)

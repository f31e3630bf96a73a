"""One root, two kinds: whether trying again can help. Each library's errors are mapped to one
of these once, at its adapter; exit codes are decided only at the command line."""

from __future__ import annotations

from typing import ClassVar


class SenditError(Exception):
    """A failure Sendit understands. Messages name Kubernetes objects, destinations and counts
    only, never a patient, an original identifier or a source path: they reach logs."""

    retry_helps: ClassVar[bool]


class Permanent(SenditError):
    """The manifest, the configuration, a destination missing or forbidden: the same input
    fails the same way, so fail fast."""

    retry_helps = False


class Transient(SenditError):
    """A service down, 429/5xx, a timeout, delivery incomplete: a retry with backoff, or a rerun,
    may complete it."""

    retry_helps = True

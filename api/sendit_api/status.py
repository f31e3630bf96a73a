"""The status shape both sides write: the batch's phases, a shard's stages and report, counts.

Workers merge-patch their `ShardReport` under `status.shards.<index>`; the operator rolls the
shards up into the rest of the status. The conformance test holds these names to the CRD's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .clock import timestamp

# The batch's phases: Queued -> Processing -> DoneProcessing -> Sending -> Sent, or Failed, or
# Cancelled. The last three are final.
QUEUED, PROCESSING, DONE_PROCESSING = "Queued", "Processing", "DoneProcessing"
SENDING, SENT, FAILED, CANCELLED = "Sending", "Sent", "Failed", "Cancelled"
PHASES: Final = (QUEUED, PROCESSING, DONE_PROCESSING, SENDING, SENT, FAILED, CANCELLED)
FINAL: Final = (SENT, FAILED, CANCELLED)
RUNNING: Final = (PROCESSING, SENDING)

# A shard's stages, as its pod reports them.
SHARD_STAGES: Final = ("processing", "processed", "sending", "sent")
PROCESSED: Final = ("processed", "sending", "sent")

# The batch's Jobs, by stage: `plan` reads the source once and deals its series onto shards
# (only with parallelism above 1), `process` de-identifies (and delivers, with send: auto),
# `send` delivers what a manual process stage left, `cleanup` removes the source after a
# verified send.
JOB_STAGES: Final = ("plan", "process", "send", "cleanup")

# Why images were withheld or failed, as a small fixed set of classes (a metric's label values
# and the status's tallies: never the reason's text, which can name a tag's value).
WITHHELD_REASONS: Final = (
    "burned-in-header",
    "burned-in-suspected",
    "text-remains",
    "document",
    "face",
    "filter-rule",
    "not-cleaned",
    "other",
)
FAILED_REASONS: Final = ("unreadable", "source-changed", "verification", "deidentify", "other")


@dataclass(frozen=True)
class Counts:
    discovered: int = 0  # DICOM instances found
    anonymized: int = 0
    withheld: int = 0
    failed: int = 0
    skipped: int = 0  # files that were not DICOM instances, or were duplicates
    sent: int = 0  # images delivered to every destination
    studies: int = 0
    series: int = 0

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Counts:
        return cls(**{f.name: int(data.get(f.name) or 0) for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self.tuple(), other.tuple(), strict=True)))

    def tuple(self) -> tuple[int, ...]:
        return dataclasses.astuple(self)

    @property
    def complete(self) -> bool:
        """Every image discovered was anonymized and sent; none failed or was withheld: the
        only state in which `cleanup.source: delete` may remove anything."""
        return (
            self.discovered > 0
            and self.failed == 0
            and self.withheld == 0
            and self.sent == self.anonymized == self.discovered
        )


@dataclass(frozen=True)
class Reasons:
    """Images withheld and failed, by reason class (counts only)."""

    withheld: Mapping[str, int] = field(default_factory=dict)
    failed: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Reasons:
        def tally(kind: str, classes: tuple[str, ...]) -> dict[str, int]:
            given = data.get(kind) or {}
            return {c: int(given[c]) for c in classes if given.get(c)}

        return cls(tally("withheld", WITHHELD_REASONS), tally("failed", FAILED_REASONS))

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"withheld": dict(self.withheld), "failed": dict(self.failed)}

    def __add__(self, other: Reasons) -> Reasons:
        def add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}

        return Reasons(add(self.withheld, other.withheld), add(self.failed, other.failed))

    def __bool__(self) -> bool:
        return bool(self.withheld or self.failed)


@dataclass(frozen=True)
class ShardReport:
    """One pod's progress, as it patches it into status.shards.<index> (counts only)."""

    stage: str
    counts: Counts = field(default_factory=Counts)
    outputs: Mapping[str, int] = field(default_factory=dict)  # images by destination kind
    reasons: Reasons = field(default_factory=Reasons)
    # With stage sent: from the shard's images de-identified (or its send stage started) to
    # every one delivered, in seconds.
    delivery_seconds: float | None = None
    updated: str = ""  # when the pod last reported (set by `patch`)
    # Files whose header the process stage's pod read: all of them when it planned the batch
    # itself, none when a plan stage did. None: not this stage's to say (left as it was).
    header_reads: int | None = None
    # Withheld images the process stage kept in the batch's quarantine, for review; None, as
    # header_reads.
    quarantined: int | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ShardReport:
        return cls(
            stage=str(data.get("stage") or ""),
            counts=Counts.of(data),
            outputs={k: int(v) for k, v in (data.get("outputs") or {}).items()},
            reasons=Reasons.of(data.get("reasons") or {}),
            delivery_seconds=_number(data.get("deliverySeconds")),
            updated=str(data.get("updated") or ""),
            header_reads=_count(data.get("headerReads")),
            quarantined=_count(data.get("quarantined")),
        )

    def patch(self, index: int) -> dict[str, Any]:
        shard: dict[str, Any] = {"stage": self.stage, **self.counts.as_dict()}
        shard["updated"] = timestamp()
        if self.header_reads is not None:
            shard["headerReads"] = self.header_reads
        if self.quarantined is not None:
            shard["quarantined"] = self.quarantined
        if self.outputs:
            shard["outputs"] = dict(self.outputs)
        if self.reasons:
            shard["reasons"] = self.reasons.as_dict()
        if self.delivery_seconds is not None:
            shard["deliverySeconds"] = round(self.delivery_seconds, 3)
        return {"status": {"shards": {str(index): shard}}}


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class PlanReport:
    """The batch's plan in counts, as the plan stage patches it into status.plan: how many
    shards the process stage runs, and the batch's totals, known before any image is processed
    (a study split across shards counted once; every per-file problem once)."""

    shards: int = 0
    discovered: int = 0  # DICOM instances, each in exactly one shard
    studies: int = 0
    series: int = 0
    skipped: int = 0  # files that are not DICOM instances, or duplicates
    failed: int = 0  # files that could not be read (truncated, unreadable, vanished)
    header_reads: int = 0  # files whose header the plan pass read: once each

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> PlanReport | None:
        """status.plan, or None when there is none (yet)."""
        if not data or not data.get("shards"):
            return None
        return cls(**{f.name: int(data.get(_camel(f.name)) or 0) for f in dataclasses.fields(cls)})

    def as_status(self) -> dict[str, int]:
        return {_camel(k): v for k, v in dataclasses.asdict(self).items()}

    def patch(self) -> dict[str, Any]:
        return {"status": {"plan": self.as_status()}}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.title() for word in rest)


def shard_count(parallelism: int, plan: PlanReport | None) -> int | None:
    """Shards of the process and send stages: one without a plan stage (parallelism 1), else
    the plan's (fewer than parallelism when the batch has fewer series); None until planned."""
    if parallelism == 1:
        return 1
    return plan.shards if plan else None

"""The run report: counts and per-file outcomes, with pseudonymous file references only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sendit_api.status import Counts, Reasons, ShardReport

# Discovery's problems that are images which did not make it (failed, not skipped).
UNREADABLE = ("truncated", "unreadable", "vanished")
# The plan's problems for files changed on the source since it was made (failed, not skipped:
# `cleanup.source: delete` must not remove what was never sent).
SOURCE_CHANGED = ("changed since the batch was planned", "added since the batch was planned")
# Failed classes a rerun may complete (the file changed while the run went); every other
# failure is the file's own and fails the same way again.
RERUN_COMPLETES = ("source-changed",)
# A reason's text, by how it begins, to its class (anything else: "other").
FAILED_CLASSES = (
    (UNREADABLE, "unreadable"),
    (SOURCE_CHANGED, "source-changed"),
    (("verification",), "verification"),
    (("could not",), "deidentify"),
)
WITHHELD_CLASSES = (
    (("burned-in annotation",), "burned-in-header"),
    (("possible burned-in",), "burned-in-suspected"),
    (("burned-in text remains",), "text-remains"),
    (("text by nature",), "document"),
    (("recognizable visual features",), "face"),
    (("withheld by a blacklist rule",), "filter-rule"),
    (("pixels not cleaned",), "not-cleaned"),
)


@dataclass
class FileError:
    ref: str  # pseudonymous reference: `sendit locate REF FOLDER...` finds the file
    reason: str


@dataclass
class Report:
    discovered: int = 0  # DICOM instances found
    anonymized: int = 0
    withheld: int = 0
    failed: int = 0
    skipped: int = 0  # files and folders that were not DICOM instances, or were duplicates
    sent: int = 0  # images delivered to every destination (this run or an earlier one)
    studies: int = 0
    series: int = 0
    header_reads: int = 0  # files whose header this run read (planning): none in a planned shard
    pixels_cleaned: int = 0  # anonymized images whose burned-in text was blanked
    quarantined: int = 0  # withheld images kept in the quarantine for review
    errors: list[FileError] = field(default_factory=list)  # failed and skipped, with reasons
    withheld_files: list[FileError] = field(default_factory=list)
    withheld_by: dict[str, int] = field(default_factory=dict)  # by reason class
    failed_by: dict[str, int] = field(default_factory=dict)

    def withhold(self, ref: str, reason: str) -> None:
        self.withheld += 1
        self.withheld_files.append(FileError(ref, reason))
        kind = reason_class(WITHHELD_CLASSES, reason)
        self.withheld_by[kind] = self.withheld_by.get(kind, 0) + 1

    def fail(self, ref: str, reason: str) -> None:
        self.failed += 1
        self.errors.append(FileError(ref, reason))
        kind = reason_class(FAILED_CLASSES, reason)
        self.failed_by[kind] = self.failed_by.get(kind, 0) + 1

    def counts(self) -> Counts:
        return Counts.of(vars(self))

    def shard(
        self, stage: str, outputs: dict[str, int] | None = None, delivery: float | None = None
    ) -> ShardReport:
        """This report as a shard's, for its batch's status (counts only)."""
        reasons = Reasons(dict(self.withheld_by), dict(self.failed_by))
        # Header reads and the quarantine are the process stage's to report; a send stage
        # leaves them as they were.
        processing = stage in ("processing", "processed")
        return ShardReport(
            stage,
            self.counts(),
            outputs or {},
            reasons,
            delivery,
            header_reads=self.header_reads if processing else None,
            quarantined=self.quarantined if processing else None,
        )

    @property
    def rerun_may_complete(self) -> bool:
        return any(self.failed_by.get(kind) for kind in RERUN_COMPLETES)

    def summary(self, *, sent: bool = True) -> str:
        """The counts on one line; `sent` only once delivery is done."""
        parts = []
        for name, value in self.counts().as_dict().items():
            if name == "sent" and not sent:
                continue
            parts.append(f"{name} {value}")
            if name == "anonymized" and self.pixels_cleaned:
                parts[-1] += f" (burned-in text blanked in {self.pixels_cleaned})"
        return ", ".join(parts)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def counted(n: int, noun: str) -> str:
    """`1 image`, `2 images`, `3 series`."""
    return f"{n} {noun if n == 1 or noun.endswith('s') else noun + 's'}"


def reason_class(classes: tuple[tuple[tuple[str, ...], str], ...], reason: str) -> str:
    """A reason's class, one of the fixed set in sendit_api.status."""
    return next((kind for prefixes, kind in classes if reason.startswith(prefixes)), "other")

"""The run report: counts and per-file outcomes, with pseudonymous file references only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sendit_api.status import Counts


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
    errors: list[FileError] = field(default_factory=list)  # failed and skipped, with reasons
    withheld_files: list[FileError] = field(default_factory=list)

    def counts(self) -> Counts:
        return Counts.of(vars(self))

    def summary(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.counts().as_dict().items())

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

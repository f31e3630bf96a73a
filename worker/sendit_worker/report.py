"""The run report: counts and per-file outcomes, with pseudonymous file references only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


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
    sent: int = 0  # images delivered to every configured destination (this run or an earlier)
    studies: int = 0
    series: int = 0
    errors: list[FileError] = field(default_factory=list)  # failed and skipped, with reasons
    withheld_files: list[FileError] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int)}

    def summary(self) -> str:
        c = self.counts()
        return ", ".join(f"{k} {v}" for k, v in c.items())

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

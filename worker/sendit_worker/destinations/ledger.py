"""The delivery ledger: an append-only JSON-lines file of series delivered, beside the work or
staging data. A line is written (and fsynced) only after the series is in every destination, so
a rerun skips what it lists. It is an accelerator, not the only guard: object checksums, load
job ids and event ids make a rerun without it deliver nothing twice too.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any


def series_key(series: str, sops: list[str]) -> str:
    """A series and exactly these images: a changed series is delivered again."""
    return hashlib.sha256("\0".join([series, *sorted(sops)]).encode()).hexdigest()[:32]


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._done: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: its series was not recorded
                if isinstance(entry, dict) and "key" in entry:
                    self._done[entry["key"]] = entry

    def done(self, key: str) -> dict[str, Any] | None:
        return self._done.get(key)

    def __len__(self) -> int:
        return len(self._done)

    def record(self, key: str, **entry: Any) -> None:
        line = json.dumps({"key": key, **entry}, sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._done[key] = {"key": key, **entry}

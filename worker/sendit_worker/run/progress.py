"""Where a run's progress goes: a bar on a terminal, a log line at a steady interval when
stderr is no terminal (a CI log, a pipe), or merge patches of the shard's report into the
batch's status (rate-limited; stage changes at once)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from sendit_api.status import ShardReport

log = logging.getLogger("sendit")

PATCH_EVERY = 2.0  # seconds between progress patches of one shard
LOG_EVERY = 10.0  # seconds between progress lines without a terminal


class TerminalProgress:
    """Images done of those discovered: a bar on a terminal (log lines go above it, not onto
    it), else a line every `every` seconds with the counts, the rate and the time left."""

    def __init__(self, terminal: bool | None = None, every: float = LOG_EVERY) -> None:
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.every = every
        self.latest: ShardReport | None = None  # the counts as last reported
        self.bar: tqdm | None = None
        self._redirect = ExitStack()
        self._began = self._logged = 0.0
        self._done = 0

    def stage(self, report: ShardReport) -> None:
        self.latest = report
        if report.stage == "processing" and report.counts.discovered and not self._began:
            self._began = self._logged = time.monotonic()
            if self.terminal:
                self._redirect.enter_context(logging_redirect_tqdm())
                self.bar = tqdm(total=report.counts.discovered, unit="img")
        elif report.stage != "processing":
            self.close()

    def advance(self, report: ShardReport, images: int) -> None:
        self.latest = report
        self._done += images
        if self.bar is not None:
            self.bar.update(images)
        elif self._began and time.monotonic() - self._logged >= self.every:
            self._logged = time.monotonic()
            log.info("progress: %s", self.line())

    def line(self) -> str:
        """Done of discovered, the counts so far, the rate and the time left."""
        counts = self.latest.counts if self.latest else None
        total = counts.discovered if counts else 0
        elapsed = time.monotonic() - self._began if self._began else 0.0
        rate = self._done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self._done} of {total} images"]
        if counts:
            parts.append(
                f"anonymized {counts.anonymized}, withheld {counts.withheld}, "
                f"failed {counts.failed}"
            )
        if rate > 0:
            parts.append(f"{rate:.1f} img/s, about {duration((total - self._done) / rate)} left")
        return "; ".join(parts)

    def written(self) -> str:
        """How far a stopped run got: images written of those found."""
        counts = self.latest.counts if self.latest else None
        if counts is None or not counts.discovered:
            return "0 written (the folders were still being read)"
        return f"{counts.anonymized} of {counts.discovered} written"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._redirect.close()


def duration(seconds: float) -> str:
    """`45 s`, `3 min 20 s`, `2 h 5 min`: as a person reads a time left."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class StatusProgress:
    """This shard's report, merge-patched into status.shards.<index> (counts only)."""

    def __init__(
        self, patch: Callable[[dict[str, Any]], None], index: int, every: float = PATCH_EVERY
    ) -> None:
        self.patch, self.index, self.every = patch, index, every
        self._last = 0.0

    def stage(self, report: ShardReport) -> None:
        self._send(report)

    def advance(self, report: ShardReport, images: int) -> None:
        """Counts are best-effort: a patch that fails (the API server restarting) is left to
        the next, which carries them all. A stage's patch is not (it raises)."""
        if time.monotonic() - self._last >= self.every:
            try:
                self._send(report)
            except Exception as exc:
                log.warning("a progress patch failed (%s); the next carries it", type(exc).__name__)

    def _send(self, report: ShardReport) -> None:
        self._last = time.monotonic()
        self.patch(report.patch(self.index))

"""Where a run's progress goes: a bar on a terminal, or merge patches of the shard's report
into the batch's status (rate-limited; stage changes at once)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from sendit_api.status import ShardReport

log = logging.getLogger("sendit")
PATCH_EVERY = 2.0  # seconds between progress patches of one shard


class TerminalProgress:
    """Images done of those discovered, on a terminal; quiet when stderr is not one."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar: tqdm | None = None

    def stage(self, report: ShardReport) -> None:
        if report.stage == "processing" and report.counts.discovered and self.bar is None:
            self.bar = tqdm(total=report.counts.discovered, unit="img", disable=not self.enabled)
        elif report.stage != "processing" and self.bar is not None:
            self.bar.close()
            self.bar = None

    def advance(self, report: ShardReport, images: int) -> None:
        if self.bar is not None:
            self.bar.update(images)


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

"""The two send modes, as hooks around the pipeline run.

- auto: de-identify and deliver in one pass, series by series; delivered files are removed from
  the work folder as they go (unless `destinations.local` asks to keep them).
- manual: stage one writes to a staging folder and stops at DONEPROCESSING; `send` delivers
  the staged batch, then removes the staging data (phase SENT).

Either way the source folders are removed only when `cleanup.source: delete` is asked and the
send was verified complete: every image anonymized and sent, none failed or withheld.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from .. import staging
from ..report import Report
from ..spec import Batch
from .config import Destinations
from .deliver import Delivery, prune
from .errors import DeliveryError

log = logging.getLogger("sendit")


def destinations(batch: Batch) -> Destinations:
    return Destinations.from_spec(batch.spec["destinations"])


def wants_delivery(batch: Batch | None) -> bool:
    return batch is not None and destinations(batch).any


def default_workdir(batch: Batch) -> Path:
    """Beside the manifest: `.sendit/<batch>` (the ledger there survives a killed run)."""
    return batch.base / ".sendit" / batch.name


class AutoRun:
    """`send: auto`: preflight, then deliver each series as the pipeline finishes it."""

    def __init__(self, batch: Batch, root: Path, shard: tuple[int, int] = (0, 1)) -> None:
        self.batch = batch
        self.delivery = Delivery(
            batch.name,
            destinations(batch),
            root,
            keep_files=batch.output() is not None,
            shard=shard,
        )
        self.delivery.preflight()
        self.delivery.started()
        self.header_json = self.delivery.header_json
        self.on_series = self.delivery.on_series

    def finish(self, report: Report) -> int:
        try:
            self.delivery.finish(report)
        except DeliveryError as exc:
            log.error("delivery incomplete: %s", exc)
            return 1
        finally:
            self.delivery.close()
        if not self.delivery.keep_files:
            prune(self.delivery.root)
        cleanup_source(self.batch, report.counts())
        return 0


class ManualStage:
    """`send: manual`, stage one: stage the de-identified batch and stop at DONEPROCESSING."""

    def __init__(self, batch: Batch, root: Path) -> None:
        self.batch = batch
        self.root = root
        self.header_json = destinations(batch).bigquery is not None
        self.on_series = staging.StagingWriter(root).on_series

    def finish(self, report: Report) -> int:
        staging.write_state(self.root, staging.DONEPROCESSING, self.batch.name, report.counts())
        log.info("staged in %s: phase DONEPROCESSING; deliver with `sendit send`", self.root)
        return 0


def hook_for(batch: Batch, root: Path) -> AutoRun | ManualStage:
    return ManualStage(batch, root) if batch.send == "manual" else AutoRun(batch, root)


def send(batch: Batch, root: Path) -> tuple[int, Report]:
    """Stage two: deliver a staged batch; on a verified send remove the staging data."""
    state = staging.read_state(root)
    known = set(Report().counts())
    report = Report(**{k: v for k, v in (state or {}).get("counts", {}).items() if k in known})
    if state is None:
        raise DeliveryError("no staged batch there (run `sendit run -f` with send: manual first)")
    if state["phase"] == staging.SENT:
        log.info("the batch was already sent")
        return 0, report
    delivery = Delivery(batch.name, destinations(batch), root, keep_files=True)
    delivery.preflight()
    delivery.started()
    try:
        for images in staging.staged_series(root):
            delivery.submit(images)
        delivery.finish(report)
    finally:
        delivery.close()
    if report.sent != report.anonymized:
        raise DeliveryError(f"{report.anonymized - report.sent} staged images are missing")
    staging.remove_staged(root)
    staging.write_state(root, staging.SENT, batch.name, report.counts())
    cleanup_source(batch, report.counts())
    return 0, report


def cleanup_source(batch: Batch, counts: dict[str, Any]) -> None:
    if batch.spec.get("cleanup", {}).get("source") != "delete":
        return
    complete = (
        counts.get("failed", 0) == 0
        and counts.get("withheld", 0) == 0
        and counts.get("sent", 0) == counts.get("anonymized", 0) == counts.get("discovered", 0)
    )
    if not complete:
        log.warning("cleanup.source: delete skipped: not every image was sent (see the counts)")
        return
    for folder in batch.folders():
        shutil.rmtree(folder)
    log.info("cleanup: removed %d source folders after a verified send", len(batch.folders()))

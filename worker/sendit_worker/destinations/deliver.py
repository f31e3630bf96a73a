"""Delivery of de-identified series to the configured destinations, series by series.

Per series: build the layout's artifacts, upload them concurrently (verified, idempotent),
insert the series' rows into BigQuery (those the table lacks), publish `series.delivered`, then
record the series in the ledger and (unless asked to keep them) remove its local files. A
failed series is left in place and reported; the batch then ends failed, and a rerun delivers
what is missing and nothing twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sendit_api.spec import Destinations

from ..report import Report
from . import layouts
from .bigquery import BigQuerySink, row
from .errors import DeliveryError, DestinationUnavailable
from .gcs import GcsSink
from .google_errors import credentials
from .image import DeidentifiedImage
from .ledger import Ledger, series_key
from .pacs import PacsSink
from .pubsub import PubSubSink, make_event
from .staging import STATE_DIR

log = logging.getLogger("sendit.deliver")


@dataclass(frozen=True)
class SeriesResult:
    images: int
    uploaded: int  # objects sent in this run
    present: int  # objects already there with the same checksum
    jobs: tuple[str, ...] = ()
    skipped: bool = False  # the ledger listed the series as delivered


class Delivery:
    def __init__(
        self,
        batch: str,
        destinations: Destinations,
        root: Path,
        *,
        keep_files: bool,
        shard: tuple[int, int] = (0, 1),
        gcs: GcsSink | None = None,
        bigquery: BigQuerySink | None = None,
        pubsub: PubSubSink | None = None,
        pacs: PacsSink | None = None,
    ) -> None:
        self.batch = batch
        self.destinations = destinations
        self.root = root
        self.keep_files = keep_files
        self.shard = shard  # (index, count): each shard of a batch ends with its own event
        d = destinations
        with credentials():
            self.gcs = gcs or (GcsSink(d.gcs) if d.gcs else None)
            self.bigquery = bigquery or (BigQuerySink(d.bigquery) if d.bigquery else None)
            self.pubsub = pubsub or (PubSubSink(d.pubsub.topic_path) if d.pubsub else None)
        self.pacs = pacs or (PacsSink(d.pacs, shard) if d.pacs else None)
        self.ledger = Ledger(root / STATE_DIR / "ledger.jsonl")
        uploads = d.gcs.concurrency if d.gcs else 4
        # Series at once: as many as a PACS may take associations for, else the upload width.
        series = d.pacs.concurrency if d.pacs else uploads
        self._uploads = ThreadPoolExecutor(uploads, thread_name_prefix="upload")
        self._series = ThreadPoolExecutor(series, thread_name_prefix="series")
        self._pending: list[Future[SeriesResult]] = []
        self._lock = threading.Lock()
        self.sent = 0
        # Told the images delivered so far, each time a series is acknowledged everywhere.
        self.on_sent: Callable[[int], None] | None = None
        self.uploaded = 0
        self.present = 0
        self.failed_series = 0

    @property
    def header_json(self) -> bool:
        return self.bigquery is not None

    # -- the batch --------------------------------------------------------------------------

    def preflight(self) -> None:
        """Every destination exists and is usable: raises DestinationError naming the first that
        is not, before any data moves."""
        for sink in (self.gcs, self.bigquery, self.pacs, self.pubsub):
            if sink is not None:
                sink.preflight()

    def started(self) -> None:
        if self.pubsub:
            try:
                self.pubsub.publish(make_event("batch.started", self.batch))
            except Exception as exc:
                raise DestinationUnavailable(
                    f"cannot publish to Pub/Sub topic {self.pubsub.topic!r} ({type(exc).__name__})"
                ) from None

    def submit(self, images: list[DeidentifiedImage]) -> None:
        """Hand a finished series over and return at once (the pipeline goes on)."""
        self._pending.append(self._series.submit(self.deliver, images))

    def finish(self, report: Report) -> None:
        """Wait for every series; set report.sent; publish batch.done or batch.failed."""
        for future in self._pending:
            try:
                future.result()
            except Exception as exc:
                self.failed_series += 1
                log.error("a series was not delivered: %s", _describe(exc))
        self._pending.clear()
        report.sent = self.sent
        counts = report.counts().as_dict()
        if self.failed_series:
            message = f"{self.failed_series} series not delivered; rerun to complete"
            self._publish_end("batch.failed", counts, message)
            raise DeliveryError(message)
        self._publish_end("batch.done", counts, None)
        log.info(
            "delivered %d images (%d objects uploaded, %d already present)",
            self.sent,
            self.uploaded,
            self.present,
        )

    def close(self) -> None:
        self._series.shutdown(wait=True, cancel_futures=True)
        self._uploads.shutdown(wait=True, cancel_futures=True)
        if self.pacs:
            self.pacs.close()

    # -- one series -------------------------------------------------------------------------

    def deliver(self, images: list[DeidentifiedImage]) -> SeriesResult:
        images = sorted(images, key=lambda i: i.sop)
        first = images[0].metadata
        key = series_key(images[0].series, [i.sop for i in images])
        if self.ledger.done(key):
            self._done(images, SeriesResult(len(images), 0, 0, skipped=True))
            return SeriesResult(len(images), 0, 0, skipped=True)
        work = self.root / STATE_DIR / "artifacts"
        where: dict[str, tuple[str, str | None]] = {}
        uploaded = present = 0
        artifacts: list[layouts.Artifact] = []
        try:
            if self.gcs:
                cfg = self.gcs.config
                artifacts = layouts.build(cfg.layout, cfg.prefix, images, work)
                futures = [self._uploads.submit(self.gcs.upload, a, self.batch) for a in artifacts]
                results = [f.result() for f in futures]
                uploaded = sum(not r.already_present for r in results)
                present = sum(r.already_present for r in results)
                where = layouts.locations(cfg.bucket, artifacts)
            if self.pacs:
                self.pacs.store(images)
            jobs: tuple[str, ...] = ()
            if self.bigquery:
                rows = [row(i, self.batch, *where.get(i.sop, (None, None))) for i in images]
                jobs = tuple(self.bigquery.load(images[0].series, rows))
            if self.pubsub:
                self.pubsub.publish(self._series_event(images, len(artifacts), len(jobs)))
        finally:
            for a in artifacts:  # built archives and volumes (never the images themselves)
                if a.path.is_relative_to(work):
                    a.path.unlink(missing_ok=True)
        self.ledger.record(
            key, series=first.series, images=len(images), objects=len(artifacts), jobs=jobs
        )
        result = SeriesResult(len(images), uploaded, present, jobs)
        self._done(images, result)
        return result

    def _series_event(self, images: list[DeidentifiedImage], objects: int, jobs: int) -> Any:
        m = images[0].metadata
        fields: dict[str, Any] = {
            "patient": m.patient,
            "study": m.study,
            "series": m.series,
            "modality": m.modality,
            "images": len(images),
            "objects": objects,
            "rows": len(images) if jobs else 0,
        }
        if self.gcs:
            cfg = self.gcs.config
            fields["uri"] = f"gs://{cfg.bucket}/{layouts.series_prefix(cfg.prefix, m)}"
            fields["layout"] = cfg.layout
        if self.pacs:
            fields["pacs"] = len(images)  # acknowledged by the PACS, one by one
        return make_event("series.delivered", self.batch, str(m.series), **fields)

    def _done(self, images: list[DeidentifiedImage], result: SeriesResult) -> None:
        with self._lock:
            self.sent += result.images
            self.uploaded += result.uploaded
            self.present += result.present
            sent = self.sent
        if self.on_sent:
            self.on_sent(sent)
        if not self.keep_files:
            for image in images:
                image.path.unlink(missing_ok=True)
            _remove_empty(images[0].path.parent)

    def _publish_end(self, type_: str, counts: dict[str, int], message: str | None) -> None:
        if not self.pubsub:
            return
        fields: dict[str, Any] = {"counts": counts}
        if message:
            fields["message"] = message
        index, count = self.shard
        subject = f"shard {index}/{count}" if count > 1 else ""
        if count > 1:
            fields["shard"] = {"index": index, "count": count}
        try:
            self.pubsub.publish(make_event(type_, self.batch, subject, **fields))
        except Exception as exc:
            log.error("could not publish %s: %s", type_, _describe(exc))
            if type_ == "batch.done":
                raise DeliveryError("the batch.done event could not be published") from None


def _remove_empty(folder: Path) -> None:
    """A delivered series' folder (the pipeline may still be writing into its study folder)."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def prune(root: Path) -> None:
    """Remove empty folders under root once the pipeline is done (never root itself)."""
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if folder.name != STATE_DIR and not folder.is_relative_to(root / STATE_DIR):
            _remove_empty(folder)


def _describe(exc: BaseException) -> str:
    # Library errors name URLs of pseudonymous objects at most; never a source path.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"

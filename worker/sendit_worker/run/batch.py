"""The batch runner: one SenditBatch, or one shard of it, from folders to destinations.

One runner serves a laptop (`sendit run`, `sendit send`) and a pod (`sendit worker`); only the
placement differs: where the folders, config files, workspace, local output and key are, and
whether this process may clean up the source. Progress goes to a terminal bar or to the batch's
status, through the same two calls.

- `plan_batch`: the plan stage of a batch with parallelism above 1: read the source once and
  deal its series onto shards, in the workspace, for every shard's pod to read its share of.
- `run_batch`: stage one. De-identify into the workspace (withheld images into the quarantine,
  where the placement has one); with `deliver`, deliver each series as it is done (send:
  auto), else stage it for `send_batch` and stop (send: manual).
- `send_batch`: stage two of send: manual. Deliver what stage one staged.
- `clean_source`: `cleanup.source: delete`, only after a verified, complete send.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sendit_api.errors import Permanent
from sendit_api.names import IDENTIFIER_TOKEN_ENV
from sendit_api.spec import Batch, Deidentify, FileRef, Source
from sendit_api.status import Counts, PlanReport, ShardReport

from ..destinations import staging
from ..destinations.errors import DeliveryError
from ..files import copy_atomically
from ..header.profile import Options, profile_for
from ..identifiers.replacements import IdentifierSource, ServiceIdentifiers
from ..intake.planner import open_or_make
from ..logs import quiet_libraries
from ..pixels import PixelPolicy
from ..pool import available_cpus, pool
from ..quarantine.store import Quarantine, Record, release_refs, remove_release
from ..report import Report
from .shard import SeriesDone, ShardOptions, run_shard

if TYPE_CHECKING:
    from ..destinations.deliver import Delivery

log = logging.getLogger("sendit")


class Placement(Protocol):
    """Where a batch's things are for this process (a laptop, or one pod of a Job)."""

    shard: tuple[int, int]  # (index, count): which of the plan's shards this process takes
    planned: bool  # a plan stage made the plan (else this process plans, as one shard)
    cleans_source: bool  # may this process remove the source after a verified send
    fresh_workspace: bool  # an earlier attempt's outputs are cleared before stage one
    base: Path | None  # where the manifest's relative paths are (a laptop); None in a pod

    def folders(self, source: Source) -> list[Path]: ...

    def config_file(self, ref: FileRef) -> Path: ...

    def workspace(self, batch: Batch) -> Path:
        """De-identified files, staging and the delivery ledger."""
        ...

    def plan_file(self, batch: Batch) -> Path | None:
        """The batch's plan (source paths: never an output); None: a temporary one."""
        ...

    def local_copy(self, batch: Batch) -> Path | None:
        """Where `destinations.local` gets its copy; None when the workspace is that folder."""
        ...

    def quarantine(self, batch: Batch) -> Path | None:
        """Where withheld images are kept for review; None: they are not kept."""
        ...

    def key(self) -> bytes: ...


class Progress(Protocol):
    def stage(self, report: ShardReport) -> None:
        """A stage began or ended: reported at once."""

    def advance(self, report: ShardReport, images: int) -> None:
        """`images` more are done (may be reported later, with the next)."""


def plan_batch(batch: Batch, placement: Placement, workers: int = 0) -> PlanReport:
    """The plan, made once (a retry of the plan stage finds it made) in the workspace."""
    path = placement.plan_file(batch)
    if path is None:
        raise Permanent("a plan stage needs the batch's workspace")
    folders = placement.folders(batch.spec.source)
    workers = workers or available_cpus()
    with pool(workers, quiet_libraries) as executor:
        plan, _ = open_or_make(path, folders, batch.spec.parallelism, executor, 2 * workers)
    with plan:
        return plan.report


def run_batch(
    batch: Batch, placement: Placement, progress: Progress, *, deliver: bool, workers: int = 0
) -> Report:
    """`workers`: processes (0: every CPU this process may use)."""
    spec = batch.spec
    if not spec.destinations.kinds():
        raise Permanent("the batch has no destinations: nothing would be delivered")
    folders = placement.folders(spec.source)
    workspace = placement.workspace(batch)
    if any(_overlaps(workspace, folder) for folder in folders):
        raise Permanent("the output folder must be outside every input folder")
    kept = placement.quarantine(batch)
    if kept is not None and any(_overlaps(kept, f) for f in [workspace, *folders]):
        raise Permanent("the quarantine must be outside the output and every input folder")
    key = placement.key()
    deid = spec.deidentify
    options = ShardOptions(
        folders=folders,
        output=workspace,
        key=key,
        workers=workers,
        identifiers=_identifier_source(deid),
        recipe=placement.config_file(deid.recipe) if deid.recipe else None,
        filters=tuple(placement.config_file(f) for f in deid.pixels.filters),
        plan=placement.plan_file(batch),
        pixels=PixelPolicy(
            deid.pixels.policy,
            deid.pixels.trust_burned_in_annotation,
            deid.pixels.retain_recognizable_visual_features,
        ),
        shard=placement.shard,
        planned=placement.planned,
        header_json=spec.destinations.bigquery is not None,
        profile=Options(deid.keep_descriptors, deid.cap_ages),
        quarantine=Quarantine(kept, Record.of(batch, placement.base, key)) if kept else None,
    )
    profile_for(options.profile)  # a bad option fails here, before any file is read
    _make_output(workspace)
    if placement.fresh_workspace:
        _clear_outputs(workspace)
    remote = deliver and spec.destinations.remote
    delivery = _delivery(batch, placement, workspace) if remote else None
    try:
        if delivery:
            delivery.preflight()
            delivery.started()
        report = _process(options, progress, workspace, delivery, stage_only=not deliver)
        progress.stage(report.shard("processed"))
        if not deliver:
            staging.write_state(workspace, staging.DONEPROCESSING, batch.name, report.counts())
            log.info("processed: phase DONEPROCESSING; deliver with `sendit send`")
            return report
        return _complete(batch, placement, progress, workspace, report, delivery)
    finally:
        if delivery:
            delivery.close()


def send_batch(batch: Batch, placement: Placement, progress: Progress) -> Report:
    workspace = placement.workspace(batch)
    state = staging.read_state(workspace)
    if state is None:
        raise Permanent("no staged batch in the workspace: run stage one (send: manual) first")
    phase, counts = state
    report = Report(**counts.as_dict())
    if phase == staging.SENT:
        log.info("the batch was already sent")
        progress.stage(report.shard("sent"))
        return report
    remote = batch.spec.destinations.remote
    delivery = _delivery(batch, placement, workspace, keep_files=True) if remote else None
    try:
        if delivery:
            delivery.preflight()
            delivery.started()
            for images in staging.staged_series(workspace):
                delivery.submit(images)
        report = _complete(batch, placement, progress, workspace, report, delivery)
    finally:
        if delivery:
            delivery.close()
    if delivery and report.sent != report.anonymized:
        raise DeliveryError(f"{report.anonymized - report.sent} staged images are missing")
    if placement.local_copy(batch) is not None or batch.spec.destinations.local is None:
        staging.remove_staged(workspace)  # the workspace is scratch, not the local destination
    staging.write_state(workspace, staging.SENT, batch.name, report.counts())
    return report


def clean_source(batch: Batch, placement: Placement, counts: Counts) -> int:
    """Remove the source folders when asked to and every image was sent: the folders removed
    (a quarantine's release: its images, with their previews)."""
    if batch.spec.cleanup.source != "delete":
        return 0
    if not counts.complete:
        log.warning("cleanup.source: delete skipped: not every image was sent (see the counts)")
        return 0
    folders = [f for f in placement.folders(batch.spec.source) if f.is_dir()]
    for folder in folders:
        try:
            if release_refs(folder):
                remove_release(folder)
            else:
                shutil.rmtree(folder)
        except OSError as exc:
            raise Permanent(
                f"cleanup: a source folder cannot be removed ({exc.strerror})"
            ) from None
    log.info("cleanup: removed %d source folders after a verified send", len(folders))
    return len(folders)


def _process(
    options: ShardOptions,
    progress: Progress,
    workspace: Path,
    delivery: Delivery | None,
    *,
    stage_only: bool,
) -> Report:
    """The pipeline, each finished series handed to delivery or to staging as it comes."""
    live: list[Report] = []

    def discovered(report: Report) -> None:
        live.append(report)
        if delivery:
            _report_sent(delivery, progress, report, "processing")
        progress.stage(report.shard("processing"))

    def series(done: SeriesDone) -> None:
        images = done.images(workspace)
        if images and delivery:
            delivery.submit(images)
        elif images and stage_only:
            staging.stage_series(workspace, images)
        progress.advance(live[0].shard("processing"), len(done.outcomes))

    progress.stage(ShardReport("processing"))
    return run_shard(dataclasses.replace(options, on_discovered=discovered, on_series=series))


def _complete(
    batch: Batch,
    placement: Placement,
    progress: Progress,
    workspace: Path,
    report: Report,
    delivery: Delivery | None,
) -> Report:
    """Finish delivery, copy to the local destination, report `sent`, clean up if allowed."""
    dests = batch.spec.destinations
    progress.stage(report.shard("sending"))
    began = time.monotonic()
    outputs: dict[str, int] = {}
    if delivery:
        _report_sent(delivery, progress, report, "sending")
        try:
            delivery.finish(report)  # sets report.sent; raises DeliveryError when incomplete
        except DeliveryError as exc:
            exc.report = report  # what was done, for the command line to show
            raise
        outputs.update(dict.fromkeys((k for k in dests.kinds() if k != "local"), report.sent))
    if dests.local:
        target = placement.local_copy(batch)
        outputs["local"] = _copy_tree(workspace, target) if target else report.anonymized
        if not delivery:
            report.sent = outputs["local"]
    elif delivery:
        from ..destinations.deliver import prune

        prune(workspace)
    progress.stage(report.shard("sent", outputs, time.monotonic() - began))
    if placement.cleans_source:
        clean_source(batch, placement, report.counts())
    return report


def _report_sent(delivery: Delivery, progress: Progress, report: Report, stage: str) -> None:
    """`sent` grows in the shard's report as series are acknowledged, not only at its end
    (reported as progress is: rate-limited)."""

    def sent(total: int) -> None:
        report.sent = total
        progress.advance(report.shard(stage), 0)

    delivery.on_sent = sent


def _delivery(
    batch: Batch, placement: Placement, workspace: Path, *, keep_files: bool | None = None
) -> Delivery:
    """Delivery for this shard: each shard ends with its own event (its own id). Imported here:
    the destinations' client libraries cost half a second of CPU to import, which a run that
    delivers nowhere but a local folder need not pay."""
    from ..destinations.deliver import Delivery

    dests = batch.spec.destinations
    keep = dests.local is not None if keep_files is None else keep_files
    return Delivery(batch.name, dests, workspace, keep_files=keep, shard=placement.shard)


def _identifier_source(deid: Deidentify) -> IdentifierSource | None:
    service = deid.identifier_service
    if service is None:
        return None
    return ServiceIdentifiers(
        service.url,
        timeout=service.timeout_seconds,
        retries=service.retries,
        token=os.environ.get(IDENTIFIER_TOKEN_ENV),
    )


def _copy_tree(src: Path, dst: Path) -> int:
    """Copy the de-identified files, each atomically; a retry overwrites with the same bytes."""
    n = 0
    for path in sorted(src.rglob("*.dcm")) if src.is_dir() else []:
        if staging.STATE_DIR in path.relative_to(src).parts:
            continue
        copy_atomically(path, dst / path.relative_to(src))
        n += 1
    return n


def _clear_outputs(workspace: Path) -> None:
    """An earlier attempt of this shard: its outputs go (they are reproducible); its ledger
    stays, so what it delivered is not delivered again."""
    if not workspace.is_dir():
        return
    for child in workspace.iterdir():
        if child.name != staging.STATE_DIR:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def _make_output(folder: Path) -> None:
    """The output folder, made now and writable: a wrong path is one clear error before any
    file is read, not a failure of every image."""
    if folder.exists() and not folder.is_dir():
        raise Permanent("the output is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Permanent(f"the output folder cannot be made ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Permanent("the output folder is not writable")


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)

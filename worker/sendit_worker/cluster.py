"""`sendit worker`: one pod of a batch's Indexed Job, run by the operator.

The pod reads its batch's spec from the API (validated by the same schema as `sendit run -f`),
takes its shard of the series (`JOB_COMPLETION_INDEX` of `parallelism`), and reports progress
into the batch's status under its own shard key with merge patches, so shards never conflict.

Stages: `process` de-identifies the shard into the workspace, and with `--send` delivers it from
the same pod; `send` (the manual second stage) delivers what an earlier `process` left in the
workspace. Paths come in as arguments: the operator decides where volumes are mounted.

Exit codes (the Job's podFailurePolicy reads them): 0 done (images that could not be
de-identified are counted, not retried: they fail the same way every time); 2 a configuration
error, permanent, fails the Job at once; anything else is retryable within backoffLimit.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .identifiers import IdentifierServiceError, ServiceIdentifiers
from .pseudonyms import load_key
from .spec import API_VERSION, Batch, load

if TYPE_CHECKING:  # the pipeline (pydicom, deid, numpy) loads when a worker runs, not when
    # the operator imports this module's names
    from .pipeline import SeriesDone
    from .report import Report

log = logging.getLogger("sendit")

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "senditbatches"
EXIT_OK, EXIT_RETRY, EXIT_CONFIG = 0, 1, 2
TOKEN_ENV = "SENDIT_IDENTIFIER_TOKEN"
REPORT_EVERY = 2.0  # seconds between progress patches


def config_file(root: Path, ref: dict[str, Any]) -> Path:
    """Where a `configMapKeyRef` is mounted: the operator mounts each ConfigMap at root/NAME."""
    ref = ref["configMapKeyRef"]
    return root / ref["name"] / ref["key"]


def shard_dir(work: Path, uid: str, index: int) -> Path:
    """A shard's de-identified files in the workspace, kept apart per batch and shard."""
    return work / uid / str(index)


@dataclass
class Paths:
    source: Path  # the source volume, read-only
    work: Path  # the workspace volume
    config: Path  # ConfigMaps (recipe, filters)
    local: Path | None = None  # the local destination, when the batch has one


@dataclass
class ShardProgress:
    """This shard's counts, merge-patched into status.shards.<index> (counts only)."""

    patch: Callable[[dict[str, Any]], None]
    index: int
    counts: dict[str, Any] = field(default_factory=dict)
    _last: float = 0.0

    def update(self, force: bool = False, **values: Any) -> None:
        self.counts.update(values)
        now = time.monotonic()
        if force or now - self._last >= REPORT_EVERY:
            self._last = now
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.patch({"status": {"shards": {str(self.index): {**self.counts, "updated": stamp}}}})

    def series(self, done: SeriesDone) -> None:
        for outcome in done.outcomes:
            self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        self.update()


def work(
    body: dict[str, Any],
    stage: str,
    send: bool,
    shard: tuple[int, int],
    paths: Paths,
    progress: ShardProgress,
) -> int:
    """Run this pod's part of the batch: the exit code; raises ConfigError when permanent."""
    batch = load(body, paths.source)
    if shard[1] != batch.spec["parallelism"]:
        raise ConfigError("the Job's completions do not match spec.parallelism")
    if not batch.spec["destinations"]:
        raise ConfigError("the batch has no destinations: nothing would be delivered")
    workspace = shard_dir(paths.work, body["metadata"]["uid"], shard[0])
    if stage == "process":
        report, hook = _process(batch, shard, paths, workspace, progress, send)
        if hook is not None:
            if send:
                progress.update(force=True, stage="sending")
            if hook.finish(report):  # AutoRun delivers; ManualStage records the staging
                raise RetryableError("delivery incomplete")
        if not send:
            return EXIT_OK
        sent = report.sent if hook is not None else None
    else:
        progress.update(force=True, stage="sending")
        sent = _send_staged(batch, workspace) if _remote(batch) else None
    outputs = _deliver_local(batch, workspace, paths)
    remote = [k for k in batch.spec["destinations"] if k != "local"]
    if sent is not None:
        outputs.update(dict.fromkeys(remote, sent))
    total = sent if sent is not None else outputs.get("local", 0)
    progress.update(force=True, stage="sent", sent=total, outputs=outputs)
    return EXIT_OK


class RetryableError(Exception):
    """Worth another attempt within backoffLimit (a destination or service was unavailable)."""


def _remote(batch: Batch) -> bool:
    """Does the batch name a destination of issue 3's delivery (GCS, BigQuery, Pub/Sub)?"""
    from .destinations.modes import wants_delivery

    return wants_delivery(batch)


def _process(
    batch: Batch,
    shard: tuple[int, int],
    paths: Paths,
    out: Path,
    progress: ShardProgress,
    send: bool,
) -> tuple[Report, Any]:
    from .pipeline import RunOptions, run

    key, _ = load_key(None, create_default=False)
    deid = batch.spec["deidentify"]
    recipe = config_file(paths.config, deid["recipe"]) if deid.get("recipe") else None
    filters = tuple(config_file(paths.config, f) for f in deid["pixels"].get("filters", []))
    service = deid.get("identifierService")
    identifiers = (
        ServiceIdentifiers(
            service["url"],
            timeout=service["timeoutSeconds"],
            retries=service["retries"],
            token=os.environ.get(TOKEN_ENV),
        )
        if service
        else None
    )
    if out.exists():  # an earlier attempt of this shard: start clean, outputs are reproducible
        shutil.rmtree(out)
    hook = None
    if _remote(batch):
        from .destinations.modes import AutoRun, ManualStage

        hook = AutoRun(batch, out) if send else ManualStage(batch, out)

    def on_series(done: SeriesDone) -> None:
        if hook is not None:
            hook.on_series(done)
        progress.series(done)

    progress.update(force=True, stage="processing", anonymized=0, withheld=0, failed=0)
    folders = [paths.source / f.lstrip("/") for f in batch.spec["source"]["folders"]]
    report = run(
        RunOptions(
            folders=folders,
            output=out,
            key=key,
            identifiers=identifiers,
            recipe=recipe,
            filters=filters,
            shard=shard,
            progress=False,
            on_series=on_series,
            header_json=bool(hook and hook.header_json),
        )
    )
    progress.update(force=True, stage="processed", **report.counts())
    return report, hook


def _send_staged(batch: Batch, workspace: Path) -> int:
    from .destinations.errors import DeliveryError
    from .destinations.modes import send

    try:
        _, report = send(batch, workspace)
    except DeliveryError as exc:
        raise RetryableError(str(exc)) from None
    return report.sent


def _deliver_local(batch: Batch, workspace: Path, paths: Paths) -> dict[str, int]:
    """`destinations.local`: a folder mounted into the pod; the shard's files are copied there."""
    if "local" not in batch.spec["destinations"]:
        return {}
    if paths.local is None:
        raise ConfigError("destinations.local is set but no local folder was mounted")
    return {"local": _copy_tree(workspace, paths.local)}


def _copy_tree(src: Path, dst: Path) -> int:
    """Copy the de-identified files, each atomically; a retry overwrites with the same bytes."""
    n = 0
    for path in sorted(src.rglob("*.dcm")) if src.is_dir() else []:
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(path, partial)
        os.replace(partial, target)
        n += 1
    return n


def custom_objects_api() -> Any:
    """The API client of a pod (its ServiceAccount) or, outside a cluster, of the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def main(args: Any) -> int:
    """The `sendit worker` command: I/O at the edge, exit codes for the Job."""
    api = custom_objects_api()
    ns, name = args.namespace, args.batch

    def patch(body: dict[str, Any]) -> None:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, name, body, _content_type="application/merge-patch+json"
        )

    index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    body = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    paths = Paths(args.source, args.work, args.config, args.local)
    progress = ShardProgress(patch, index)
    try:
        code = work(body, args.stage, args.send, (index, args.shards), paths, progress)
    except (IdentifierServiceError, RetryableError) as exc:
        # A service down or confused: worth another attempt within backoffLimit.
        log.error("shard %d: %s", index, exc)
        return EXIT_RETRY
    except ConfigError as exc:
        log.error("shard %d: configuration error: %s", index, exc)
        return EXIT_CONFIG
    log.info("shard %d: %s done", index, args.stage)
    return code

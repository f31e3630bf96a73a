"""`sendit worker`: one pod of a batch's Indexed Job, run by the operator. A thin adapter: it
reads its batch from the API, places it in the pod's mounts and runs the batch runner, with
progress merge-patched into status.shards.<index> (shards never conflict).

Stages: `plan` (one pod, with parallelism above 1) reads the source once, writes the batch's
plan to the workspace and its counts to status.plan; `process` de-identifies this shard's
files into the workspace and, with `--send`, delivers them from the same pod; `send` delivers
what a manual `process` left in the workspace; `cleanup` (one pod, the source mounted
read-write) removes the source folders once the batch's rolled-up counts show a complete,
verified send. Exit codes are the command line's (see `main`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sendit_api.errors import Permanent
from sendit_api.names import GROUP, PLURAL, SHARD_INDEX_ENV, VERSION
from sendit_api.spec import parse_batch
from sendit_api.status import Counts, PlanReport, shard_count

from ..run.batch import clean_source, plan_batch, run_batch, send_batch
from ..run.placement import PodPlacement
from ..run.progress import StatusProgress
from .kubeapi import custom_objects_api

log = logging.getLogger("sendit")


def main(args: Any) -> int:
    api = custom_objects_api()
    ns, name = args.namespace, args.batch

    def patch(body: dict[str, Any]) -> None:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, name, body, _content_type="application/merge-patch+json"
        )

    index = int(os.environ.get(SHARD_INDEX_ENV, "0"))
    body = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    batch = parse_batch(body)
    planned = batch.spec.parallelism > 1
    if args.stage in ("process", "send"):
        expected = shard_count(batch.spec.parallelism, PlanReport.of(_status(body).get("plan")))
        if args.shards != expected:
            raise Permanent("the Job's completions do not match the batch's plan")
    uid = body["metadata"]["uid"]
    placement = PodPlacement(
        args.source, args.work, args.config, args.local, uid, (index, args.shards), planned
    )
    progress = StatusProgress(patch, index)
    if args.stage == "plan":
        patch(plan_batch(batch, placement).patch())
    elif args.stage == "process":
        run_batch(batch, placement, progress, deliver=args.send)
    elif args.stage == "send":
        send_batch(batch, placement, progress)
    else:
        counts = Counts.of(_status(body).get("counts") or {})
        clean_source(batch, placement, counts)
    log.info("shard %d: %s done", index, args.stage)
    return 0


def _status(body: dict[str, Any]) -> dict[str, Any]:
    return body.get("status") or {}

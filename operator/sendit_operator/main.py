"""`sendit operator`: kopf's runner with Sendit's settings, a liveness and a metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from prometheus_client import start_http_server

from . import handlers
from .handlers import Config, State
from .kube import Kube


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = "sendit.dev/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="sendit.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="sendit.dev")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.batching.worker_limit = 64
    if memo.get("metrics_port"):
        start_http_server(memo.metrics_port)
    # Every API call runs in a thread (the client blocks): the default pool (cores + 4) would
    # make a burst of new batches wait in line.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=32))


@kopf.on.startup()
async def start_resync(
    memo: kopf.Memo, batch_index: kopf.Index, job_index: kopf.Index, **_
) -> None:
    state: State = memo.state
    task = asyncio.create_task(handlers.resync(state, batch_index, job_index))
    state.tasks.add(task)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.state.tasks:
        task.cancel()


def main(args: Any) -> int:
    config = Config(
        image=args.worker_image,
        max_running=args.max_running,
        resync_seconds=args.resync_seconds,
    )
    memo = kopf.Memo(state=State(config=config, kube=Kube()), metrics_port=args.metrics_port)
    namespaces = args.namespace or []
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        memo=memo,
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz"
        if args.liveness_port
        else None,
        standalone=True,
    )
    return 0

"""`sendit-operator`: kopf's runner with Sendit's handlers and settings, a liveness and a
metrics endpoint, and if asked the read-only status page. Imports the contract (sendit_api),
kopf (and aiohttp, which it runs on), the Kubernetes client and the Prometheus client only: no
DICOM, no de-identification, no Google clients."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sendit_api import exits

if TYPE_CHECKING:
    import kopf


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # --help needs none of the operator's packages
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import kopf

        from .handlers import Config, State, register
        from .kube import Kube
        from .policy import Policy, PolicyFile
    except ModuleNotFoundError as exc:  # an install without the operator's packages
        print(
            f"sendit-operator: {exc.name} is missing: pip install 'sendit[operator]'",
            file=sys.stderr,
        )
        return exits.PERMANENT
    if args.policy:
        policy = PolicyFile(args.policy)
        policy()  # unreadable: fail at start, not at the first batch
    else:
        strict = Policy.strict(args.worker_image)
        policy = lambda: strict  # noqa: E731
    config = Config(args.worker_image, args.max_running, args.resync_seconds, policy)
    registry = kopf.OperatorRegistry()
    register(registry, config)
    _lifecycle(registry, args)
    memo = kopf.Memo(state=State(config=config, kube=Kube()))
    kopf.run(
        registry=registry,
        clusterwide=not args.namespace,
        namespaces=args.namespace or [],
        memo=memo,
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz"
        if args.liveness_port
        else None,
        standalone=True,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sendit-operator", description=__doc__.splitlines()[0])
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument(
        "--namespace", action="append", help="a namespace to watch (repeat; default: all)"
    )
    p.add_argument("--max-running", type=int, default=10, help="batches running at once")
    p.add_argument("--worker-image", default="sendit-worker:latest", help="the workers' image")
    p.add_argument(
        "--policy",
        type=Path,
        help="the policy's JSON, as the chart's ConfigMap mounts it (default: the worker image, "
        "no named ServiceAccount, persistentVolumeClaim and csi sources, no node folder)",
    )
    p.add_argument("--liveness-port", type=int, default=8080, help="0: no /healthz")
    p.add_argument("--metrics-port", type=int, default=9090, help="0: no /metrics")
    p.add_argument("--status-port", type=int, default=0, help="the read-only status page (0: none)")
    p.add_argument(
        "--status-address", default="0.0.0.0", help="the address the status page listens on"
    )
    p.add_argument(
        "--resync-seconds",
        type=float,
        default=30.0,
        help="how often a batch not final is looked at",
    )
    return p


def _lifecycle(registry: kopf.OperatorRegistry, args: argparse.Namespace) -> None:
    import kopf
    from prometheus_client import start_http_server

    from . import page_server
    from .kube import MANAGER

    # In-cluster or kubeconfig credentials, through the Kubernetes client (kopf's default
    # login lives on its default registry, not on ours).
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    async def configure(
        settings: kopf.OperatorSettings, memo: kopf.Memo, batch_index: kopf.Index, **_: Any
    ) -> None:
        settings.persistence.finalizer = "sendit.dev/operator"  # kopf's timer keeps one
        settings.posting.reporting_component = MANAGER
        settings.posting.reporting_instance = os.environ.get("HOSTNAME", MANAGER)
        # Events are the phase changes the handlers post; kopf's own log lines (a handler or
        # a timer that succeeded) stay in the log, not in the API server.
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.batching.worker_limit = 64
        if args.metrics_port:
            start_http_server(args.metrics_port)
        if args.status_port:
            kube, namespaces = memo.state.kube, args.namespace or []
            events = page_server.Events(lambda: kube.batch_events(namespaces))
            bodies = lambda: (b for key in batch_index for b in batch_index[key])  # noqa: E731
            memo.state.page = await page_server.start(
                bodies, events, args.status_address, args.status_port
            )
        # Every API call runs in a thread (the client blocks): the default pool (cores + 4)
        # would make a burst of new batches wait in line.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=32))

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        for task in memo.state.tasks:
            task.cancel()
        if memo.state.page is not None:
            await memo.state.page.cleanup()

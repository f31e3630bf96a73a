"""The kopf handlers: observe, ask `plan`, execute. Every event of a batch or of one of its Jobs,
and kopf's timer for every batch not final, leads to one level-triggered `reconcile`.

State lives in the cluster (the batch's status, its Jobs, the shards' reports); the operator
keeps only kopf's indexes (rebuilt from the watch streams before any handler runs) and the
status it wrote a moment ago, so it can be killed and restarted at any point: children have
deterministic names and creating one that exists is a no-op.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from sendit_api.clock import timestamp
from sendit_api.names import BATCH_LABEL, GROUP, PLURAL, VERSION, WATCH_PLURAL
from sendit_api.spec import Batch, parse_batch
from sendit_api.status import FINAL, QUEUED, RUNNING, Counts, Reasons

from . import metrics, validate
from .children import render_commit_services, render_job, render_worker_rbac
from .kube import Kube, describe
from .plan import CreateStage, DeleteJob, Observed, Plan, SuspendJob, needs_references, plan
from .policy import Policy, refusal, watch_refusal
from .status import job_state, shards_of
from .watches import render_children

log = logging.getLogger("sendit.operator")
Key = tuple[str, str]  # (namespace, batch name)
JSON = dict[str, Any]
Index = Mapping[Key, Any]  # kopf's index: key -> the values stored under it


@dataclass(frozen=True)
class Config:
    image: str
    max_running: int
    resync_seconds: float
    policy: Callable[[], Policy]  # the cluster's policy as it is now (policy.PolicyFile)


@dataclass
class State:
    """Shared by every handler (kopf gives each object a shallow copy of the memo)."""

    config: Config
    kube: Kube
    written: dict[Key, JSON] = field(default_factory=dict)  # until the index shows it
    seen: dict[Key, metrics.Seen] = field(default_factory=dict)  # what the metrics counted
    locks: defaultdict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    admission: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: set[asyncio.Task] = field(default_factory=set)
    page: Any = None  # the status page's server (an aiohttp AppRunner), when it runs


KEPT = ("name", "namespace", "uid", "generation", "creationTimestamp")


def slim(body: Mapping[str, Any]) -> JSON:
    """What reconcile reads of a batch: not its managedFields, annotations or labels (the
    index holds every batch, so its size is the operator's memory)."""
    meta = body["metadata"]
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {k: meta[k] for k in KEPT if k in meta},
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }


def status_of(state: State, batch_index: Index, key: Key) -> JSON:
    """The batch's status as the cluster last showed it, with what this process wrote since
    overlaid (the index can lag behind a patch); the shards are always the cluster's."""
    observed = next(iter(batch_index.get(key, [])), {}).get("status") or {}
    return {**observed, **state.written.get(key, {}), "shards": observed.get("shards", {})}


def running_elsewhere(state: State, batch_index: Index, key: Key) -> int:
    """Batches other than this one that are Processing or Sending, from every batch in the
    cluster (kopf fills the index before the first handler runs, so a restarted operator
    counts the batches it has not reconciled yet too)."""
    return sum(
        status_of(state, batch_index, k).get("phase") in RUNNING for k in batch_index if k != key
    )


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    """Every handler, on the operator's registry (the timer's interval is a setting)."""

    @kopf.index(GROUP, VERSION, PLURAL, id="batch_index", registry=registry)
    def batch_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, JSON]:
        return {(namespace, name): slim(body)}

    @kopf.index(
        "batch/v1", "jobs", id="job_index", labels={BATCH_LABEL: kopf.PRESENT}, registry=registry
    )
    def job_index(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict:
        return {(namespace, labels[BATCH_LABEL]): job_state(dict(body))}

    @kopf.on.event(GROUP, VERSION, PLURAL, id="batch_event", registry=registry)
    async def batch_event(type: str, namespace: str, name: str, memo: kopf.Memo, **kw: Any) -> None:
        state: State = memo.state
        key = (namespace, name)
        if type == "DELETED":  # its Jobs and RBAC go with it (ownerReferences)
            for table in (state.written, state.seen, state.locks):
                table.pop(key, None)
            metrics.set_phases(_phases(state, kw["batch_index"]))
            return
        await guarded(state, key, kw["batch_index"], kw["job_index"])

    @kopf.on.event(
        "batch/v1", "jobs", id="job_event", labels={BATCH_LABEL: kopf.PRESENT}, registry=registry
    )
    async def job_event(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **kw: Any) -> None:
        key = (namespace, labels[BATCH_LABEL])
        await guarded(memo.state, key, kw["batch_index"], kw["job_index"])

    # Now and then, every batch not final: a Secret created later, a free slot, a lost event.
    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        id="resync",
        interval=config.resync_seconds,
        when=lambda status, **_: status.get("phase") not in FINAL,
        registry=registry,
    )
    async def resync(namespace: str, name: str, memo: kopf.Memo, **kw: Any) -> None:
        await guarded(memo.state, (namespace, name), kw["batch_index"], kw["job_index"])

    @kopf.on.event(GROUP, VERSION, WATCH_PLURAL, id="watch_event", registry=registry)
    async def watch_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """A SenditWatch: its scan CronJob and the scan's RBAC, applied (idempotent)."""
        if type == "DELETED":
            return
        state: State = memo.state
        refused = watch_refusal(state.config.policy(), body.get("spec") or {})
        if refused:  # its scan is not made (nor changed): the batches it makes are judged too
            kopf.event(body, type="Warning", reason="PolicyRefused", message=refused, backoffs=())
            return
        try:
            for child in render_children(dict(body), state.config.image):
                await asyncio.to_thread(state.kube.apply, child)
        except Exception as exc:  # logged without the error's text, which can echo the spec
            log.warning("applying the scan of a SenditWatch failed (%s)", describe(exc))


async def guarded(state: State, key: Key, batch_index: Index, job_index: Index) -> None:
    """reconcile, its failure logged without the error's text (an API error can echo the
    spec, folder names included); the timer tries again."""
    try:
        await reconcile(state, key, batch_index, job_index)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("reconciling %s/%s failed (%s); will retry", *key, describe(exc))


async def reconcile(state: State, key: Key, batch_index: Index, job_index: Index) -> None:
    async with state.locks[key]:
        body = next(iter(batch_index.get(key, [])), None)
        if body is None:
            return
        batch = parse_batch(body)
        policy = state.config.policy()
        current = status_of(state, batch_index, key)
        jobs = {j.stage: j for j in job_index.get(key, [])}
        problem = None
        if needs_references(current, jobs):
            exists = lambda kind, name: state.kube.exists(key[0], kind, name)  # noqa: E731
            problem = await asyncio.to_thread(validate.problem, batch.spec, exists)
        async with state.admission:  # a slot is taken at once: the next batch counts it
            free = state.config.max_running - running_elsewhere(state, batch_index, key)
            observed = Observed(batch, current, jobs, problem, free, refusal(policy, batch.spec))
            p = plan(observed, timestamp())
            before = state.written.get(key)
            state.written[key] = p.status
        try:
            await _execute(state, body, batch, p, policy)
        except BaseException:
            if before is None:
                state.written.pop(key, None)
            else:
                state.written[key] = before
            raise
        if any(current.get(k) != v for k, v in p.status.items()):
            await asyncio.to_thread(state.kube.patch_status, PLURAL, *key, p.status)
        if p.event:  # worth one try, not retries: a retried POST that had landed posts twice
            kopf.event(
                body, type=p.event.type, reason=p.event.reason, message=p.event.message, backoffs=()
            )
        _observe(state, key, batch_index, current, p.status)
    if current.get("phase") in RUNNING and p.status.get("phase") not in RUNNING:
        _wake_queued(state, batch_index, job_index)


async def _execute(state: State, body: JSON, batch: Batch, p: Plan, policy: Policy) -> None:
    kube, namespace = state.kube, body["metadata"]["namespace"]
    for action in p.actions:
        if isinstance(action, DeleteJob):
            await asyncio.to_thread(kube.delete_job, namespace, action.name)
        elif isinstance(action, SuspendJob):
            await asyncio.to_thread(kube.suspend_job, namespace, action.name, action.suspend)
        elif isinstance(action, CreateStage):
            await _create(state, body, batch, action, policy)


async def _create(
    state: State, body: JSON, batch: Batch, action: CreateStage, policy: Policy
) -> None:
    # The ServiceAccount and Role at once; then the RoleBinding (the API server checks that
    # the operator holds what the Role grants, so the Role must exist); then the Job, whose
    # pods need the ServiceAccount.
    *first, binding = render_worker_rbac(body, batch)
    await asyncio.gather(*(asyncio.to_thread(state.kube.create, child) for child in first))
    job = render_job(body, batch, action.stage, state.config.image, policy, action.shards)
    services = render_commit_services(body, batch, action.stage, action.shards)
    for child in (binding, *services, job):
        await asyncio.to_thread(state.kube.create, child)


def _observe(state: State, key: Key, batch_index: Index, old: JSON, new: JSON) -> None:
    """Metrics: images reported since the last look, phases, and a final batch's duration."""
    shards = shards_of(old)
    after = metrics.seen(
        Counts.of(new.get("counts") or {}), Reasons.of(new.get("reasons") or {}), shards
    )
    metrics.observe(state.seen.get(key), after, shards)
    state.seen[key] = after
    phase = new.get("phase")
    if phase != old.get("phase") and phase in FINAL and old.get("phase") and new.get("startTime"):
        metrics.observe_duration(new["startTime"], new["completionTime"])
    metrics.set_phases(_phases(state, batch_index))


def _phases(state: State, batch_index: Index) -> list[str]:
    return [status_of(state, batch_index, k).get("phase") or QUEUED for k in batch_index]


def _wake_queued(state: State, batch_index: Index, job_index: Index) -> None:
    """A slot is free: give the queued batches, oldest first, a chance to start now rather
    than at their next timer."""
    queued = [k for k in batch_index if status_of(state, batch_index, k).get("phase") == QUEUED]
    for key in sorted(queued, key=lambda k: _created(batch_index, k)):
        task = asyncio.create_task(guarded(state, key, batch_index, job_index))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)


def _created(batch_index: Index, key: Key) -> str:
    body = next(iter(batch_index.get(key, [])), {})
    return body.get("metadata", {}).get("creationTimestamp", "")

"""The kopf handlers: thin. Every event leads to one level-triggered `reconcile` of its batch.

State lives in the cluster (the batch's status, its Jobs, the shards' reports); the operator
keeps only indexes that kopf rebuilds from the watch streams, so it can be killed and restarted
at any point: children have deterministic names and creating one that exists is a no-op.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from sendit_worker.cluster import GROUP, PLURAL, VERSION

from . import metrics, status, validate, watch
from .jobs import BATCH_LABEL, render_job, render_worker_rbac
from .kube import Kube, describe

log = logging.getLogger("sendit.operator")
Key = tuple[str, str]  # (namespace, batch name)


@dataclass
class Config:
    image: str = "sendit:latest"
    max_running: int = 10
    resync_seconds: float = 30.0


@dataclass
class State:
    """Shared by every handler (kopf gives each object a shallow copy of the memo)."""

    config: Config
    kube: Kube
    phases: dict[Key, str] = field(default_factory=dict)  # what this process last wrote
    written: dict[Key, dict[str, Any]] = field(default_factory=dict)
    seen_counts: dict[Key, dict[str, int]] = field(default_factory=dict)
    locks: defaultdict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    admission: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: set[asyncio.Task] = field(default_factory=set)

    def running(self) -> int:
        return sum(p in status.RUNNING for p in self.phases.values())


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


KEPT = ("name", "namespace", "uid", "generation", "creationTimestamp")


def slim(body: dict[str, Any]) -> dict[str, Any]:
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


@kopf.index(GROUP, VERSION, PLURAL)
def batch_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict]:
    return {(namespace, name): slim(dict(body))}


@kopf.index("batch/v1", "jobs", labels={BATCH_LABEL: kopf.PRESENT})
def job_index(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, labels[BATCH_LABEL]): status.job_state(dict(body))}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def batch_event(
    type: str, namespace: str, name: str, memo: kopf.Memo, batch_index, job_index, **_: Any
) -> None:
    state: State = memo.state
    key = (namespace, name)
    if type == "DELETED":  # its Jobs and RBAC go with it (ownerReferences)
        for table in (state.phases, state.written, state.seen_counts, state.locks):
            table.pop(key, None)
        metrics.set_phases(list(state.phases.values()))
        return
    await guarded(state, key, batch_index, job_index)


@kopf.on.event("batch/v1", "jobs", labels={BATCH_LABEL: kopf.PRESENT})
async def job_event(
    namespace: str, labels: kopf.Labels, memo: kopf.Memo, batch_index, job_index, **_: Any
) -> None:
    await guarded(memo.state, (namespace, labels[BATCH_LABEL]), batch_index, job_index)


async def guarded(state: State, key: Key, batch_index, job_index) -> None:
    """reconcile, its failure logged without the error's text (an API error can echo the
    spec, folder names included); the resync tries again."""
    try:
        await reconcile(state, key, batch_index, job_index)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("reconciling %s/%s failed (%s); will retry", *key, describe(exc))


async def resync(state: State, batch_index, job_index) -> None:
    """Now and then, every batch not final: a Secret created later, a free slot, a lost event."""
    while True:
        await asyncio.sleep(state.config.resync_seconds)
        for key in sorted(batch_index, key=lambda k: _created(batch_index, k)):
            if state.phases.get(key) not in status.FINAL:
                await guarded(state, key, batch_index, job_index)


def _created(index, key: Key) -> str:
    for body in index.get(key, []):
        return body["metadata"].get("creationTimestamp", "")
    return ""


async def reconcile(state: State, key: Key, batch_index, job_index) -> None:
    async with state.locks[key]:
        bodies = list(batch_index.get(key, []))
        if not bodies:
            return
        body = bodies[0]
        observed = body.get("status") or {}
        # The index can lag behind what this process wrote a moment ago: overlay that.
        current = {**observed, **state.written.get(key, {}), "shards": observed.get("shards", {})}
        body = {**body, "status": current}
        jobs = {j.stage: j for j in job_index.get(key, [])}
        previous = current.get("phase")
        state.phases.setdefault(key, previous or "Queued")
        problem, waiting = await _act(state, key, body, jobs, previous)
        new = status.rollup(body, jobs, problem, waiting, now())
        if any(current.get(k) != v for k, v in new.items()):
            await asyncio.to_thread(state.kube.patch_status, PLURAL, *key, new)
            state.written[key] = new
        event = _observe(state, key, new, previous)
        if event:
            try:
                await asyncio.to_thread(state.kube.post_event, body, *event)
            except Exception as exc:  # an Event is worth a try, not a retry
                log.warning("an Event for %s/%s was not posted (%s)", *key, describe(exc))
    if previous in status.RUNNING and new.get("phase") not in status.RUNNING:
        _wake_queued(state, batch_index, job_index)


def _wake_queued(state: State, batch_index, job_index) -> None:
    """A slot is free: give the queued batches, oldest first, a chance to start."""
    queued = [k for k, p in state.phases.items() if p == "Queued"]
    for key in sorted(queued, key=lambda k: _created(batch_index, k)):
        task = asyncio.create_task(guarded(state, key, batch_index, job_index))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)


async def _act(
    state: State, key: Key, body: dict[str, Any], jobs: dict[str, status.JobState], previous
) -> tuple[str | None, str | None]:
    """Bring the children in line with the spec; returns (problem, waiting) for the status."""
    spec, kube = body["spec"], state.kube
    if previous in status.FINAL:
        return None, None
    if spec.get("cancel"):
        for job in jobs.values():
            await asyncio.to_thread(kube.delete_job, key[0], job.name)
        return None, None
    for job in jobs.values():
        if job.state in ("Running", "Pending", "Suspended") and (
            (job.state == "Suspended") != bool(spec.get("suspend"))
        ):
            await asyncio.to_thread(kube.suspend_job, key[0], job.name, bool(spec.get("suspend")))
    if not jobs and previous in (None, "Queued"):
        problem = await asyncio.to_thread(
            validate.problem, spec, lambda kind, name: kube.exists(key[0], kind, name)
        )
        if problem:
            return problem, None
        async with state.admission:  # the slot is taken at once; the calls run outside
            if state.running() >= state.config.max_running:
                return None, f"waiting for a free slot ({state.config.max_running} batches running)"
            state.phases[key] = "Processing"
        try:
            await _create(state, body, "process", jobs)
        except BaseException:
            state.phases[key] = previous or "Queued"
            raise
    elif previous == "DoneProcessing" and spec["send"] == "auto" and "send" not in jobs:
        await _create(state, body, "send", jobs)
    return None, None


async def _create(state: State, body: dict[str, Any], stage: str, jobs: dict) -> None:
    job = render_job(body, stage, state.config.image)
    # The ServiceAccount and Role at once; then the RoleBinding (the API server checks that
    # the operator holds what the Role grants, so the Role must exist); then the Job, whose
    # pods need the ServiceAccount.
    *first, binding = render_worker_rbac(body)
    await asyncio.gather(*(asyncio.to_thread(state.kube.create, child) for child in first))
    for child in (binding, job):
        await asyncio.to_thread(state.kube.create, child)
    jobs[stage] = status.JobState(
        name=job["metadata"]["name"],
        stage=stage,
        sends=job["metadata"]["annotations"]["sendit.dev/sends"] == "true",
        state="Suspended" if job["spec"]["suspend"] else "Pending",
        created=now(),
    )


def _observe(state: State, key: Key, new: dict[str, Any], previous) -> tuple[str, str, str] | None:
    """Metrics, and the Event (type, reason, message) a phase change posts: counts and phases
    only."""
    phase = new.get("phase", "Queued")
    before = state.seen_counts.get(key)
    if before is not None:
        metrics.add_images(before, new.get("counts", {}))
    state.seen_counts[key] = dict(new.get("counts", {}))
    event = None
    if phase != previous:
        kind = "Warning" if phase == "Failed" else "Normal"
        event = (kind, phase, new.get("message") or phase)
        if phase in status.FINAL and new.get("startTime") and previous is not None:
            metrics.DURATION.observe(_seconds(new["startTime"], new["completionTime"]))
    state.phases[key] = phase
    metrics.set_phases(list(state.phases.values()))
    return event


def _seconds(start: str, end: str) -> float:
    parse = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    return max(0.0, (parse(end) - parse(start)).total_seconds())


@kopf.on.event(GROUP, VERSION, watch.PLURAL)
async def watch_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A SenditWatch: its scan CronJob and the scan's RBAC, applied (idempotent)."""
    if type == "DELETED":
        return
    state: State = memo.state
    try:
        for child in watch.render_children(dict(body), state.config.image):
            await asyncio.to_thread(state.kube.apply, child)
    except Exception as exc:  # logged without the error's text, which can echo the spec
        log.warning("applying the scan of a SenditWatch failed (%s)", describe(exc))

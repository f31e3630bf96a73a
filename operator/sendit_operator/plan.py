"""The operator's one decision: from what is observed of a batch to what to do and what its
status should say. Pure; the handlers observe and execute.

The state table (first row that matches; "Jobs" are the batch's own, by stage):

| observed                                             | actions               | phase          |
| ---------------------------------------------------- | --------------------- | -------------- |
| the status is final (Sent, Failed, Cancelled)        | none                  | as it was      |
| spec.cancel                                          | delete every Job      | Cancelled      |
| a Job Failed                                         | none                  | Failed         |
| no Job, Queued, or a stage due: the policy refuses   | none                  | Failed         |
|   the batch (policy.py)                              |                       |                |
| no Job, Queued, a reference missing                  | none                  | Queued, Stalled|
| no Job, Queued, no free slot                         | none                  | Queued         |
| no Job, Queued, a free slot, parallelism 1           | create process        | Processing     |
| no Job, Queued, a free slot, parallelism above 1     | create plan           | Processing     |
| the plan Job Complete, status.plan, no process Job   | create process with   | Processing     |
|                                                      |   the plan's shards   |                |
| DoneProcessing, send: auto, no send Job              | create send           | Sending        |
| every shard sent, cleanup: delete, counts complete,  | create cleanup        | Sending        |
|   no cleanup Job                                     |                       |                |
| every shard sent (and the cleanup done, if any)      | none                  | Sent           |
| otherwise                                            | none                  | from the Jobs  |
|                                                      |                       | and the shards |

The plan stage (parallelism above 1) reads the source once into the workspace and writes its
counts to status.plan: the process and send Jobs get one pod per shard of the plan (fewer than
parallelism when the batch has fewer series). And on every row that is not final, a Job
whose suspension differs from spec.suspend is suspended or resumed. A phase change posts an
Event (Warning for Failed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sendit_api.spec import Batch
from sendit_api.status import DONE_PROCESSING, FAILED, FINAL, QUEUED, PlanReport, shard_count

from . import status
from .children import job_name, sends
from .status import JobState

JSON = dict[str, Any]


@dataclass(frozen=True)
class Observed:
    batch: Batch
    status: Mapping[str, Any]  # as last seen, with what this operator wrote since overlaid
    jobs: Mapping[str, JobState]  # by stage
    problem: str | None  # a reference that is missing, when references were checked
    free_slots: int  # how many more batches may start now (--max-running)
    refused: str | None = None  # the first rule of the cluster's policy the batch breaks


@dataclass(frozen=True)
class CreateStage:
    stage: str  # plan | process | send | cleanup: the stage's Job and the workers' RBAC
    shards: int = 1  # pods of a process or send Job


@dataclass(frozen=True)
class SuspendJob:
    name: str
    suspend: bool


@dataclass(frozen=True)
class DeleteJob:
    name: str


Action = CreateStage | SuspendJob | DeleteJob


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    status: JSON  # everything but the shards, which the workers own
    event: Event | None = None


def needs_references(observed_status: Mapping[str, Any], jobs: Mapping[str, JobState]) -> bool:
    """References are looked up (API calls) only for a batch that is about to start."""
    return not jobs and observed_status.get("phase") in (None, QUEUED)


def plan(o: Observed, at: str) -> Plan:
    spec, previous = o.batch.spec, o.status.get("phase")
    if previous in FINAL:  # frozen as it was
        return Plan((), {k: v for k, v in o.status.items() if k != "shards"})
    actions: list[Action] = []
    jobs = dict(o.jobs)
    waiting = None
    report = PlanReport.of(o.status.get("plan"))
    starting = not jobs and previous in (None, QUEUED)
    if spec.cancel:
        actions += [DeleteJob(j.name) for j in jobs.values()]
    else:
        actions += [
            SuspendJob(j.name, spec.suspend)
            for j in jobs.values()
            if j.state in ("Running", "Pending", "Suspended")
            and (j.state == "Suspended") != spec.suspend
        ]
        shards = status.shards_of(o.status)
        count = shard_count(spec.parallelism, report)
        planning = jobs.get("plan")
        if starting and not o.problem:
            if o.free_slots <= 0:
                waiting = "waiting for a free slot (--max-running batches are running)"
            elif count is None:
                actions.append(CreateStage("plan"))
            else:
                actions.append(CreateStage("process", count))
        elif planning and planning.state == "Complete" and count and "process" not in jobs:
            actions.append(CreateStage("process", count))
        elif previous == DONE_PROCESSING and spec.send == "auto" and "send" not in jobs:
            actions.append(CreateStage("send", status.expected_shards(spec, report)))
        elif "cleanup" not in jobs and status.wants_cleanup(spec, shards, report):
            actions.append(CreateStage("cleanup"))
    # Checked again before anything is created: a batch admitted before the policy (or with
    # the admission policy off) never runs what the policy refuses.
    creates = [a for a in actions if isinstance(a, CreateStage)]
    refused = o.refused if (starting or creates) and not spec.cancel else None
    if refused:
        actions = [a for a in actions if not isinstance(a, CreateStage)]
    else:
        for action in creates:  # what the status will see once it runs
            jobs[action.stage] = _pending(o.batch, action.stage, at)
    shards = status.shards_of(o.status)
    now = status.phase(spec, previous, jobs, shards, o.problem, waiting, report, refused)
    new = status.rollup(spec, o.batch.generation, o.status, jobs, now, at, o.batch.uid)
    event = None
    if now.phase != previous:
        event = Event("Warning" if now.phase == FAILED else "Normal", now.phase, now.message)
    return Plan(tuple(actions), new, event)


def _pending(batch: Batch, stage: str, at: str) -> JobState:
    return JobState(
        name=job_name(batch.name, stage),
        stage=stage,
        sends=sends(batch.spec, stage),
        state="Suspended" if batch.spec.suspend else "Pending",
        created=at,
    )

"""From what is observed (the spec, the Jobs, the shards' reports) to the batch's phase and
status. Pure.

Completion is read from the shards' own reports as well as from the Jobs, so a Job removed by
its TTL (or while the operator was down) loses nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sendit_api.clock import parse
from sendit_api.names import SENDS_ANNOTATION, STAGE_LABEL, quarantine_folder
from sendit_api.spec import BatchSpec
from sendit_api.status import (
    CANCELLED,
    DONE_PROCESSING,
    FAILED,
    FINAL,
    JOB_STAGES,
    PROCESSED,
    PROCESSING,
    QUEUED,
    SENDING,
    SENT,
    Counts,
    PlanReport,
    Reasons,
    ShardReport,
    shard_count,
)

JSON = dict[str, Any]
# Why a Job failed, as the batch's reason: a configuration error is permanent (podFailurePolicy).
JOB_FAILURES = {
    "PodFailurePolicy": (
        "ConfigurationError",
        "a permanent configuration error: see the worker log",
    ),
    "BackoffLimitExceeded": ("BackoffLimitExceeded", "workers kept failing (backoffLimit reached)"),
    "DeadlineExceeded": ("DeadlineExceeded", "the stage ran past activeDeadlineSeconds"),
}


@dataclass(frozen=True)
class JobState:
    name: str
    stage: str  # plan | process | send | cleanup
    sends: bool  # a process Job that also delivers (send: auto)
    state: str  # Pending | Running | Suspended | Complete | Failed
    reason: str = ""
    created: str | None = None
    completed: str | None = None


def job_state(job: JSON) -> JobState:
    meta, spec, status = job["metadata"], job.get("spec", {}), job.get("status") or {}
    true = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Failed" in true:
        state, reason = "Failed", true["Failed"].get("reason", "")
    elif "Complete" in true:
        state, reason = "Complete", ""
    elif spec.get("suspend"):
        state, reason = "Suspended", ""
    else:
        state, reason = ("Running" if status.get("active") else "Pending"), ""
    return JobState(
        name=meta["name"],
        stage=meta.get("labels", {}).get(STAGE_LABEL, "process"),
        sends=meta.get("annotations", {}).get(SENDS_ANNOTATION) == "true",
        state=state,
        reason=reason,
        created=meta.get("creationTimestamp"),
        completed=status.get("completionTime"),
    )


@dataclass(frozen=True)
class Phase:
    phase: str
    reason: str
    message: str


def shards_of(status: Mapping[str, Any]) -> dict[str, ShardReport]:
    return {k: ShardReport.of(v) for k, v in (status.get("shards") or {}).items()}


def counts(shards: Mapping[str, ShardReport], plan: PlanReport | None = None) -> Counts:
    """The batch's counts: the shards' sum; with a plan stage, what the plan knows (the images
    discovered, studies counted once even when split across shards, series, and the files it
    kept out) from the plan, and what happened to the images from the shards."""
    total = sum((s.counts for s in shards.values()), Counts())
    if plan is None:
        return total
    return dataclasses.replace(
        total,
        discovered=plan.discovered,
        studies=plan.studies,
        series=plan.series,
        skipped=plan.skipped + total.skipped,
        failed=plan.failed + total.failed,
    )


def reasons(shards: Mapping[str, ShardReport]) -> Reasons:
    return sum((s.reasons for s in shards.values()), Reasons())


def quarantined(shards: Mapping[str, ShardReport]) -> int:
    """Withheld images the shards kept in the batch's quarantine, for review."""
    return sum(s.quarantined or 0 for s in shards.values())


def wants_cleanup(
    spec: BatchSpec, shards: Mapping[str, ShardReport], plan: PlanReport | None = None
) -> bool:
    """Every shard delivered, the user asked for the source to go, and the send is verified
    complete: then, and only then, the cleanup stage runs."""
    return (
        spec.cleanup.source == "delete"
        and all_sent(spec, shards, plan)
        and counts(shards, plan).complete
    )


def expected_shards(spec: BatchSpec, plan: PlanReport | None) -> int:
    """The shards that report: the plan's, else (before a plan, or without one) parallelism."""
    return shard_count(spec.parallelism, plan) or spec.parallelism


def all_sent(spec: BatchSpec, shards: Mapping[str, ShardReport], plan: PlanReport | None) -> bool:
    stages = [s.stage for s in shards.values()]
    return len(stages) == expected_shards(spec, plan) and all(s == "sent" for s in stages)


def phase(
    spec: BatchSpec,
    previous: str | None,
    jobs: Mapping[str, JobState],
    shards: Mapping[str, ShardReport],
    problem: str | None = None,
    waiting: str | None = None,
    plan: PlanReport | None = None,
    refused: str | None = None,
) -> Phase:
    """The batch's phase now. `problem`: why it cannot start; `waiting`: why it may not yet;
    `plan`: status.plan, once the plan stage wrote it; `refused`: the cluster's policy refuses
    the stage that is due."""
    if previous in FINAL:
        return Phase(previous, previous, "")
    if spec.cancel:
        return Phase(CANCELLED, CANCELLED, "cancelled by spec.cancel")
    for job in jobs.values():
        if job.state == "Failed":
            reason, message = JOB_FAILURES.get(job.reason, ("JobFailed", "a worker Job failed"))
            return Phase(FAILED, reason, f"{job.stage}: {message}")
    if refused:
        return Phase(FAILED, "PolicyRefused", refused)
    n = expected_shards(spec, plan)
    stages = [s.stage for s in shards.values()]
    process, send, cleanup = jobs.get("process"), jobs.get("send"), jobs.get("cleanup")
    delivering = send if send else (process if process and process.sends else None)
    if all_sent(spec, shards, plan):
        if cleanup and cleanup.state == "Complete":
            return Phase(SENT, SENT, "every shard delivered; the source folders were removed")
        if wants_cleanup(spec, shards, plan):
            return Phase(SENDING, SENDING, "every shard delivered; removing the source folders")
        kept = quarantined(shards)
        waiting = f"; {kept} withheld images kept in quarantine for review" if kept else ""
        if spec.cleanup.source == "delete":
            return Phase(
                SENT, SENT, f"every shard delivered; source kept: not every image was sent{waiting}"
            )
        return Phase(SENT, SENT, f"every shard delivered{waiting}")
    if delivering and delivering.state == "Complete":
        # Sent only on the shards' word, never on the Job's: a pod that exited 0 without its
        # report (or a report not seen yet) leaves the batch Sending, saying so.
        return Phase(
            SENDING,
            "ShardsUnreported",
            f"the {delivering.stage} Job completed; "
            f"{stages.count('sent')}/{n} shards reported their delivery",
        )
    if send or any(s in ("sending", "sent") for s in stages):
        return Phase(SENDING, SENDING, f"{stages.count('sent')}/{n} shards delivered")
    all_processed = len(stages) == n and all(s in PROCESSED for s in stages)
    if process and not process.sends and (all_processed or process.state == "Complete"):
        return Phase(DONE_PROCESSING, DONE_PROCESSING, _awaiting(spec))
    if process:
        done = sum(s in PROCESSED for s in stages)
        return Phase(PROCESSING, PROCESSING, f"{done}/{n} shards processed")
    if "plan" in jobs:
        return Phase(PROCESSING, PROCESSING, "planning: reading the source once")
    if previous in (DONE_PROCESSING, SENDING):  # the Job went (its TTL); the shards stay
        return Phase(DONE_PROCESSING, DONE_PROCESSING, _awaiting(spec))
    if problem:
        return Phase(QUEUED, "InvalidReference", problem)
    return Phase(QUEUED, QUEUED, waiting or "waiting for its Job")


def _awaiting(spec: BatchSpec) -> str:
    if spec.send == "manual":
        return "processed; set spec.send: auto to deliver"
    return "processed; starting delivery"


def outputs(shards: Mapping[str, ShardReport]) -> dict[str, int]:
    total: dict[str, int] = {}
    for shard in shards.values():
        for kind, n in shard.outputs.items():
            total[kind] = total.get(kind, 0) + n
    return total


def conditions(
    spec: BatchSpec,
    now: Phase,
    c: Counts,
    generation: int,
    previous: list[JSON],
    at: str,
) -> list[JSON]:
    """Ready, Reconciling, Stalled (as kstatus reads them), Anonymized, Delivered."""
    p, suspended = now.phase, spec.suspend and now.phase not in FINAL
    # Cancelled is final and not a success: kstatus, Argo CD and Flux should not wait on it.
    stalled = p in (FAILED, CANCELLED) or now.reason == "InvalidReference"
    settled = p == SENT or (p == DONE_PROCESSING and spec.send == "manual")
    processed = p in (DONE_PROCESSING, SENDING, SENT)
    tally = f"{c.anonymized} anonymized, {c.withheld} withheld, {c.failed} failed"
    wanted = [
        ("Ready", settled, "Suspended" if suspended else now.reason, now.message),
        (
            "Reconciling",
            not (settled or stalled or suspended or p in FINAL),
            "Suspended" if suspended else now.reason,
            now.message,
        ),
        (
            "Stalled",
            stalled,
            now.reason if stalled else "NotStalled",
            now.message if stalled else "",
        ),
        ("Anonymized", processed, "Processed" if processed else p, tally if processed else ""),
        ("Delivered", p == SENT, SENT if p == SENT else p, f"{c.sent} images delivered"),
    ]
    before = {cond["type"]: cond for cond in previous}
    out = []
    for kind, ok, reason, message in wanted:
        status = "True" if ok else "False"
        old = before.get(kind, {})
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": old["lastTransitionTime"]
                if old.get("status") == status and old.get("lastTransitionTime")
                else at,
            }
        )
    return out


def progress(phase: str, c: Counts, shards: Mapping[str, ShardReport], start: str | None) -> JSON:
    """How far the batch is, as "done/total" images (Argo Workflows' convention) and a
    percentage: images de-identified of those discovered, then, once sending, images sent of
    those anonymized. While it runs, the rate since its start (to the shards' last report, so
    the status changes only when a shard reports) and the time left at that rate."""
    delivering = phase in (SENDING, SENT)
    done = c.sent if delivering else min(c.discovered, c.anonymized + c.withheld + c.failed)
    total = c.anonymized if delivering else c.discovered
    out: JSON = {
        "progress": f"{done}/{total}",
        "percent": done * 100 // total if total else 0,
        "imagesPerSecond": None,  # (null: a merge patch removes what no longer applies)
        "secondsLeft": None,
    }
    last = max((s.updated for s in shards.values() if s.updated), default="")
    if phase in (PROCESSING, SENDING) and start and last and done:
        seconds = (parse(last) - parse(start)).total_seconds()
        if seconds > 0:
            rate = done / seconds
            out["imagesPerSecond"] = round(rate, 2)
            out["secondsLeft"] = int((total - done) / rate)
    return out


def rollup(
    spec: BatchSpec,
    generation: int,
    status: Mapping[str, Any],
    jobs: Mapping[str, JobState],
    now: Phase,
    at: str,
    uid: str | None = None,
) -> JSON:
    """The status the batch should have (everything but the shards, which the workers own).
    `uid`: the batch's, which names its quarantine's folder on the workspace volume."""
    shards = shards_of(status)
    c = counts(shards, PlanReport.of(status.get("plan")))
    new: JSON = {
        "phase": now.phase,
        "message": now.message,
        "observedGeneration": generation,
        "counts": c.as_dict(),
        "conditions": conditions(spec, now, c, generation, status.get("conditions") or [], at),
        "jobs": [
            {"name": j.name, "stage": j.stage, "state": j.state}
            for j in sorted(jobs.values(), key=lambda j: JOB_STAGES.index(j.stage))
        ]
        or status.get("jobs", []),
        "outputs": outputs(shards),
        "reasons": reasons(shards).as_dict(),
    }
    kept = quarantined(shards)
    if kept:
        new["quarantine"] = {"images": kept}
        if uid:
            new["quarantine"]["folder"] = quarantine_folder(uid)
    started = [j.created for j in jobs.values() if j.created]
    start = status.get("startTime") or (min(started) if started else None)
    if start:
        new["startTime"] = start
    new.update(progress(now.phase, c, shards, start))
    if now.phase in FINAL:
        new["completionTime"] = (
            max((j.completed for j in jobs.values() if j.completed), default=None) or at
        )
    return new

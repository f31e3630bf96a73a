"""From what is observed (the spec, the Jobs, the shards' reports) to the batch's status. Pure.

The phase machine: Queued -> Processing -> DoneProcessing -> Sending -> Sent, or Failed, or
Cancelled. Sent, Failed and Cancelled are final. Completion is read from the shards' own
reports as well as from the Jobs, so a Job removed by its TTL (or while the operator was down)
loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FINAL = ("Sent", "Failed", "Cancelled")
RUNNING = ("Processing", "Sending")
COUNTS = ("discovered", "anonymized", "withheld", "failed", "skipped", "sent", "studies", "series")
PROCESSED = ("processed", "sending", "sent")
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
    stage: str  # process | send
    sends: bool  # a process Job that also delivers (send: auto)
    state: str  # Pending | Running | Suspended | Complete | Failed
    reason: str = ""
    created: str | None = None
    completed: str | None = None


def job_state(job: dict[str, Any]) -> JobState:
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
    labels = meta.get("labels", {})
    return JobState(
        name=meta["name"],
        stage=labels.get("sendit.dev/stage", "process"),
        sends=meta.get("annotations", {}).get("sendit.dev/sends") == "true",
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


def phase(
    spec: dict[str, Any],
    previous: str | None,
    jobs: dict[str, JobState],
    shards: dict[str, dict[str, Any]],
    problem: str | None = None,
    waiting: str | None = None,
) -> Phase:
    """The batch's phase now. `problem`: why it cannot start; `waiting`: why it may not yet."""
    if previous in FINAL:
        return Phase(previous, previous, "")
    if spec.get("cancel"):
        return Phase("Cancelled", "Cancelled", "cancelled by spec.cancel")
    for job in jobs.values():
        if job.state == "Failed":
            reason, message = JOB_FAILURES.get(job.reason, ("JobFailed", "a worker Job failed"))
            return Phase("Failed", reason, f"{job.stage}: {message}")
    n = spec["parallelism"]
    stages = [s.get("stage") for s in shards.values()]
    all_sent = len(stages) == n and all(s == "sent" for s in stages)
    all_processed = len(stages) == n and all(s in PROCESSED for s in stages)
    process, send = jobs.get("process"), jobs.get("send")
    if all_sent or (send and send.state == "Complete"):
        return Phase("Sent", "Sent", "every shard delivered")
    if process and process.sends and process.state == "Complete":
        return Phase("Sent", "Sent", "every shard delivered")
    if send or "sending" in stages:
        return Phase("Sending", "Sending", f"{stages.count('sent')}/{n} shards delivered")
    if process and not process.sends and (all_processed or process.state == "Complete"):
        return Phase("DoneProcessing", "DoneProcessing", _awaiting(spec))
    if process:
        done = sum(s in PROCESSED for s in stages)
        return Phase("Processing", "Processing", f"{done}/{n} shards processed")
    if previous in ("DoneProcessing", "Sending"):  # the Job went (its TTL); the shards stay
        return Phase("DoneProcessing", "DoneProcessing", _awaiting(spec))
    if problem:
        return Phase("Queued", "InvalidReference", problem)
    return Phase("Queued", "Queued", waiting or "waiting for its Job")


def _awaiting(spec: dict[str, Any]) -> str:
    if spec["send"] == "manual":
        return "processed; set spec.send: auto to deliver"
    return "processed; starting delivery"


def counts(shards: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {k: sum(int(s.get(k, 0)) for s in shards.values()) for k in COUNTS}


def outputs(shards: dict[str, dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for shard in shards.values():
        for kind, n in (shard.get("outputs") or {}).items():
            total[kind] = total.get(kind, 0) + int(n)
    return total


def conditions(
    spec: dict[str, Any],
    now: Phase,
    c: dict[str, int],
    generation: int,
    previous: list[dict[str, Any]],
    at: str,
) -> list[dict[str, Any]]:
    """Ready, Reconciling, Stalled (as kstatus reads them), Anonymized, Delivered."""
    p, suspended = now.phase, bool(spec.get("suspend")) and now.phase not in FINAL
    # Cancelled is final and not a success: kstatus, Argo CD and Flux should not wait on it.
    stalled = p in ("Failed", "Cancelled") or now.reason == "InvalidReference"
    settled = p == "Sent" or (p == "DoneProcessing" and spec["send"] == "manual")
    processed = p in ("DoneProcessing", "Sending", "Sent")
    tally = f"{c['anonymized']} anonymized, {c['withheld']} withheld, {c['failed']} failed"
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
        ("Delivered", p == "Sent", "Sent" if p == "Sent" else p, f"{c['sent']} images delivered"),
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


def rollup(
    body: dict[str, Any],
    jobs: dict[str, JobState],
    problem: str | None,
    waiting: str | None,
    at: str,
) -> dict[str, Any]:
    """The status the batch should have (everything but the shards, which the workers own)."""
    spec, status = body["spec"], body.get("status") or {}
    shards = status.get("shards") or {}
    now = phase(spec, status.get("phase"), jobs, shards, problem, waiting)
    if status.get("phase") in FINAL:  # final: frozen as it was
        return {k: v for k, v in status.items() if k != "shards"}
    c = counts(shards)
    generation = body["metadata"].get("generation", 1)
    new: dict[str, Any] = {
        "phase": now.phase,
        "message": now.message,
        "observedGeneration": generation,
        "counts": c,
        "conditions": conditions(spec, now, c, generation, status.get("conditions") or [], at),
        "jobs": [
            {"name": j.name, "stage": j.stage, "state": j.state}
            for j in sorted(jobs.values(), key=lambda j: j.stage != "process")
        ]
        or status.get("jobs", []),
        "outputs": outputs(shards),
    }
    started = [j.created for j in jobs.values() if j.created]
    start = status.get("startTime") or (min(started) if started else None)
    if start:
        new["startTime"] = start
    if now.phase in FINAL:
        new["completionTime"] = (
            max((j.completed for j in jobs.values() if j.completed), default=None) or at
        )
    return new

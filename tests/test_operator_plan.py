"""The operator's decision, row by row of the state table in `plan`'s docstring; and how the
handlers count the batches already running (from the cluster, not from memory)."""

from __future__ import annotations

import dataclasses

from batches import batch

from sendit_operator.handlers import Config, State, running_elsewhere, status_of
from sendit_operator.plan import CreateStage, DeleteJob, Event, Observed, SuspendJob, plan
from sendit_operator.policy import Policy
from sendit_operator.status import JobState

AT = "2026-01-01T00:00:00Z"


def observe(status=None, jobs=None, problem=None, free=1, refused=None, **spec) -> Observed:
    return Observed(batch(parallelism=2, **spec), status or {}, jobs or {}, problem, free, refused)


def job(stage="process", state="Running", sends=True) -> JobState:
    return JobState(f"b-{stage}", stage, sends, state, created=AT)


def sent(**counts) -> dict:
    shard = {"stage": "sent", "discovered": 1, "anonymized": 1, "sent": 1, **counts}
    return {"phase": "Sending", "shards": {"0": shard, "1": shard}}


def test_a_new_batch_with_a_free_slot_starts_its_plan_job():
    p = plan(observe(), AT)
    assert p.actions == (CreateStage("plan"),)
    assert p.status["phase"] == "Processing"
    assert p.event == Event("Normal", "Processing", "planning: reading the source once")


def test_a_new_batch_of_one_pod_starts_its_process_job_which_plans_itself():
    p = plan(Observed(batch(parallelism=1), {}, {}, None, 1), AT)
    assert p.actions == (CreateStage("process", 1),)
    assert p.event == Event("Normal", "Processing", "0/1 shards processed")


PLANNED = {"shards": 1, "discovered": 5, "studies": 1, "series": 1, "skipped": 2}


def test_once_planned_the_process_job_gets_one_pod_per_shard_of_the_plan():
    planning = {"phase": "Processing"}
    assert plan(observe(planning, {"plan": job("plan", sends=False)}), AT).actions == ()
    complete = {"plan": job("plan", "Complete", sends=False)}
    assert plan(observe(planning, complete), AT).actions == ()  # status.plan not seen yet
    p = plan(observe({**planning, "plan": PLANNED}, complete), AT)
    assert p.actions == (CreateStage("process", 1),)  # parallelism 2, one series: one pod
    assert p.status["message"] == "0/1 shards processed"
    assert (p.status["counts"]["discovered"], p.status["progress"]) == (5, "0/5")
    jobs = {**complete, "process": job()}
    assert plan(observe({**planning, "plan": PLANNED}, jobs), AT).actions == ()


def test_the_plan_gives_the_totals_and_the_shards_what_happened_to_their_images():
    """A study split across two shards is counted once; the plan's problems once."""
    shard = {"stage": "sent", "discovered": 3, "anonymized": 3, "sent": 3, "studies": 1}
    status = {
        "phase": "Sending",
        "plan": {**PLANNED, "shards": 2, "discovered": 6, "failed": 1},
        "shards": {"0": shard, "1": shard},
    }
    jobs = {"plan": job("plan", "Complete", sends=False), "process": job(state="Complete")}
    p = plan(observe(status, jobs), AT)
    c = p.status["counts"]
    assert (c["discovered"], c["studies"], c["series"], c["skipped"], c["failed"]) == (
        6,
        1,
        1,
        2,
        1,
    )
    assert (c["anonymized"], c["sent"], p.status["phase"]) == (6, 6, "Sent")


def test_a_new_batch_without_a_free_slot_waits_queued():
    p = plan(observe(free=0), AT)
    assert p.actions == ()
    assert (p.status["phase"], p.status["message"]) == (
        "Queued",
        "waiting for a free slot (--max-running batches are running)",
    )


def test_a_missing_reference_stalls_without_starting():
    p = plan(observe(problem="Secret key not found (or the operator may not read it)"), AT)
    assert p.actions == ()
    stalled = next(c for c in p.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidReference")


REFUSED = "spec.image: not a worker image the cluster's policy allows (policy.images)"


def test_a_batch_the_policy_refuses_fails_before_anything_is_created():
    """Before a missing reference is waited for and before a slot is: the refusal is final."""
    for o in (observe(), observe(problem="Secret key not found"), observe(free=0)):
        p = plan(dataclasses.replace(o, refused=REFUSED), AT)
        assert p.actions == ()
        assert (p.status["phase"], p.status["message"]) == ("Failed", REFUSED)
        stalled = next(c for c in p.status["conditions"] if c["type"] == "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "PolicyRefused")
        assert p.event == Event("Warning", "Failed", REFUSED)


def test_a_later_stage_the_policy_refuses_is_not_created():
    """A batch admitted when the policy allowed it (or when it was off): its next stage is
    checked again. A stage already running is left alone, not failed."""
    jobs = {"process": job(state="Complete", sends=False)}
    status = {"phase": "DoneProcessing", "plan": PLANNED}
    p = plan(observe(status, jobs, refused=REFUSED, workspace={"emptyDir": {}}), AT)
    assert p.actions == () and p.status["phase"] == "Failed"
    running = {"process": job()}
    p = plan(observe({"phase": "Processing"}, running, refused=REFUSED), AT)
    assert p.status["phase"] == "Processing"
    p = plan(observe({"phase": "Processing"}, running, refused=REFUSED, cancel=True), AT)
    assert p.actions == (DeleteJob("b-process"),) and p.status["phase"] == "Cancelled"


def test_cancel_deletes_every_job():
    p = plan(observe({"phase": "Processing"}, {"process": job()}, cancel=True), AT)
    assert p.actions == (DeleteJob("b-process"),)
    assert p.status["phase"] == "Cancelled"


def test_suspension_follows_the_spec():
    running = {"process": job()}
    assert plan(observe({"phase": "Processing"}, running, suspend=True), AT).actions == (
        SuspendJob("b-process", True),
    )
    paused = {"process": job(state="Suspended")}
    assert plan(observe({"phase": "Processing"}, paused), AT).actions == (
        SuspendJob("b-process", False),
    )


def test_done_processing_with_send_auto_starts_the_send_job():
    manual = {"send": "manual", "workspace": {"emptyDir": {}}}
    jobs = {"process": job(state="Complete", sends=False)}
    status = {"phase": "DoneProcessing"}
    assert plan(observe(status, jobs, **manual), AT).actions == ()
    p = plan(observe({**status, "plan": PLANNED}, jobs, workspace={"emptyDir": {}}), AT)
    assert p.actions == (CreateStage("send", 1),)
    assert p.status["phase"] == "Sending"


def test_a_complete_send_with_cleanup_delete_starts_the_cleanup_job_once():
    jobs = {"process": job(state="Complete")}
    p = plan(observe(sent(), jobs, cleanup={"source": "delete"}), AT)
    assert p.actions == (CreateStage("cleanup"),)
    assert p.status["phase"] == "Sending"
    jobs["cleanup"] = job("cleanup", sends=False)
    assert plan(observe(sent(), jobs, cleanup={"source": "delete"}), AT).actions == ()
    jobs["cleanup"] = job("cleanup", "Complete", sends=False)
    assert plan(observe(sent(), jobs, cleanup={"source": "delete"}), AT).status["phase"] == "Sent"


def test_an_incomplete_send_never_starts_the_cleanup():
    jobs = {"process": job(state="Complete")}
    p = plan(observe(sent(failed=1), jobs, cleanup={"source": "delete"}), AT)
    assert p.actions == () and p.status["phase"] == "Sent"


def test_a_final_status_is_frozen_and_nothing_is_done():
    final = {"phase": "Sent", "counts": {"sent": 1}, "shards": {"0": {"stage": "sent"}}}
    p = plan(observe(final, {"process": job(state="Running")}, cancel=True), AT)
    assert p == type(p)((), {"phase": "Sent", "counts": {"sent": 1}}, None)


def test_failure_posts_a_warning():
    failed = {"process": JobState("b-process", "process", True, "Failed", "PodFailurePolicy")}
    p = plan(observe({"phase": "Processing"}, failed), AT)
    assert p.event == Event(
        "Warning", "Failed", "process: a permanent configuration error: see the worker log"
    )


def index(**phases: str | None) -> dict:
    return {("ns", name): [{"status": {"phase": p} if p else {}}] for name, p in phases.items()}


def test_running_batches_are_counted_from_every_batch_in_the_cluster():
    """Bug: after a restart, admission counted only the batches reconciled so far, so
    --max-running could be exceeded. The count now reads every batch kopf's index holds."""
    state = State(Config("img", 2, 30, lambda: Policy.strict("img")), kube=None)  # type: ignore[arg-type]
    batches = index(a="Processing", b="Sending", c="Sent", d="Queued", new=None)
    assert running_elsewhere(state, batches, ("ns", "new")) == 2
    assert running_elsewhere(state, batches, ("ns", "a")) == 1
    # What this process wrote a moment ago counts before the index shows it.
    state.written[("ns", "d")] = {"phase": "Processing"}
    assert running_elsewhere(state, batches, ("ns", "new")) == 3
    assert status_of(state, batches, ("ns", "d"))["phase"] == "Processing"

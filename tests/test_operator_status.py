"""The phase machine and the status roll-up: pure functions, no cluster."""

from __future__ import annotations

from batches import batch

from sendit_api.status import ShardReport
from sendit_operator import status as st
from sendit_operator.status import JobState, job_state

SPEC = batch(parallelism=2).spec
AT = "2026-01-01T00:00:00Z"


def spec(**changes):
    return batch(parallelism=2, **changes).spec


def phase(spec, previous, jobs, shards, problem=None, waiting=None):
    return st.phase(spec, previous, jobs, shards, problem, waiting)


def job(stage="process", state="Running", sends=True, reason="") -> JobState:
    return JobState(f"b-{stage}", stage, sends, state, reason, created="2025-12-31T23:59:00Z")


def shards(*stages: str, **counts: int) -> dict[str, ShardReport]:
    return {str(i): ShardReport.of({"stage": s, **counts}) for i, s in enumerate(stages)}


def rollup(body: dict, jobs: dict, problem, waiting, at: str) -> dict:
    """The status the batch gets, as the planner computes it."""
    status = body["status"]
    now = st.phase(body["spec"], status.get("phase"), jobs, st.shards_of(status), problem, waiting)
    return st.rollup(body["spec"], body["generation"], status, jobs, now, at)


def test_queued_processing_sent_with_auto_send():
    assert phase(SPEC, None, {}, {}).phase == "Queued"
    assert phase(SPEC, "Queued", {"process": job()}, {}).phase == "Processing"
    assert phase(SPEC, "Processing", {"process": job()}, shards("sent", "sending")).phase == (
        "Sending"
    )
    assert phase(SPEC, "Sending", {"process": job()}, shards("sent", "sent")).phase == "Sent"


def test_a_complete_job_is_not_a_delivery_until_every_shard_reports_it():
    """Bug, seen when a pod exited 0 without its last report (the fake node lost a container):
    the Job's completion made the batch Sent with one shard never finished (300 of 450)."""
    complete = {"process": job(state="Complete")}
    for reports in ({}, shards("sent", "processing")):
        now = phase(SPEC, "Sending", complete, reports)
        assert (now.phase, now.reason) == ("Sending", "ShardsUnreported")
    assert phase(SPEC, "Sending", complete, shards("sent", "processing")).message == (
        "the process Job completed; 1/2 shards reported their delivery"
    )
    assert phase(SPEC, "Sending", complete, shards("sent", "sent")).phase == "Sent"


def test_a_shard_that_has_sent_keeps_the_batch_sending():
    """Bug, seen once the pods ran in containers (their shards out of step): one shard sent
    while the other was still processing took the batch back from Sending to Processing, and
    each phase was posted as an Event twice."""
    for other in ("processing", "processed"):
        now = phase(SPEC, "Sending", {"process": job()}, shards("sent", other))
        assert (now.phase, now.message) == ("Sending", "1/2 shards delivered")


def test_manual_send_stops_at_done_processing_then_sends():
    manual = spec(send="manual", workspace={"emptyDir": {}})
    done = phase(manual, "Processing", {"process": job(sends=False)}, shards("processed"))
    assert done.phase == "Processing"  # one of two shards
    done = phase(
        manual, "Processing", {"process": job(sends=False)}, shards("processed", "processed")
    )
    assert (done.phase, done.message) == (
        "DoneProcessing",
        "processed; set spec.send: auto to deliver",
    )
    # The process Job removed by its TTL: still DoneProcessing, not Queued.
    assert phase(manual, "DoneProcessing", {}, shards("processed", "processed")).phase == (
        "DoneProcessing"
    )
    sending = {"process": job(state="Complete", sends=False), "send": job("send", "Running")}
    assert (
        phase(SPEC, "DoneProcessing", sending, shards("processed", "processed")).phase == "Sending"
    )
    sending["send"] = job("send", "Complete")
    assert phase(SPEC, "Sending", sending, shards("sent", "sent")).phase == "Sent"


def test_failures_cancel_and_final_phases():
    config = phase(
        SPEC, "Processing", {"process": job(state="Failed", reason="PodFailurePolicy")}, {}
    )
    assert (config.phase, config.reason) == ("Failed", "ConfigurationError")
    retries = phase(
        SPEC, "Processing", {"process": job(state="Failed", reason="BackoffLimitExceeded")}, {}
    )
    assert retries.reason == "BackoffLimitExceeded"
    assert phase(spec(cancel=True), "Processing", {"process": job()}, {}).phase == "Cancelled"
    for final in ("Sent", "Failed", "Cancelled"):
        assert phase(SPEC, final, {"process": job(state="Running")}, {}).phase == final
    stalled = phase(SPEC, None, {}, {}, problem="Secret key not found")
    assert (stalled.phase, stalled.reason) == ("Queued", "InvalidReference")


def test_job_state_reads_conditions_and_suspend():
    base = {
        "metadata": {
            "name": "b-process",
            "labels": {"sendit.dev/stage": "process"},
            "annotations": {"sendit.dev/sends": "true"},
        }
    }
    assert job_state({**base, "spec": {"suspend": True}}).state == "Suspended"
    assert job_state({**base, "status": {"active": 2}}).state == "Running"
    failed = {
        **base,
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]
        },
    }
    assert (job_state(failed).state, job_state(failed).reason) == ("Failed", "PodFailurePolicy")
    assert job_state(base).sends is True


def body(status: dict | None = None, **changes) -> dict:
    return {"generation": 3, "spec": spec(**changes), "status": status or {}}


def test_rollup_sums_shards_and_sets_conditions():
    status = {
        "shards": {
            "0": {
                "stage": "sent",
                "discovered": 3,
                "anonymized": 2,
                "withheld": 1,
                "sent": 2,
                "outputs": {"local": 2},
                "reasons": {"withheld": {"burned-in-suspected": 1}, "failed": {"made-up": 3}},
            },
            "1": {
                "stage": "sent",
                "discovered": 4,
                "anonymized": 4,
                "sent": 4,
                "outputs": {"local": 4},
                "reasons": {"withheld": {"burned-in-suspected": 2}},
            },
        }
    }
    new = rollup(body(status), {"process": job(state="Complete")}, None, None, AT)
    assert new["phase"] == "Sent"
    assert new["counts"]["discovered"] == 7 and new["counts"]["sent"] == 6
    assert new["outputs"] == {"local": 6}
    # Reason classes summed; a class outside the fixed set is not carried (a label value).
    assert new["reasons"] == {"withheld": {"burned-in-suspected": 3}, "failed": {}}
    assert new["observedGeneration"] == 3
    conds = {c["type"]: c for c in new["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Delivered"]["status"] == "True"
    assert conds["Stalled"]["status"] == "False" and conds["Reconciling"]["status"] == "False"
    assert conds["Anonymized"]["message"] == "6 anonymized, 1 withheld, 0 failed"
    assert new["startTime"] == "2025-12-31T23:59:00Z" and new["completionTime"] == AT


def test_rollup_keeps_transition_times():
    first = rollup(body(), {}, None, None, AT)
    again = rollup(body({**first}), {}, None, None, "2026-01-02T00:00:00Z")
    assert [c["lastTransitionTime"] for c in again["conditions"]] == [AT] * 5
    stalled = rollup(body(), {}, "Secret key not found", None, AT)
    conds = {c["type"]: c for c in stalled["conditions"]}
    assert conds["Stalled"] == {**conds["Stalled"], "status": "True", "reason": "InvalidReference"}


def test_suspended_batch_is_not_ready_nor_reconciling():
    new = rollup(body(suspend=True), {"process": job(state="Suspended")}, None, None, AT)
    conds = {c["type"]: c for c in new["conditions"]}
    assert conds["Ready"]["reason"] == "Suspended" and conds["Reconciling"]["status"] == "False"


def test_a_cancelled_batch_is_stalled_so_health_checks_stop_waiting() -> None:
    status = rollup(body(cancel=True), {}, None, None, AT)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Cancelled"
    assert (conditions["Stalled"]["status"], conditions["Stalled"]["reason"]) == (
        "True",
        "Cancelled",
    )
    assert conditions["Ready"]["status"] == "False"


def test_cleanup_runs_only_after_a_complete_verified_send():
    delete = spec(cleanup={"source": "delete"})
    complete = shards("sent", "sent", discovered=2, anonymized=2, sent=2)
    assert st.wants_cleanup(delete, complete)
    assert not st.wants_cleanup(SPEC, complete)  # keep
    partial = shards("sent", "sent", discovered=2, anonymized=2, sent=1)
    assert not st.wants_cleanup(delete, partial)
    assert not st.wants_cleanup(delete, shards("sent", "sending", discovered=2, anonymized=2))
    done = {"process": job(state="Complete")}
    now = phase(delete, "Sending", done, complete)
    assert (now.phase, now.message) == (
        "Sending",
        "every shard delivered; removing the source folders",
    )
    cleaned = {**done, "cleanup": job("cleanup", "Complete", sends=False)}
    assert phase(delete, "Sending", cleaned, complete).phase == "Sent"
    kept = phase(delete, "Sending", done, partial)
    assert (kept.phase, kept.message) == (
        "Sent",
        "every shard delivered; source kept: not every image was sent",
    )
    failed = {
        **done,
        "cleanup": job("cleanup", "Failed", sends=False, reason="BackoffLimitExceeded"),
    }
    assert phase(delete, "Sending", failed, complete).phase == "Failed"


def test_progress_counts_images_done_then_images_sent_and_a_rate_while_running():
    two = shards("processing", "processing", discovered=20, anonymized=4, withheld=1)
    assert st.progress("Processing", st.counts(two), two, None)["progress"] == "10/40"
    early = {
        "0": ShardReport.of(
            {
                "stage": "processing",
                "discovered": 20,
                "anonymized": 5,
                "updated": "2026-01-01T00:00:10Z",
            }
        )
    }
    now = st.progress("Processing", st.counts(early), early, "2026-01-01T00:00:00Z")
    assert (now["progress"], now["percent"]) == ("5/20", 25)
    assert (now["imagesPerSecond"], now["secondsLeft"]) == (0.5, 30)
    sending = shards("sent", "sending", discovered=10, anonymized=8, sent=4)
    later = st.progress("Sending", st.counts(sending), sending, None)
    assert (later["progress"], later["percent"], later["secondsLeft"]) == ("8/16", 50, None)
    final = st.progress(
        "Sent", st.counts(shards("sent", discovered=3, anonymized=3, sent=3)), {}, None
    )
    assert final["progress"] == "3/3" and final["imagesPerSecond"] is None


def test_the_status_says_how_many_withheld_images_wait_in_quarantine_and_where():
    shard = {"stage": "sent", "discovered": 2, "anonymized": 1, "withheld": 1, "sent": 1}
    kept = {"shards": {"0": {**shard, "quarantined": 1}, "1": {**shard, "quarantined": 1}}}
    done = {"process": job(state="Complete")}
    now = phase(SPEC, "Sending", done, st.shards_of(kept))
    assert (now.phase, now.message) == (
        "Sent",
        "every shard delivered; 2 withheld images kept in quarantine for review",
    )
    status = st.rollup(SPEC, 1, kept, done, now, AT, "uid-1")
    assert status["quarantine"] == {"images": 2, "folder": "uid-1/quarantine"}
    none = {"shards": {"0": shard, "1": shard}}  # withheld, not kept (no workspace)
    assert phase(SPEC, "Sending", done, st.shards_of(none)).message == "every shard delivered"
    assert "quarantine" not in st.rollup(SPEC, 1, none, done, now, AT, "uid-1")

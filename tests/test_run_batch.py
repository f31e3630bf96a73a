"""The batch runner: one batch, or one shard of it, in either placement.

A pod's progress patches are collected in a list instead of sent to the API server (the one
stand-in here; the cluster tests send them for real). Delivery runs against the local Pub/Sub
emulator (real) and fake-gcs-server (real) where a test names them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batches import batch
from dicomdata import KEY, PLANTED
from withheld import write_withheld

from sendit_api.errors import Permanent
from sendit_api.status import Counts
from sendit_worker.cli.sample import make_sample
from sendit_worker.destinations import staging
from sendit_worker.quarantine.store import Quarantine
from sendit_worker.run.batch import clean_source, plan_batch, run_batch, send_batch
from sendit_worker.run.placement import LocalPlacement, PodPlacement
from sendit_worker.run.progress import StatusProgress


class Recorder:
    """Progress that keeps every report (a terminal or the status would show them)."""

    def __init__(self) -> None:
        self.reports: list = []

    def stage(self, report) -> None:
        self.reports.append(report)

    def advance(self, report, images: int) -> None:
        self.reports.append(report)


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())


@pytest.fixture
def source(tmp_path: Path) -> Path:
    make_sample(tmp_path / "src" / "in", patients=3, files=12)
    return tmp_path / "src"


def pods(tmp_path: Path, source: Path, n: int = 2) -> list[PodPlacement]:
    mounts = (source, tmp_path / "work", tmp_path / "config", tmp_path / "local")
    return [PodPlacement(*mounts, uid="uid-1", shard=(i, n), planned=n > 1) for i in range(n)]


def run_shards(b, placements, stage="process", deliver=True) -> list[dict]:
    """The stage's pods one after the other; before a planned process stage, its plan stage."""
    patches: list[dict] = []
    if stage == "process" and placements[0].planned:
        patches.append(plan_batch(b, placements[0], workers=1).patch())
    for p in placements:
        progress = StatusProgress(patches.append, p.shard[0])
        if stage == "process":
            run_batch(b, p, progress, deliver=deliver, workers=1)
        else:
            send_batch(b, p, progress)
    return patches


def last_shards(patches: list[dict]) -> dict[str, dict]:
    """Each shard as its merge patches leave it."""
    last: dict[str, dict] = {}
    for p in patches:
        for index, shard in p["status"].get("shards", {}).items():
            last.setdefault(index, {}).update(shard)
    return last


def test_shards_process_and_deliver_locally_reporting_counts_only(source, tmp_path) -> None:
    b = batch(destinations={"local": {"path": "/x"}}, parallelism=2)
    patches = run_shards(b, pods(tmp_path, source))
    last = last_shards(patches)
    assert set(last) == {"0", "1"} and all(s["stage"] == "sent" for s in last.values())
    total = sum(s["anonymized"] + s["withheld"] + s["failed"] for s in last.values())
    assert total == sum(s["discovered"] for s in last.values()) == 12
    assert patches[0]["status"]["plan"]["discovered"] == 12  # the plan stage's, before any shard
    assert patches[0]["status"]["plan"]["headerReads"] == 12  # each header read once, there
    assert [s["headerReads"] for s in last.values()] == [0, 0]  # the shards read no header
    copied = list((tmp_path / "local").rglob("*.dcm"))
    assert sum(s["sent"] for s in last.values()) == len(copied) > 0
    assert sum(s["outputs"]["local"] for s in last.values()) == len(copied)
    text = repr(patches)
    assert not any(v in text for v in PLANTED.values()) and "in/" not in text


def test_every_stage_is_reported_in_order(source, tmp_path) -> None:
    b = batch(destinations={"local": {"path": "/x"}})
    patches = run_shards(b, pods(tmp_path, source, n=1))
    stages = [p["status"]["shards"]["0"]["stage"] for p in patches]
    assert patches[1]["status"]["shards"]["0"]["headerReads"] == 12  # alone: it planned
    order = ["processing", "processed", "sending", "sent"]
    assert [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]] == order
    assert patches[1]["status"]["shards"]["0"]["discovered"] == 12  # totals before any image


def test_manual_stage_then_send_stage(source, tmp_path) -> None:
    b = batch(destinations={"local": {"path": "/x"}}, send="manual", parallelism=2)
    placements = pods(tmp_path, source)
    patches = run_shards(b, placements, deliver=False)
    shards = [p["status"]["shards"] for p in patches if "shards" in p["status"]]
    assert {s for p in shards for s in (x["stage"] for x in p.values())} == {
        "processing",
        "processed",
    }
    assert not (tmp_path / "local").exists()
    patches = run_shards(b, placements, stage="send")
    last = last_shards(patches)
    assert all(s["stage"] == "sent" for s in last.values())
    assert sum(s["sent"] for s in last.values()) == len(list((tmp_path / "local").rglob("*.dcm")))
    again = last_shards(run_shards(b, placements, stage="send"))  # a retried send stage
    assert [s["sent"] for s in again.values()] == [s["sent"] for s in last.values()]


def test_configuration_errors_are_permanent(source, tmp_path, monkeypatch) -> None:
    b = batch(destinations={"local": {"path": "/x"}}, parallelism=2)
    monkeypatch.delenv("SENDIT_PSEUDONYM_KEY")
    with pytest.raises(Permanent, match="pseudonym key"):
        run_shards(b, pods(tmp_path, source))
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())
    with pytest.raises(Permanent, match="no destinations"):
        run_shards(batch(parallelism=2), pods(tmp_path, source))
    with pytest.raises(Permanent, match="ConfigMaps"):
        run_shards(
            batch(destinations={"local": {"path": "/x"}}, deidentify={"recipe": {"file": "r"}}),
            pods(tmp_path, source, n=1),
        )


def test_send_without_a_staged_batch_says_so(tmp_path) -> None:
    b = batch(destinations={"local": {"path": "out"}}, send="manual")
    with pytest.raises(Permanent, match="no staged batch"):
        send_batch(b, LocalPlacement(tmp_path), Recorder())


def test_a_sent_batch_is_not_sent_again(tmp_path) -> None:
    b = batch(destinations={"local": {"path": "out"}}, send="manual")
    staging.write_state(tmp_path / "out", staging.SENT, "b", Counts(anonymized=3, sent=3))
    report = send_batch(b, LocalPlacement(tmp_path), Recorder())
    assert report.sent == 3


# -- cleanup.source: delete ------------------------------------------------------------------

COMPLETE = Counts(discovered=3, anonymized=3, sent=3)


def cleanup_batch(tmp_path: Path, cleanup: str):
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "x.dcm").write_bytes(b"x")
    return batch(
        source={"volume": {"hostPath": {"path": "src"}}, "folders": ["a"]},
        destinations={"local": {"path": "out"}},
        cleanup={"source": cleanup},
    )


def test_keep_is_the_default_and_never_deletes(tmp_path) -> None:
    assert batch().spec.cleanup.source == "keep"
    assert clean_source(cleanup_batch(tmp_path, "keep"), LocalPlacement(tmp_path), COMPLETE) == 0
    assert (tmp_path / "src" / "a" / "x.dcm").exists()


@pytest.mark.parametrize(
    "counts",
    [
        Counts(discovered=3, anonymized=3, sent=2),
        Counts(discovered=3, anonymized=3, sent=3, failed=1),
        Counts(discovered=3, anonymized=2, sent=2, withheld=1),
        Counts(),
    ],
)
def test_delete_waits_for_a_complete_send(tmp_path, counts) -> None:
    clean_source(cleanup_batch(tmp_path, "delete"), LocalPlacement(tmp_path), counts)
    assert (tmp_path / "src" / "a" / "x.dcm").exists()


def test_delete_after_a_complete_send(tmp_path) -> None:
    assert clean_source(cleanup_batch(tmp_path, "delete"), LocalPlacement(tmp_path), COMPLETE) == 1
    assert not (tmp_path / "src" / "a").exists()


def test_in_a_cluster_no_shard_deletes_the_source(source, tmp_path) -> None:
    """Bug: every shard deleted every folder, resolved on the host. Now shards never clean up
    (their source mount is read-only); the one-pod cleanup stage does, from the mount."""
    b = batch(destinations={"local": {"path": "/x"}}, parallelism=2, cleanup={"source": "delete"})
    patches = run_shards(b, pods(tmp_path, source))
    assert all(s["stage"] == "sent" for s in last_shards(patches).values())
    assert (source / "in").is_dir() and any((source / "in").rglob("*.dcm"))
    cleanup = PodPlacement(source, tmp_path / "work", tmp_path / "c", None, "uid-1", (0, 1))
    assert clean_source(b, cleanup, COMPLETE) == 1
    assert not (source / "in").exists() and source.exists()


# -- delivery from shards --------------------------------------------------------------------


@pytest.mark.emulators
def test_each_shard_ends_with_its_own_batch_done_event(source, tmp_path, pubsub_emulator) -> None:
    """Bug: every shard published batch.done with one event id, so a consumer that drops
    duplicates saw the batch done after its first shard."""
    topic = pubsub_emulator.topic("sendit-test", "shard-events")
    b = batch(destinations={"pubsub": {"topic": topic}}, parallelism=2)
    run_shards(b, pods(tmp_path, source))
    messages = pubsub_emulator.pull("sendit-test", "shard-events")
    done = [json.loads(m.data) for m in messages if m.attributes["type"] == "batch.done"]
    assert len(done) == 2
    assert len({d["id"] for d in done}) == 2
    assert sorted(d["shard"]["index"] for d in done) == [0, 1]


@pytest.mark.emulators
def test_a_retried_shard_keeps_its_ledger(source, tmp_path, fake_gcs, monkeypatch) -> None:
    """An earlier attempt's outputs are cleared, its delivery ledger is not: a retry skips
    what was delivered."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    fake_gcs.bucket("retried-shard")
    b = batch(destinations={"gcs": {"bucket": "retried-shard"}})
    [pod] = pods(tmp_path, source, n=1)
    run_shards(b, [pod])
    ledger = pod.workspace(b) / ".sendit" / "ledger.jsonl"
    entries = ledger.read_text().splitlines()
    assert entries
    (pod.workspace(b) / "left-over").write_text("x")
    run_shards(b, [pod])
    assert not (pod.workspace(b) / "left-over").exists()
    assert ledger.read_text().splitlines() == entries  # nothing delivered twice


@pytest.mark.emulators
def test_sent_grows_as_series_are_acknowledged(source, tmp_path, fake_gcs, monkeypatch) -> None:
    """Bug: `sent` stayed 0 until a shard had finished, so a long batch showed nothing sent
    until its end. Each series acknowledged by every destination counts at once (the patches
    are rate-limited as progress is: every one is kept here)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    fake_gcs.bucket("sent-grows")
    b = batch(destinations={"gcs": {"bucket": "sent-grows"}})
    [pod] = pods(tmp_path, source, n=1)
    patches: list[dict] = []
    run_batch(b, pod, StatusProgress(patches.append, 0, every=0.0), deliver=True, workers=1)
    shards = [p["status"]["shards"]["0"] for p in patches]
    sent = [s["sent"] for s in shards]
    assert sent == sorted(sent), "sent went back"
    before_the_end = [s["sent"] for s in shards if s["stage"] != "sent"]
    assert len(set(before_the_end)) > 2, f"sent grew only at the end: {sent}"
    assert sent[-1] == shards[-1]["anonymized"] > max(before_the_end[:1])


def test_the_local_output_must_not_overlap_the_input(source, tmp_path) -> None:
    b = batch(
        source={"volume": {"hostPath": {"path": str(source)}}, "folders": ["in"]},
        destinations={"local": {"path": str(source / "in" / "out")}},
    )
    with pytest.raises(Permanent, match="outside every input folder"):
        run_batch(b, LocalPlacement(tmp_path), Recorder(), deliver=True, workers=1)


def test_a_source_changed_between_plan_and_processing_is_reported_by_the_shards(
    source, tmp_path
) -> None:
    """Planned, then a file modified and one added before the shards run: the shard that owns
    the modified file fails it, shard 0 fails the new one (once), nothing else is mixed in."""
    b = batch(destinations={"local": {"path": "/x"}}, parallelism=2)
    placements = pods(tmp_path, source)
    planned = plan_batch(b, placements[0], workers=1)
    files = sorted((source / "in").rglob("*.dcm"))
    files[0].write_bytes(files[0].read_bytes() + b"\0\0")
    (files[1].parent / "late.dcm").write_bytes(files[1].read_bytes())
    patches = [planned.patch()]
    for p in placements:
        run_batch(b, p, StatusProgress(patches.append, p.shard[0]), deliver=True, workers=1)
    last = last_shards(patches)
    assert sum(s["failed"] for s in last.values()) == 2
    changed = [s.get("reasons", {}).get("failed", {}) for s in last.values()]
    assert sum(c.get("source-changed", 0) for c in changed) == 2  # in status, by its class
    assert last["0"]["failed"] >= 1  # the added file, reported by shard 0 only
    assert sum(s["anonymized"] + s["withheld"] for s in last.values()) == 11
    assert sum(s["discovered"] for s in last.values()) == planned.discovered == 12


def test_pods_keep_withheld_images_only_on_a_workspace_that_outlives_them(tmp_path) -> None:
    """On the claim, beside the plan, shared by the shards, each counting what it kept; with
    an emptyDir (no spec.workspace), nothing: it would go with the pod."""
    write_withheld(tmp_path / "src" / "in")
    work = {"persistentVolumeClaim": {"claimName": "work"}}
    kept = batch(destinations={"local": {"path": "/x"}}, workspace=work, parallelism=2)
    last = last_shards(run_shards(kept, pods(tmp_path, tmp_path / "src")))
    q = Quarantine.open(tmp_path / "work" / "uid-1" / "quarantine")
    withheld = sum(s["withheld"] for s in last.values())
    assert sum(s["quarantined"] for s in last.values()) == len(q.items()) == withheld == 5
    assert q.record.base is None and q.record.manifest["spec"]["workspace"] == work
    gone = batch("gone", destinations={"local": {"path": "/x"}})
    [pod] = pods(tmp_path / "gone", tmp_path / "src", n=1)
    last = last_shards(run_shards(gone, [pod]))
    assert last["0"]["withheld"] == 5 and last["0"]["quarantined"] == 0
    assert not (tmp_path / "gone" / "work" / "uid-1" / "quarantine").exists()

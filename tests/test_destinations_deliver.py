"""End to end, as a user runs it: `sendit run -f batch.yaml` (and `sendit send`) against the
local emulators - fake-gcs-server, Google's Pub/Sub emulator and bqemulator (BigQuery's REST
API on DuckDB) - including a worker killed with SIGKILL mid-batch and rerun, and a scan of
everything delivered for identifying values.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pydicom
import pytest
import yaml

from sendit_worker.cli.sample import make_sample

pytestmark = [pytest.mark.emulators, pytest.mark.timeout(240)]

PROJECT = "sendit-test"
CLI = ("-c", "import sys; from sendit_worker.cli.main import main; sys.exit(main())")
KEY = "e2e-destinations-key-0123456789abcdef"


def identifying_values(src: Path) -> set[str]:
    """Everything in the source that must never reach a destination."""
    found: set[str] = set()
    for path in src.rglob("*"):
        if path.is_dir():
            found.add(path.name)
            continue
        found.add(path.stem)
        ds = pydicom.dcmread(path)
        name = str(ds.PatientName)
        found.update({name, *name.split("^")})
        for keyword in (
            "PatientID",
            "PatientBirthDate",
            "AccessionNumber",
            "PatientAddress",
            "InstitutionName",
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "SOPInstanceUID",
            "ReferringPhysicianName",
        ):
            if ds.get(keyword):
                found.add(str(ds.get(keyword)))
    return {v for v in found if len(v) >= 4}


def assert_clean(texts: list[str], secrets: set[str]) -> None:
    blob = "\n".join(texts)
    leaked = sorted(s for s in secrets if s in blob)
    assert not leaked, f"identifying values delivered: {leaked[:5]}"


class Batch:
    """A sample source, a manifest naming a bucket, a table and a topic; runs `sendit`."""

    def __init__(self, tmp: Path, name: str, env: dict[str, str], **spec: Any) -> None:
        self.tmp, self.name = tmp, name
        self.src = tmp / "src"
        self.images = make_sample(self.src, patients=2, files=spec.pop("files", 32)).files
        self.folders = sorted(p.name for p in self.src.iterdir())
        self.manifest = tmp / "batch.yaml"
        manifest = {
            "apiVersion": "sendit.dev/v1alpha1",
            "kind": "SenditBatch",
            "metadata": {"name": name},
            "spec": {
                "source": {"volume": {"hostPath": {"path": "src"}}, "folders": self.folders},
                **spec,
            },
        }
        self.manifest.write_text(yaml.safe_dump(manifest))
        self.env = {**os.environ, **env, "SENDIT_PSEUDONYM_KEY": KEY}

    def sendit(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *CLI, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=200,
        )

    def run(self, **kw: Any) -> subprocess.CompletedProcess:
        return self.sendit(
            "run",
            "-f",
            str(self.manifest),
            "--workers",
            "2",
            "--report",
            str(self.tmp / "report.json"),
            **kw,
        )

    def report(self) -> dict[str, Any]:
        return json.loads((self.tmp / "report.json").read_text())


@pytest.fixture
def destinations(fake_gcs, pubsub_emulator, bigquery_emulator, request):
    """A fresh bucket, table and topic (+ subscription) named after the test."""
    name = request.node.name.replace("_", "-")[:40].strip("-").lower()
    fake_gcs.bucket(name)
    topic = pubsub_emulator.topic(PROJECT, name)
    table = name.replace("-", "_")
    spec = {
        "gcs": {"bucket": name, "prefix": "research", "concurrency": 4},
        "bigquery": {
            "project": PROJECT,
            "dataset": "sendit",
            "table": table,
            "endpoint": bigquery_emulator.url,
        },
        "pubsub": {"topic": topic},
    }
    return name, table, spec


def delivered(fake_gcs, pubsub_emulator, bigquery_emulator, name: str, table: str):
    blobs = list(fake_gcs.client().bucket(name).list_blobs())
    rows = bigquery_emulator.rows(PROJECT, "sendit", table)
    messages = pubsub_emulator.pull(PROJECT, name)
    return blobs, rows, messages


def test_auto_delivers_every_image_once_and_nothing_identifying(
    tmp_path, fake_gcs, pubsub_emulator, bigquery_emulator, destinations
) -> None:
    name, table, spec = destinations
    batch = Batch(tmp_path, "auto-1", {}, destinations=spec)
    result = batch.run()
    assert result.returncode == 0, result.stderr
    report = batch.report()
    assert report["sent"] == report["anonymized"] == batch.images
    blobs, rows, messages = delivered(fake_gcs, pubsub_emulator, bigquery_emulator, name, table)
    assert len(blobs) == batch.images
    assert all(b.name.startswith("research/") and b.name.endswith(".dcm") for b in blobs)
    assert sorted(r["sop_uid"] for r in rows) == sorted(
        b.name.rsplit("/", 1)[1].removesuffix(".dcm") for b in blobs
    )
    assert sorted(r["gcs_uri"] for r in rows) == sorted(f"gs://{name}/{b.name}" for b in blobs)
    types = Counter(m.attributes["type"] for m in messages)
    assert types == {"batch.started": 1, "series.delivered": report["series"], "batch.done": 1}
    done = json.loads(next(m.data for m in messages if m.attributes["type"] == "batch.done"))
    assert done["counts"]["sent"] == batch.images and done["schema"] == "sendit.event/v1"
    work = tmp_path / ".sendit" / "auto-1"
    assert not list(work.rglob("*.dcm")), "auto mode keeps no second copy"
    assert_clean(
        [b.name for b in blobs]
        + [json.dumps(b.metadata) for b in blobs]
        + [json.dumps(r, default=str) for r in rows]
        + [m.data.decode() + json.dumps(dict(m.attributes)) for m in messages]
        + [result.stderr],
        identifying_values(batch.src),
    )


def test_killed_mid_batch_then_rerun_delivers_exactly_once(
    tmp_path, fake_gcs, fault_proxy, pubsub_emulator, bigquery_emulator, destinations
) -> None:
    name, table, spec = destinations
    spec["gcs"]["concurrency"] = 2
    batch = Batch(tmp_path, "kill-1", {}, destinations=spec, files=48)
    fault_proxy.delay(0.4, every=2)  # slow uploads: a wide window to kill in
    proc = subprocess.Popen(
        [
            sys.executable,
            *CLI,
            "run",
            "-f",
            str(batch.manifest),
            "--workers",
            "2",
        ],
        env={**batch.env, "STORAGE_EMULATOR_HOST": fault_proxy.url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    bucket = fake_gcs.client().bucket(name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(bucket.list_blobs())) >= 10:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the batch finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list(bucket.list_blobs()))
    assert 0 < partial < batch.images
    fault_proxy.clear()
    result = batch.run()
    assert result.returncode == 0, result.stderr
    assert batch.report()["sent"] == batch.images
    blobs, rows, messages = delivered(fake_gcs, pubsub_emulator, bigquery_emulator, name, table)
    assert len(blobs) == batch.images
    sops = Counter(r["sop_uid"] for r in rows)
    assert len(sops) == batch.images and set(sops.values()) == {1}, "rows loaded twice"
    ids = {m.attributes["event_id"] for m in messages}
    series = batch.report()["series"]
    assert len(ids) == series + 2  # duplicates (if any) share an id: consumers drop them


def test_manual_stages_then_send_delivers_and_cleans_up(
    tmp_path, fake_gcs, pubsub_emulator, bigquery_emulator, destinations
) -> None:
    name, table, spec = destinations
    spec["gcs"]["layout"] = "tar.gz"
    batch = Batch(
        tmp_path, "manual-1", {}, destinations=spec, send="manual", cleanup={"source": "delete"}
    )
    staged = batch.run()
    assert staged.returncode == 0, staged.stderr
    staging = tmp_path / ".sendit" / "manual-1"
    state = json.loads((staging / ".sendit" / "state.json").read_text())
    assert state["phase"] == "DONEPROCESSING"
    assert len(list(staging.rglob("*.dcm"))) == batch.images
    assert list(fake_gcs.client().bucket(name).list_blobs()) == []
    assert batch.src.exists()
    sent = batch.sendit("send", "-f", str(batch.manifest))
    assert sent.returncode == 0, sent.stderr
    assert json.loads((staging / ".sendit" / "state.json").read_text())["phase"] == "SENT"
    assert not list(staging.rglob("*.dcm")), "staging removed after a verified send"
    gone = [not (batch.src / f).exists() for f in batch.folders]
    assert all(gone), "cleanup.source: delete removes the source folders after a verified send"
    blobs, rows, _ = delivered(fake_gcs, pubsub_emulator, bigquery_emulator, name, table)
    assert all(b.name.endswith(".tar.gz") for b in blobs)
    assert len(blobs) == state["counts"]["series"]
    assert len(rows) == batch.images and all(r["archive_member"] for r in rows)
    again = batch.sendit("send", "-f", str(batch.manifest))
    assert again.returncode == 0 and "already" in again.stderr
    assert len(bigquery_emulator.rows(PROJECT, "sendit", table)) == batch.images


def test_a_missing_bucket_stops_the_batch_before_any_data_moves(
    tmp_path, fake_gcs, pubsub_emulator, bigquery_emulator, destinations
) -> None:
    name, table, spec = destinations
    spec["gcs"]["bucket"] = "no-such-bucket"
    batch = Batch(tmp_path, "missing-1", {}, destinations=spec, files=4)
    result = batch.run()
    assert result.returncode == 2
    assert "GCS bucket 'no-such-bucket' does not exist" in result.stderr
    assert not (tmp_path / ".sendit" / "missing-1").exists() or not list(
        (tmp_path / ".sendit" / "missing-1").rglob("*.dcm")
    )
    assert pubsub_emulator.pull(PROJECT, name, settle=0.5) == []
    assert bigquery_emulator.rows(PROJECT, "sendit", table) == []

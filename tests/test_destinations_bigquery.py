"""BigQuery rows, each image's row exactly once.

Against bqemulator (tests/emulators.py: BigQuery's REST API on DuckDB): dataset and table
creation, schema updates, the insert statements with their typed parameters, and what the
table holds afterwards. One part runs against a MOCK client: bqemulator accepts a second job
with an id it already has (it replaces the first) where BigQuery refuses it (409), so the wait
for an earlier statement of the same series is shown against `ChainMock`, which refuses as
BigQuery does.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from batches import destinations
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from sendit_api.spec import BigQuery
from sendit_worker.destinations import bigquery as bq
from sendit_worker.destinations.bigquery import BigQuerySink
from sendit_worker.destinations.errors import DeliveryError
from sendit_worker.destinations.image import DeidentifiedImage

pytestmark = pytest.mark.emulators
PROJECT = "proj"


def _config(emulator, table: str) -> BigQuery:
    bigquery = {"project": PROJECT, "dataset": "research", "table": table, "endpoint": emulator.url}
    return destinations(bigquery=bigquery).bigquery


def test_row_is_typed_and_safe(deidentified) -> None:
    _, series = deidentified
    image = series[0][0]
    r = bq.row(image, "batch-1", "gs://b/x.dcm", None)
    assert set(r) == {name for name, _, _ in bq.COLUMNS}
    assert r["sop_uid"] == image.sop and r["batch"] == "batch-1"
    assert r["study_date"] is None or len(r["study_date"]) == 10
    assert isinstance(r["rows"], int) and isinstance(r["columns"], int)
    assert isinstance(r["header"], dict)  # the JSON column holds the DICOM JSON header


def test_age_and_date_conversions() -> None:
    assert bq._age_years("045Y") == 45.0
    assert bq._age_years("006M") == 0.5
    assert bq._age_years("bad") is None
    assert bq._date("20200131") == "2020-01-31"
    assert bq._date("") is None


def test_parts_stay_under_the_limit_and_chains_are_per_table_and_series() -> None:
    rows = [{"sop_uid": str(n), "pad": "x" * 100} for n in range(50)]
    parts = list(bq.parts(rows, limit=1000))
    assert sum(len(p) for p in parts) == 50 and len(parts) > 1
    assert all(sum(len(json.dumps(r)) + 1 for r in p) <= 1000 for p in parts)
    assert bq.chain("p.d.t", "1.2") == bq.chain("p.d.t", "1.2")
    assert bq.chain("p.d.t", "1.2") != bq.chain("p.d.t", "1.3")
    assert bq.chain("p.d.t", "1.2") != bq.chain("p.d.u", "1.2")


def _rows(images: list[DeidentifiedImage]) -> list[dict]:
    return [bq.row(i, "b", f"gs://bkt/{i.sop}.dcm", None) for i in images]


def test_creates_a_clustered_table_and_inserts_typed_rows(bigquery_emulator, deidentified) -> None:
    sink = BigQuerySink(_config(bigquery_emulator, "images"))
    sink.preflight()
    table = bigquery_emulator.client(PROJECT).get_table(f"{PROJECT}.research.images")
    types = {f.name: f.field_type for f in table.schema}
    assert types["rows"] in ("INTEGER", "INT64") and types["patient_age_years"] in (
        "FLOAT",
        "FLOAT64",
    )
    assert types["study_date"] == "DATE" and types["header"] == "JSON"
    assert table.clustering_fields == ["series_uid"]
    series = deidentified[1][0]
    rows = _rows(series)
    sink.load(series[0].series, rows)
    stored = {r["sop_uid"]: r for r in bigquery_emulator.rows(PROJECT, "research", "images")}
    assert sorted(stored) == sorted(r["sop_uid"] for r in rows)
    first = rows[0]
    held = stored[first["sop_uid"]]
    assert held["header"] == first["header"]  # the DICOM JSON, as JSON
    assert held["rows"] == first["rows"] and held["gcs_uri"] == first["gcs_uri"]
    assert (held["study_date"] and held["study_date"].isoformat()) == first["study_date"]
    sink.preflight()  # the table exists: nothing changes
    assert len(bigquery_emulator.rows(PROJECT, "research", "images")) == len(rows)


def test_each_image_once_when_a_retry_brings_other_images(bigquery_emulator, deidentified) -> None:
    """The issue's case: a pod's first attempt had one file fail transiently (its series went
    without it, or the pod died after the insert); the retry brings the whole series, then a
    rerun brings it again: each image's row is in the table once."""
    sink = BigQuerySink(_config(bigquery_emulator, "retried"))
    sink.preflight()
    series = deidentified[1][1]
    assert len(series) >= 3
    rows = _rows(series)
    uid = series[0].series
    sink.load(uid, rows[:-1])  # the first attempt, one image short
    sink.load(uid, rows)  # the retry: the whole series
    sink.load(uid, list(reversed(rows)))  # a rerun without the ledger
    sink.load(uid, rows[1:2])  # and a part of it again
    sops = Counter(r["sop_uid"] for r in bigquery_emulator.rows(PROJECT, "research", "retried"))
    assert sops == Counter(r["sop_uid"] for r in rows), "a row twice, or one missing"


def test_an_older_table_gets_the_new_columns(bigquery_emulator) -> None:
    sink = BigQuerySink(_config(bigquery_emulator, "older"))
    client = bigquery_emulator.client(PROJECT)
    client.create_dataset(f"{PROJECT}.research", exists_ok=True)
    client.create_table(bigquery.Table(f"{PROJECT}.research.older", schema=bq.schema()[:5]))
    sink.preflight()
    fields = client.get_table(f"{PROJECT}.research.older").schema
    assert [f.name for f in fields] == [n for n, _, _ in bq.COLUMNS]


def test_a_statement_that_keeps_failing_fails_the_series(bigquery_emulator) -> None:
    sink = BigQuerySink(_config(bigquery_emulator, "absent"))
    # No preflight: the table does not exist, so the statement fails, ATTEMPTS times.
    with pytest.raises(DeliveryError, match="failed"):
        sink.load("1.2.3", [{"sop_uid": "1.2.3.4", "series_uid": "1.2.3"}])


class ChainMock:
    """MOCK of the two calls `_insert` makes (bqemulator does not refuse a job id it has, as
    BigQuery does): jobs.insert refuses an id already taken (409); jobs.get returns it."""

    def __init__(self, taken: dict[str, str]) -> None:
        self.jobs: dict[str, _Job] = {jid: _Job(state) for jid, state in taken.items()}
        self.ran: list[str] = []

    def query(self, sql: str, job_id: str, **_: Any) -> _Job:
        if job_id in self.jobs:
            raise gexc.Conflict(f"Already Exists: Job {job_id}")
        self.ran.append(job_id)
        self.jobs[job_id] = job = _Job("ok")
        return job

    def get_job(self, job_id: str, **_: Any) -> _Job:
        return self.jobs[job_id]


class _Job:
    def __init__(self, outcome: str) -> None:
        self.outcome, self.waited = outcome, False
        self.state = "DONE"
        self.error_result = {"reason": "backendError"} if outcome == "failed" else None

    def result(self, timeout: float) -> None:
        self.waited = True
        if self.error_result:
            raise gexc.InternalServerError("backendError")


def test_a_statement_waits_for_the_earlier_ones_of_its_series(bigquery_emulator) -> None:
    """A killed pod's statements (one done, one failed) are waited for, then this delivery's
    runs under the next free id of the series' chain."""
    stem = bq.chain(f"{PROJECT}.research.t", "1.2")
    mock = ChainMock({f"{stem}_0": "ok", f"{stem}_1": "failed"})
    sink = BigQuerySink(_config(bigquery_emulator, "t"), client=mock)  # type: ignore[arg-type]
    assert sink.load("1.2", [{"sop_uid": "1.2.1", "series_uid": "1.2"}]) == [f"{stem}_2"]
    assert mock.ran == [f"{stem}_2"]
    assert all(job.waited for job in mock.jobs.values())

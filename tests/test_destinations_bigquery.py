"""BigQuery rows and exactly-once loads.

The loads run against `bigquery_mock`, a MOCK of the BigQuery REST API (no BigQuery emulator
runs here: see docs/destinations.md). The mock validates the requests google-cloud-bigquery
really sends - dataset and table inserts, tables.get/patch, multipart jobs.insert with a jobId,
jobs.get - and the typed rows against the table schema.
"""

from __future__ import annotations

import json

import pytest
from batches import destinations

from sendit_api.spec import BigQuery
from sendit_worker.destinations import bigquery as bq
from sendit_worker.destinations.bigquery import BigQuerySink
from sendit_worker.destinations.image import DeidentifiedImage

pytestmark = pytest.mark.emulators


def _config(mock, table: str) -> BigQuery:
    bigquery = {"project": "proj", "dataset": "research", "table": table, "endpoint": mock.url}
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


def test_parts_stay_under_the_limit_and_job_ids_are_stable() -> None:
    rows = [{"sop_uid": str(n), "pad": "x" * 100} for n in range(50)]
    parts = list(bq.parts(rows, limit=1000))
    assert sum(len(p) for p in parts) == 50 and len(parts) > 1
    assert all(sum(len(json.dumps(r)) + 1 for r in p) <= 1000 for p in parts)
    assert bq.job_id("b", "t", rows) == bq.job_id("b", "t", list(reversed(rows)))
    assert bq.job_id("b", "t", rows) != bq.job_id("b2", "t", rows)


def _rows(series: list[list[DeidentifiedImage]]) -> list[dict]:
    return [bq.row(i, "b", f"gs://bkt/{i.sop}.dcm", None) for s in series for i in s]


def test_creates_dataset_and_table_and_loads_exactly_once(bigquery_mock, deidentified) -> None:
    sink = BigQuerySink(_config(bigquery_mock, "images"))
    sink.preflight()
    table = bigquery_mock.tables[("proj", "research", "images")]
    types = {f["name"]: f["type"] for f in table["schema"]["fields"]}
    assert types["rows"] == "INTEGER" or types["rows"] == "INT64"
    assert types["study_date"] == "DATE" and types["header"] == "JSON"
    rows = _rows(deidentified[1][:3])
    first = sink.load("b", rows)
    again = sink.load("b", rows)  # a retry, or a rerun after a crash
    assert first == again
    stored = bigquery_mock.table_rows("proj", "research", "images")
    assert sorted(r["sop_uid"] for r in stored) == sorted(r["sop_uid"] for r in rows)
    assert "POST jobs.insert(upload)" in bigquery_mock.calls
    assert bigquery_mock.problems == []
    sink.preflight()  # the table exists: nothing changes
    assert len(bigquery_mock.table_rows("proj", "research", "images")) == len(rows)


def test_a_failed_load_job_is_retried_under_a_derived_id(bigquery_mock, deidentified) -> None:
    sink = BigQuerySink(_config(bigquery_mock, "flaky"))
    sink.preflight()
    bigquery_mock.fail_jobs = 2
    rows = _rows(deidentified[1][:1])
    [jid] = sink.load("b", rows)
    assert jid.endswith("_r2")
    assert len(bigquery_mock.table_rows("proj", "research", "flaky")) == len(rows)
    assert sink.load("b", rows) == [jid]  # the rerun walks the same ids, loads nothing
    assert len(bigquery_mock.table_rows("proj", "research", "flaky")) == len(rows)


def test_an_older_table_gets_the_new_columns(bigquery_mock) -> None:
    sink = BigQuerySink(_config(bigquery_mock, "older"))
    sink.client.create_dataset("proj.research", exists_ok=True)
    from google.cloud import bigquery

    old = bigquery.Table("proj.research.older", schema=bq.schema()[:5])
    sink.client.create_table(old)
    sink.preflight()
    fields = bigquery_mock.tables[("proj", "research", "older")]["schema"]["fields"]
    assert [f["name"] for f in fields] == [n for n, _, _ in bq.COLUMNS]
    assert "PATCH tables.patch" in bigquery_mock.calls

"""BigQuery: one row of safe metadata per image, and only one, whatever the retries.

A series' rows go in by one DML statement that inserts the rows whose SOP Instance UID the
table does not hold yet:

    INSERT INTO table (...) SELECT ... FROM UNNEST(@rows) AS r
    WHERE NOT EXISTS (SELECT 1 FROM table AS t
                      WHERE t.series_uid = @series AND t.sop_uid = r.sop_uid)

So the table itself is the record of what was loaded: a retry, a rerun after a crash, a pod
retry whose series has other images than the first time (a file that failed transiently)
inserts what is missing and nothing twice, with or without the ledger. A statement is atomic.
Two statements of one series must not run at once (each would find the other's rows
missing), so their job ids are a chain derived from the table and the series (`_0`, `_1`,
...): before its statement, a delivery waits for every job of the chain that exists (one sent
by a pod that was killed may still run) and takes the first id that is free; BigQuery refuses
a second job with an id (409). INSERT statements run 10 at a time per table (MERGE, the
other way to say this, runs 2 at a time); new tables are clustered by series_uid, so the
check reads only the series' blocks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from itertools import count
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from sendit_api.spec import BigQuery

from .errors import DeliveryError, DestinationError
from .google_errors import preflight_error
from .image import DeidentifiedImage

log = logging.getLogger("sendit.bigquery")

# name, type, description. Typed; every column nullable so additions stay compatible.
COLUMNS: list[tuple[str, str, str]] = [
    ("patient", "STRING", "Pseudonymous patient id"),
    ("study_uid", "STRING", "New StudyInstanceUID"),
    ("series_uid", "STRING", "New SeriesInstanceUID"),
    ("sop_uid", "STRING", "New SOPInstanceUID"),
    ("sop_class_uid", "STRING", "SOP Class UID"),
    ("modality", "STRING", "Modality"),
    ("body_part", "STRING", "Body part examined"),
    ("study_date", "DATE", "Study date, shifted by the patient's jitter"),
    ("patient_age", "STRING", "Patient age as DICOM gives it (e.g. 045Y)"),
    ("patient_age_years", "FLOAT64", "Patient age in years"),
    ("patient_sex", "STRING", "Patient sex (M, F, O)"),
    ("rows", "INT64", "Rows"),
    ("columns", "INT64", "Columns"),
    ("manufacturer_model", "STRING", "Manufacturer's model name"),
    ("gcs_uri", "STRING", "Where the image is (an object, or the archive holding it)"),
    ("archive_member", "STRING", "The image's name inside the archive (tar.gz layout)"),
    ("batch", "STRING", "The SenditBatch that delivered the image"),
    ("header", "JSON", "The de-identified DICOM header as DICOM JSON (bulk data left out)"),
]
PART_BYTES = 2 * 1024 * 1024  # rows per statement, as query parameters (a request: 10 MB)
ATTEMPTS = 5  # statements of ours that fail before the series does
CLUSTERING = ["series_uid"]


def schema() -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField(n, t, mode="NULLABLE", description=d) for n, t, d in COLUMNS]


def _date(value: Any) -> str | None:
    text = str(value or "")
    if re.fullmatch(r"\d{8}", text):
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return None


_AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def _age_years(value: Any) -> float | None:
    match = re.fullmatch(r"(\d{3})([DWMY])", str(value or ""))
    return round(int(match[1]) * _AGE_UNITS[match[2]], 3) if match else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def row(
    image: DeidentifiedImage, batch: str, uri: str | None, member: str | None
) -> dict[str, Any]:
    """One image's row, from the de-identified metadata only."""
    m = image.metadata
    return {
        "patient": m.patient,
        "study_uid": m.study,
        "series_uid": m.series,
        "sop_uid": m.sop,
        "sop_class_uid": m.sop_class,
        "modality": m.modality,
        "body_part": m.body_part,
        "study_date": _date(m.study_date),
        "patient_age": m.patient_age,
        "patient_age_years": _age_years(m.patient_age),
        "patient_sex": m.patient_sex,
        "rows": _int(m.rows),
        "columns": _int(m.columns),
        "manufacturer_model": m.manufacturer_model,
        "gcs_uri": uri,
        "archive_member": member,
        "batch": batch,
        "header": json.loads(m.header) if m.header else None,
    }


def parts(rows: list[dict[str, Any]], limit: int = PART_BYTES) -> Iterator[list[dict[str, Any]]]:
    """Rows in order, grouped so each group's newline-delimited JSON stays under `limit`."""
    group: list[dict[str, Any]] = []
    size = 0
    for r in rows:
        n = len(json.dumps(r)) + 1
        if group and size + n > limit:
            yield group
            group, size = [], 0
        group.append(r)
        size += n
    if group:
        yield group


def chain(table_id: str, series: str) -> str:
    """The stem of a series' job ids in a table: `<stem>_0`, `<stem>_1`, ... in order."""
    digest = hashlib.sha256(f"{table_id}\0{series}".encode()).hexdigest()[:40]
    return f"sendit_{digest}"


def insert_statement(table_id: str) -> str:
    """Insert the rows of @rows (one series, @series) that the table does not hold yet."""
    columns = ", ".join(name for name, _, _ in COLUMNS)
    values = ", ".join(
        f"PARSE_JSON(r.{name})" if kind == "JSON" else f"r.{name}" for name, kind, _ in COLUMNS
    )
    return (
        f"INSERT INTO `{table_id}` ({columns})\n"
        f"SELECT {values} FROM UNNEST(@rows) AS r\n"
        f"WHERE NOT EXISTS (SELECT 1 FROM `{table_id}` AS t\n"
        "  WHERE t.series_uid = @series AND t.sop_uid = r.sop_uid)"
    )


def parameters(series: str, rows: list[dict[str, Any]]) -> list[bigquery.ScalarQueryParameter]:
    """The statement's parameters: the rows typed as the table's columns (JSON as text)."""

    def field(name: str, kind: str, value: Any) -> bigquery.ScalarQueryParameter:
        if kind == "JSON":
            kind, value = "STRING", None if value is None else json.dumps(value)
        return bigquery.ScalarQueryParameter(name, kind, value)

    structs = [
        bigquery.StructQueryParameter(None, *(field(n, k, r.get(n)) for n, k, _ in COLUMNS))
        for r in rows
    ]
    return [
        bigquery.ArrayQueryParameter("rows", "STRUCT", structs),
        bigquery.ScalarQueryParameter("series", "STRING", series),
    ]


def api_endpoint(config: BigQuery) -> str | None:
    """The destination's endpoint, else $BIGQUERY_EMULATOR_HOST (an emulator), else Google's."""
    endpoint = config.endpoint or os.environ.get("BIGQUERY_EMULATOR_HOST")
    if endpoint and "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    return endpoint


def make_client(config: BigQuery) -> bigquery.Client:
    endpoint = api_endpoint(config)
    if endpoint:
        return bigquery.Client(
            project=config.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
            location=config.location,
        )
    return bigquery.Client(project=config.project, location=config.location)


class BigQuerySink:
    def __init__(self, config: BigQuery, client: bigquery.Client | None = None) -> None:
        self.config = config
        self.client = client or make_client(config)

    def preflight(self) -> None:
        """Dataset and table exist (created when absent) with every column: before any load."""
        c = self.config
        try:
            dataset = bigquery.Dataset(f"{c.project}.{c.dataset}")
            dataset.location = c.location
            self.client.create_dataset(dataset, exists_ok=True, timeout=60)
            table = bigquery.Table(c.table_id, schema=schema())
            table.clustering_fields = CLUSTERING
            table.description = "Sendit: one row of de-identified metadata per image"
            self.client.create_table(table, exists_ok=True, timeout=60)
            existing = self.client.get_table(c.table_id, timeout=60)
            missing = [f for f in schema() if f.name not in {e.name for e in existing.schema}]
            if missing:  # additive change: new nullable columns at the end
                existing.schema = [*existing.schema, *missing]
                self.client.update_table(existing, ["schema"], timeout=60)
                log.info("added %d new columns to the BigQuery table", len(missing))
        except gexc.Forbidden:
            raise DestinationError(
                f"no permission on BigQuery table {c.table_id!r} (needs dataset and table"
                " create/get/update and jobs.create)"
            ) from None
        except gexc.NotFound:
            raise DestinationError(f"BigQuery project {c.project!r} was not found") from None
        except Exception as exc:
            raise preflight_error(exc, f"BigQuery table {c.table_id!r}") from None

    def load(self, series: str, rows: list[dict[str, Any]]) -> list[str]:
        """Insert the series' rows the table lacks; returns the ids of the statements run."""
        stem = chain(self.config.table_id, series)
        ids = (f"{stem}_{n}" for n in count())
        return [self._insert(ids, series, part) for part in parts(rows)]

    def _insert(self, ids: Iterator[str], series: str, rows: list[dict[str, Any]]) -> str:
        """Run the statement under the first free id of the chain, after every job before it
        in the chain is done; a statement of ours that fails is run again under the next."""
        config = bigquery.QueryJobConfig(query_parameters=parameters(series, rows))
        sql = insert_statement(self.config.table_id)
        failed = 0
        for jid in ids:
            try:
                job = self.client.query(
                    sql,
                    job_config=config,
                    job_id=jid,
                    location=self.config.location,
                    job_retry=None,  # a job id is run once; the chain's next id retries
                    timeout=120,
                )
            except gexc.Conflict:  # an earlier statement of the series: wait until it is done
                earlier = self.client.get_job(jid, location=self.config.location, timeout=60)
                _wait(earlier)
                continue
            if _wait(job):
                return jid
            failed += 1
            log.warning("a BigQuery statement failed (%s); trying again", job.error_result)
            if failed == ATTEMPTS:
                break
        raise DeliveryError(f"BigQuery inserts into {self.config.table_id!r} failed {failed} times")


def _wait(job: Any) -> bool:
    """Wait for a job; True if it succeeded. A job that failed changed nothing."""
    try:
        job.result(timeout=600)
        return True
    except gexc.GoogleAPICallError:
        if job.state == "DONE" and job.error_result:
            return False
        raise

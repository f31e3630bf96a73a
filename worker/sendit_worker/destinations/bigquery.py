"""BigQuery: one row of safe metadata per image, loaded exactly once.

Rows go in by load jobs whose job id is derived from the batch, the table and the series'
images. BigQuery refuses a second job with the same id (409), so a retry or a rerun after a
crash finds the earlier job instead of loading the rows again; a load job is atomic, so a job
that failed loaded nothing and the next attempt (a derived id) may run. Load jobs are free and
count against a per-table daily quota (1,500): one job per series, split in parts of at most
4 MiB of rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
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
PART_BYTES = 4 * 1024 * 1024  # below the client's 5 MiB multipart limit: one request per part
ATTEMPTS = 5


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


def job_id(batch: str, table_id: str, rows: list[dict[str, Any]]) -> str:
    """Deterministic: the same rows for the same table and batch always get the same id."""
    h = hashlib.sha256()
    for part in (batch, table_id, *sorted(json.dumps(r, sort_keys=True) for r in rows)):
        h.update(part.encode())
        h.update(b"\0")
    return f"sendit_{h.hexdigest()[:40]}"


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

    def load(self, batch: str, rows: list[dict[str, Any]]) -> list[str]:
        """Load rows exactly once; returns the ids of the jobs that hold them."""
        return [self._load_part(job_id(batch, self.config.table_id, p), p) for p in parts(rows)]

    def _load_part(self, base_id: str, rows: list[dict[str, Any]]) -> str:
        config = bigquery.LoadJobConfig(
            schema=schema(),
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            schema_update_options=[bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION],
        )
        for attempt in range(ATTEMPTS):
            jid = base_id if attempt == 0 else f"{base_id}_r{attempt}"
            try:
                job = self.client.load_table_from_json(
                    rows, self.config.table_id, job_id=jid, job_config=config, timeout=120
                )
            except gexc.Conflict:  # this id ran before (a retry, or an earlier run)
                job = self.client.get_job(jid, location=self.config.location, timeout=60)
            try:
                job.result(timeout=600)
                return jid
            except gexc.GoogleAPICallError:
                if job.state == "DONE" and job.error_result:
                    # A failed load job wrote nothing: the next derived id may run.
                    log.warning(
                        "a BigQuery load job failed (%s); trying again",
                        job.error_result.get("reason"),
                    )
                    continue
                raise
        raise DeliveryError(f"BigQuery loads into {self.config.table_id!r} failed {ATTEMPTS} times")

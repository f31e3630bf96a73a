"""BigQuery rows exactly once: Sendit's statement next to a plain INSERT and a MERGE (not a test).

Starts bqemulator (tests/emulators.py: BigQuery's REST API on DuckDB) and delivers the same
synthetic series (rows of Sendit's table, a DICOM JSON header of about 4 KB each) three ways,
each into a fresh table, then delivers them all again (a rerun):

  insert  INSERT ... SELECT FROM UNNEST(@rows): no check (the baseline; a rerun duplicates)
  sendit  BigQuerySink.load: INSERT ... WHERE NOT EXISTS, job ids chained per series
  merge   MERGE ... WHEN NOT MATCHED THEN INSERT

    python bench/bigquery.py [--series 40] [--images 20]

It prints each way's time, its ratio to the baseline, and the rows the table holds after the
rerun. On the emulator only the relative cost of the check shows; BigQuery's own limits (a
MERGE runs 2 at a time per table, an INSERT 10) are in docs/destinations.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from google.cloud import bigquery

from sendit_api.spec import BigQuery
from sendit_worker.destinations import bigquery as bq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from emulators import BigQueryEmulator


def series_rows(series: int, images: int) -> list[tuple[str, list[dict[str, Any]]]]:
    header = {f"0009{n:04X}": {"vr": "LO", "Value": ["x" * 40]} for n in range(80)}
    out = []
    for s in range(series):
        uid = f"1.2.826.0.1.{s}"
        rows = [
            {"series_uid": uid, "sop_uid": f"{uid}.{i}", "modality": "CT", "rows": 512}
            | {"study_date": "2020-01-02", "header": header, "batch": "bench"}
            for i in range(images)
        ]
        out.append((uid, rows))
    return out


def statement(kind: str, table: str) -> str:
    names = ", ".join(n for n, _, _ in bq.COLUMNS)
    values = ", ".join(f"PARSE_JSON(r.{n})" if k == "JSON" else f"r.{n}" for n, k, _ in bq.COLUMNS)
    if kind == "insert":
        return f"INSERT INTO `{table}` ({names}) SELECT {values} FROM UNNEST(@rows) AS r"
    return (
        f"MERGE `{table}` AS t USING UNNEST(@rows) AS r"
        " ON t.series_uid = @series AND t.sop_uid = r.sop_uid"
        f" WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
    )


def deliver(kind: str, sink: bq.BigQuerySink, data: list) -> float:
    began = time.perf_counter()
    for uid, rows in data:
        if kind == "sendit":
            sink.load(uid, rows)
            continue
        config = bigquery.QueryJobConfig(query_parameters=bq.parameters(uid, rows))
        sink.client.query(statement(kind, sink.config.table_id), job_config=config).result()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    data = series_rows(args.series, args.images)
    with tempfile.TemporaryDirectory(prefix="bench-bq-") as home:
        emulator = BigQueryEmulator(Path(home))
        try:
            print(f"{args.series} series of {args.images} images, then again (a rerun)")
            baseline = None
            for kind in ("insert", "sendit", "merge"):
                config = BigQuery("bench", "bench", kind, "US", emulator.url)
                sink = bq.BigQuerySink(config)
                sink.preflight()
                first = deliver(kind, sink, data)
                again = deliver(kind, sink, data)
                baseline = baseline or first
                held = len(emulator.rows("bench", "bench", kind))
                print(
                    f"{kind:7} first {first:6.2f}s ({first / baseline:4.2f}x insert)"
                    f"  rerun {again:6.2f}s  rows held {held} of {args.series * args.images}"
                )
        finally:
            emulator.proc.terminate()
            emulator.proc.wait(10)


if __name__ == "__main__":
    main()

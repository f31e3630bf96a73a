"""The contract holds to the CRDs, and the two sides to the contract:

- the typed spec mirrors the schema field for field, so no field of a manifest is dropped;
- every destination kind the schema allows is delivered by a real sink (a batch naming only it
  reaches `sent`), so none can reach Sent with nothing sent;
- phases, shard stages, job stages and counts are the CRD's own;
- the operator's entry point loads no DICOM, de-identification or Google code, and neither
  side imports the other.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from batches import batch
from dicomdata import KEY

from sendit_api import spec as typed
from sendit_api.crd import node
from sendit_api.status import (
    FAILED_REASONS,
    JOB_STAGES,
    PHASES,
    SHARD_STAGES,
    WITHHELD_REASONS,
    Counts,
    PlanReport,
)
from sendit_worker.cli.sample import make_sample
from sendit_worker.report import Report
from sendit_worker.run.batch import run_batch
from sendit_worker.run.placement import LocalPlacement

ROOT = Path(__file__).resolve().parents[1]


def _inner(kind):
    """The dataclass a field holds, if any (through Optional and tuple)."""
    for arg in (kind, *typing.get_args(kind)):
        if dataclasses.is_dataclass(arg):
            return arg
        for inner in typing.get_args(arg):
            if dataclasses.is_dataclass(inner):
                return inner
    return None


def _mirrors(cls, schema: dict, where: str) -> list[str]:
    problems = []
    hints = typing.get_type_hints(cls)
    fields = {typed.schema_key(f): f for f in dataclasses.fields(cls)}
    if set(fields) != set(schema["properties"]):
        problems.append(f"{where}: {sorted(set(fields) ^ set(schema['properties']))}")
    for name, f in fields.items():
        inner = _inner(hints[f.name])
        sub = schema["properties"].get(name, {})
        sub = sub.get("items", sub)
        if inner is not None and "properties" in sub:
            problems += _mirrors(inner, sub, f"{where}.{name}")
    return problems


def test_the_typed_spec_mirrors_the_schema_field_for_field():
    assert _mirrors(typed.BatchSpec, node("spec"), "spec") == []


def test_phases_stages_and_counts_are_the_crds():
    status = node("status")["properties"]
    assert list(PHASES) == status["phase"]["enum"]
    shard = status["shards"]["additionalProperties"]["properties"]
    assert list(SHARD_STAGES) == shard["stage"]["enum"]
    assert list(JOB_STAGES) == status["jobs"]["items"]["properties"]["stage"]["enum"]
    counts = [f.name for f in dataclasses.fields(Counts)]
    assert counts == list(status["counts"]["properties"])
    assert set(counts) == set(shard) - {
        "stage",
        "outputs",
        "reasons",
        "deliverySeconds",
        "updated",
        "headerReads",
        "quarantined",
    }
    for reasons in (shard["reasons"], status["reasons"]):
        assert list(WITHHELD_REASONS) == list(reasons["properties"]["withheld"]["properties"])
        assert list(FAILED_REASONS) == list(reasons["properties"]["failed"]["properties"])
    report = [f.name for f in dataclasses.fields(Report) if f.type == "int"]
    # The run's own: reads of the plan stage, images cleaned (the local report's count; the
    # batch's status does not carry it yet), and images kept in quarantine.
    assert report == [*counts, "header_reads", "pixels_cleaned", "quarantined"]
    assert "quarantined" in shard and set(status["quarantine"]["properties"]) == {
        "images",
        "folder",
    }
    assert list(PlanReport().as_status()) == list(status["plan"]["properties"])


@pytest.fixture
def deliver_one_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())
    make_sample(tmp_path / "in" / "ST-1", patients=1, files=4)

    def run(kind: str, settings: dict) -> Report:
        b = batch(
            name=f"only-{kind}",
            source={"volume": {"hostPath": {"path": str(tmp_path / "in")}}, "folders": ["ST-1"]},
            destinations={kind: settings},
        )
        return run_batch(b, LocalPlacement(tmp_path), _Quiet(), deliver=True, workers=1)

    return run


class _Quiet:
    def stage(self, report) -> None: ...

    def advance(self, report, images: int) -> None: ...


@pytest.mark.emulators
def test_every_destination_kind_in_the_schema_has_a_sink(
    deliver_one_kind, tmp_path, fake_gcs, pubsub_emulator, bigquery_emulator, orthanc, monkeypatch
):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    fake_gcs.bucket("only-gcs")
    settings = {
        "local": {"path": str(tmp_path / "out")},
        "gcs": {"bucket": "only-gcs"},
        "bigquery": {
            "project": "p",
            "dataset": "d",
            "table": "t",
            "endpoint": bigquery_emulator.url,
        },
        "pubsub": {"topic": pubsub_emulator.topic("sendit-test", "only-pubsub")},
        "pacs": {"dicomweb": {"url": orthanc.dicomweb}},
    }
    kinds = list(node("spec", "destinations")["properties"])
    assert sorted(kinds) == sorted(settings), "a destination kind without a test here"
    for kind in kinds:
        report = deliver_one_kind(kind, settings[kind])
        assert report.anonymized > 0 and report.sent == report.anonymized, kind


def test_the_operator_loads_no_worker_code():
    code = (
        "import sys, sendit_operator.main, sendit_operator.handlers;"
        "heavy = ('pydicom', 'deid', 'numpy', 'google.cloud', 'sendit_worker');"
        "print([m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("operator/sendit_operator", "sendit_worker"), ("worker/sendit_worker", "sendit_operator")],
)
def test_neither_side_imports_the_other(package, forbidden):
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / package).rglob("*.py")
        if forbidden in path.read_text()
    ]
    assert offenders == []

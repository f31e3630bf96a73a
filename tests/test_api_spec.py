"""A SenditBatch is parsed once, by the CRD's own schema, into typed frozen objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sendit_api.crd import ManifestError, crd
from sendit_api.errors import Permanent
from sendit_api.spec import Gcs, parse_batch
from sendit_worker.run.placement import LocalPlacement

MINIMAL = {
    "apiVersion": "sendit.dev/v1alpha1",
    "kind": "SenditBatch",
    "metadata": {"name": "b1"},
    "spec": {"source": {"folders": ["in"]}},
}


def test_defaults_come_from_the_crd() -> None:
    spec = parse_batch(MINIMAL).spec
    assert (spec.send, spec.parallelism, spec.deidentify.profile) == ("auto", 1, "basic")
    assert (spec.backoff_limit, spec.cleanup.source, spec.deidentify.pixels.filters) == (
        3,
        "keep",
        (),
    )
    gcs = parse_batch(
        {**MINIMAL, "spec": {**MINIMAL["spec"], "destinations": {"gcs": {"bucket": "bkt"}}}}
    )
    assert gcs.spec.destinations.gcs == Gcs("bkt", "", "dicom", 8, "crc32c")


def test_the_parsed_batch_is_frozen() -> None:
    batch = parse_batch(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.spec.send = "manual"  # type: ignore[misc]


def test_host_path_is_the_local_root() -> None:
    manifest = {
        **MINIMAL,
        "spec": {"source": {"volume": {"hostPath": {"path": "/data"}}, "folders": ["a", "b"]}},
    }
    source = parse_batch(manifest).spec.source
    assert LocalPlacement(Path("/x")).folders(source) == [Path("/data/a"), Path("/data/b")]
    assert LocalPlacement(Path("/base")).folders(parse_batch(MINIMAL).spec.source) == [
        Path("/base/in")
    ]


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"source": {"folders": []}}, "spec/source/folders"),
        ({"source": {"folders": ["a"]}, "send": "sometimes"}, "spec/send"),
        ({"source": {"folders": ["a"]}, "parallelism": 0}, "spec/parallelism"),
        ({"source": {"folders": ["a"]}, "destinations": {"ftp": {}}}, "spec/destinations"),
        (
            {"source": {"folders": ["a"]}, "destinations": {"pacs": {"dimse": {"port": 1}}}},
            "spec/destinations/pacs/dimse",
        ),
        ({}, "spec"),
    ],
)
def test_invalid_manifests_say_where(spec: dict, where: str) -> None:
    with pytest.raises(ManifestError, match=f"at {where}"):
        parse_batch({**MINIMAL, "spec": spec})


def test_wrong_kind_is_refused_as_permanent() -> None:
    with pytest.raises(Permanent, match="SenditBatch"):
        parse_batch({**MINIMAL, "kind": "Pod"})


def test_manifest_file_paths_are_relative_to_the_manifest(tmp_path: Path) -> None:
    batch = parse_batch(
        {**MINIMAL, "spec": {**MINIMAL["spec"], "destinations": {"local": {"path": "out"}}}}
    )
    placement = LocalPlacement(tmp_path)
    assert placement.folders(batch.spec.source) == [tmp_path / "in"]
    assert placement.workspace(batch) == tmp_path / "out"


def test_the_crd_names_the_resource_as_designed() -> None:
    names = crd()["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "SenditBatch",
        "senditbatches",
        ["sb"],
    )


def test_error_messages_never_quote_manifest_values() -> None:
    with pytest.raises(ManifestError) as err:
        parse_batch({**MINIMAL, "spec": {"source": {"folders": ["Doe_John"]}, "send": "Doe_Jane"}})
    assert "Doe" not in str(err.value)
    assert "enum" in str(err.value)


def test_a_topic_without_a_project_is_refused_where_no_cel_rule_runs() -> None:
    pubsub = parse_batch(
        {**MINIMAL, "spec": {**MINIMAL["spec"], "destinations": {"pubsub": {"topic": "t"}}}}
    ).spec.destinations.pubsub
    with pytest.raises(Permanent, match=r"pubsub\.project"):
        _ = pubsub.topic_path

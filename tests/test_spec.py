"""Manifests are validated and defaulted by the CRD's own schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendit_worker.errors import ConfigError
from sendit_worker.spec import crd, load, load_file

MINIMAL = {
    "apiVersion": "sendit.dev/v1alpha1",
    "kind": "SenditBatch",
    "metadata": {"name": "b1"},
    "spec": {"source": {"folders": ["in"]}},
}


def test_defaults_come_from_the_crd() -> None:
    batch = load(MINIMAL, Path("/base"))
    assert batch.send == "auto"
    assert batch.spec["parallelism"] == 1
    assert batch.spec["deidentify"]["profile"] == "basic"
    assert batch.folders() == [Path("/base/in")]


def test_host_path_is_the_local_root() -> None:
    manifest = {
        **MINIMAL,
        "spec": {"source": {"volume": {"hostPath": {"path": "/data"}}, "folders": ["a", "b"]}},
    }
    assert load(manifest, Path("/x")).folders() == [Path("/data/a"), Path("/data/b")]


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"source": {"folders": []}}, "spec/source/folders"),
        ({"source": {"folders": ["a"]}, "send": "sometimes"}, "spec/send"),
        ({"source": {"folders": ["a"]}, "parallelism": 0}, "spec/parallelism"),
        ({}, "spec"),
    ],
)
def test_invalid_manifests_say_where(spec: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=f"at {where}"):
        load({**MINIMAL, "spec": spec}, Path("."))


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="SenditBatch"):
        load({**MINIMAL, "kind": "Pod"}, Path("."))


def test_manifest_file_paths_are_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        "apiVersion: sendit.dev/v1alpha1\nkind: SenditBatch\nmetadata: {name: x}\n"
        "spec:\n  source: {folders: [in]}\n  destinations: {local: {path: out}}\n"
    )
    batch = load_file(tmp_path / "b.yaml")
    assert batch.folders() == [tmp_path / "in"]
    assert batch.output() == tmp_path / "out"


def test_the_crd_names_the_resource_as_designed() -> None:
    names = crd()["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "SenditBatch",
        "senditbatches",
        ["sb"],
    )


def test_error_messages_never_quote_manifest_values() -> None:
    with pytest.raises(ConfigError) as err:
        load(
            {**MINIMAL, "spec": {"source": {"folders": ["Doe_John"]}, "send": "Doe_Jane"}},
            Path("."),
        )
    assert "Doe" not in str(err.value)
    assert "enum" in str(err.value)

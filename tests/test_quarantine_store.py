"""The quarantine folder: names made of references only, a release's folder recognised with
its references, release names that are SenditBatch names."""

from __future__ import annotations

from pathlib import Path

import pytest
from batches import batch
from dicomdata import KEY

from sendit_api.errors import Permanent
from sendit_worker.quarantine.store import Quarantine, Record, name_of, ref_of, release_refs


@pytest.mark.parametrize("ref", ["0:K3JQ7XN2AB", "12:ABCDEFGHIJ", "?:ZZZZZZ2345"])
def test_a_reference_is_a_file_name_and_back(ref: str) -> None:
    name = name_of(ref)
    assert ":" not in name and "?" not in name and "/" not in name
    assert ref_of(name) == ref


def test_a_release_folder_keeps_the_references_of_its_images(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q", Record.of(batch(), tmp_path, KEY))
    (q.root / "releases" / "b-release-1").mkdir(parents=True)
    (q.root / "quarantine.json").write_bytes(q.record.encoded())
    refs = release_refs(q.root / "releases" / "b-release-1")
    assert refs is not None and refs(q.root / "releases" / "b-release-1" / "0-K3JQ7XN2AB.dcm") == (
        "0:K3JQ7XN2AB"
    )
    assert release_refs(tmp_path / "releases" / "elsewhere") is None  # not in a quarantine


def test_release_names_are_batch_names_of_their_own(tmp_path: Path) -> None:
    long = "x" * 48
    q = Quarantine(tmp_path / "q", Record.of(batch(long), tmp_path, KEY))
    name = q.new_release()
    assert name == "x" * 40 + "-release-1" and len(name) <= 50
    (q.root / "releases" / name).mkdir(parents=True)
    (q.root / "releases" / f"{name}.deid").write_text("")
    assert q.new_release().endswith("-release-2")


def test_a_folder_without_its_record_is_no_quarantine(tmp_path: Path) -> None:
    with pytest.raises(Permanent, match="not a quarantine"):
        Quarantine.open(tmp_path)

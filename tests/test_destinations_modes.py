"""Send modes without a network: the source is removed only after a complete, verified send."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendit_worker import staging
from sendit_worker.destinations import modes
from sendit_worker.destinations.errors import DeliveryError
from sendit_worker.spec import load


def _batch(tmp_path: Path, cleanup: str):
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "x.dcm").write_bytes(b"x")
    manifest = {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditBatch",
        "metadata": {"name": "m"},
        "spec": {
            "source": {"volume": {"hostPath": {"path": "src"}}, "folders": ["a"]},
            "destinations": {"gcs": {"bucket": "bkt"}},
            "cleanup": {"source": cleanup},
        },
    }
    return load(manifest, tmp_path)


COMPLETE = {"discovered": 3, "anonymized": 3, "sent": 3, "failed": 0, "withheld": 0}


def test_defaults_come_from_the_crd(tmp_path: Path) -> None:
    batch = load(
        {
            "apiVersion": "sendit.dev/v1alpha1",
            "kind": "SenditBatch",
            "spec": {"source": {"folders": ["a"]}, "destinations": {"gcs": {"bucket": "bkt"}}},
        },
        tmp_path,
    )
    assert batch.spec["cleanup"] == {"source": "keep"}
    gcs = modes.destinations(batch).gcs
    assert (gcs.layout, gcs.prefix, gcs.checksum) == ("dicom", "", "crc32c")


def test_keep_is_the_default_and_never_deletes(tmp_path: Path) -> None:
    batch = _batch(tmp_path, "keep")
    modes.cleanup_source(batch, COMPLETE)
    assert (tmp_path / "src" / "a" / "x.dcm").exists()


@pytest.mark.parametrize(
    "counts",
    [
        {**COMPLETE, "sent": 2},
        {**COMPLETE, "failed": 1},
        {**COMPLETE, "withheld": 1, "anonymized": 2, "sent": 2},
    ],
)
def test_delete_waits_for_a_complete_send(tmp_path: Path, counts) -> None:
    batch = _batch(tmp_path, "delete")
    modes.cleanup_source(batch, counts)
    assert (tmp_path / "src" / "a" / "x.dcm").exists()


def test_delete_after_a_complete_send(tmp_path: Path) -> None:
    batch = _batch(tmp_path, "delete")
    modes.cleanup_source(batch, COMPLETE)
    assert not (tmp_path / "src" / "a").exists()


def test_send_without_a_staged_batch_says_so(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="no staged batch"):
        modes.send(_batch(tmp_path, "keep"), tmp_path / "nothing")


def test_a_sent_batch_is_not_sent_again(tmp_path: Path) -> None:
    staging.write_state(tmp_path / "st", staging.SENT, "m", {"sent": 3, "future_count": 1})
    code, report = modes.send(_batch(tmp_path, "keep"), tmp_path / "st")
    assert code == 0 and report.sent == 3

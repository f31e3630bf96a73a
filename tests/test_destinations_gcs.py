"""GCS against the real fake-gcs-server: verified, idempotent, retried uploads."""

from __future__ import annotations

from pathlib import Path

import pytest
from batches import destinations

from sendit_api import exits
from sendit_api.errors import Permanent
from sendit_worker.cli.main import main
from sendit_worker.destinations import gcs as gcs_module
from sendit_worker.destinations.errors import DestinationError, DestinationUnavailable
from sendit_worker.destinations.gcs import GcsSink, local_checksum
from sendit_worker.destinations.layouts import Artifact

pytestmark = pytest.mark.emulators


def _artifact(tmp_path: Path, name: str, data: bytes) -> Artifact:
    path = tmp_path / name.replace("/", "_")
    path.write_bytes(data)
    return Artifact(name, path, "application/dicom", ("1",))


def test_upload_is_verified_and_a_second_upload_is_skipped(fake_gcs, tmp_path: Path) -> None:
    bucket = fake_gcs.bucket("gcs-idem")
    sink = GcsSink(destinations(gcs={"bucket": "gcs-idem"}).gcs)
    sink.preflight()
    a = _artifact(tmp_path, "p/s/1.dcm", b"x" * 1000)
    first = sink.upload(a, "b1")
    assert not first.already_present
    blob = bucket.get_blob("p/s/1.dcm")
    assert blob.crc32c == local_checksum(a.path, "crc32c") == first.checksum
    assert blob.metadata == {"sendit-batch": "b1"}
    generation = blob.generation
    second = sink.upload(a, "b1")
    assert second.already_present
    assert bucket.get_blob("p/s/1.dcm").generation == generation  # not written again


def test_different_bytes_replace_the_object(fake_gcs, tmp_path: Path) -> None:
    bucket = fake_gcs.bucket("gcs-replace")
    sink = GcsSink(destinations(gcs={"bucket": "gcs-replace", "checksum": "md5"}).gcs)
    sink.upload(_artifact(tmp_path, "o.dcm", b"old"), "b")
    (tmp_path / "new").mkdir()
    result = sink.upload(_artifact(tmp_path / "new", "o.dcm", b"new bytes"), "b")
    assert not result.already_present
    assert bucket.blob("o.dcm").download_as_bytes() == b"new bytes"


def test_large_object_goes_up_resumable_and_verified(fake_gcs, tmp_path: Path) -> None:
    bucket = fake_gcs.bucket("gcs-large")
    data = bytes(range(256)) * (gcs_module.CHUNK // 256 + 4096)  # > one chunk
    sink = GcsSink(destinations(gcs={"bucket": "gcs-large"}).gcs)
    result = sink.upload(_artifact(tmp_path, "big.tar.gz", data), "b")
    assert result.size == len(data)
    assert bucket.get_blob("big.tar.gz").size == len(data)


def test_missing_bucket_is_one_clear_error_naming_it(fake_gcs) -> None:
    with pytest.raises(DestinationError, match="GCS bucket 'no-such-bucket' does not exist"):
        GcsSink(destinations(gcs={"bucket": "no-such-bucket"}).gcs).preflight()


def test_a_service_down_at_preflight_is_transient_not_a_configuration_error(
    fake_gcs, fault_proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: a 503 from Google during preflight was wrapped as a configuration error (exit 2),
    which the Job's podFailurePolicy treats as permanent. It is transient: exit 1, retried."""
    fake_gcs.bucket("gcs-down")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fault_proxy.url)
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", "preflight-test-key-0123456789")
    monkeypatch.setattr(gcs_module, "PREFLIGHT_SECONDS", 1.0)
    monkeypatch.setattr(gcs_module, "RETRY", gcs_module.RETRY.with_delay(0.05, 0.2))
    fault_proxy.fail(503, every=1, reads=True)
    with pytest.raises(
        DestinationUnavailable, match="GCS bucket 'gcs-down' is not reachable"
    ) as err:
        GcsSink(destinations(gcs={"bucket": "gcs-down"}).gcs).preflight()
    assert err.value.retry_helps and not isinstance(err.value, Permanent)
    (tmp_path / "in").mkdir()
    manifest = tmp_path / "b.yaml"
    manifest.write_text(
        "apiVersion: sendit.dev/v1alpha1\nkind: SenditBatch\nmetadata: {name: down}\n"
        "spec:\n  source: {folders: [in]}\n  destinations: {gcs: {bucket: gcs-down}}\n"
    )
    assert main(["run", "-f", str(manifest), "--workers", "1"]) == exits.INCOMPLETE
    fault_proxy.clear()
    with pytest.raises(DestinationError, match="'no-such-bucket' does not exist"):
        GcsSink(destinations(gcs={"bucket": "no-such-bucket"}).gcs).preflight()


def test_503s_and_timeouts_are_retried_and_nothing_is_doubled(
    fake_gcs, fault_proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = fake_gcs.bucket("gcs-faults")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fault_proxy.url)
    monkeypatch.setattr(gcs_module, "TIMEOUT", (2, 1.0))
    monkeypatch.setattr(gcs_module, "RETRY", gcs_module.RETRY.with_delay(0.05, 0.2))
    sink = GcsSink(destinations(gcs={"bucket": "gcs-faults"}).gcs)
    fault_proxy.fail(503, every=3)
    fault_proxy.delay(1.5, every=5)  # the upload lands, the client times out and retries
    artifacts = [_artifact(tmp_path, f"f/{n}.dcm", bytes([n]) * 5000) for n in range(12)]
    results = [sink.upload(a, "b") for a in artifacts]
    assert "503" in fault_proxy.injected and "delay" in fault_proxy.injected
    assert sorted(r.name for r in results) == sorted(a.name for a in artifacts)
    stored = {b.name: b for b in bucket.list_blobs(prefix="f/")}
    assert set(stored) == {a.name for a in artifacts}
    for a in artifacts:
        assert stored[a.name].crc32c == local_checksum(a.path, "crc32c")

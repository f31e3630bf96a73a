"""Google Cloud Storage: verified, idempotent, retried uploads.

An upload is conditional on the object being absent (ifGenerationMatch=0), so the common case
is one request. If the object exists, its checksum decides: the same bytes are already there
(nothing to do), other bytes are replaced, conditionally on the generation we saw. Every
upload is verified by comparing the stored object's checksum with the local one. Transient
failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff;
objects above 8 MiB go up as resumable uploads in chunks.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from requests.adapters import HTTPAdapter

from sendit_api.spec import Gcs

from .errors import DeliveryError, DestinationError
from .google_errors import preflight_error
from .layouts import Artifact

log = logging.getLogger("sendit.gcs")

CHUNK = 8 * 1024 * 1024  # resumable upload chunk size (a multiple of 256 KiB)
TIMEOUT = (10, 120)  # connect, read (seconds)
PREFLIGHT_SECONDS = 60.0  # how long preflight retries a transient error before it gives up
RETRY: Retry = DEFAULT_RETRY.with_deadline(600).with_delay(initial=0.5, maximum=30)


@dataclass(frozen=True)
class Uploaded:
    name: str
    size: int
    checksum: str
    already_present: bool


def local_checksum(path: Path, kind: str) -> str:
    """The object checksum as GCS reports it: base64 of crc32c (big-endian) or md5."""
    h: Any = google_crc32c.Checksum() if kind == "crc32c" else hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


def make_client(concurrency: int) -> storage.Client:
    """ADC or $STORAGE_EMULATOR_HOST; one connection per concurrent upload."""
    client = storage.Client()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, concurrency))
    client._http.mount("https://", adapter)
    client._http.mount("http://", adapter)
    return client


class GcsSink:
    def __init__(self, config: Gcs, client: storage.Client | None = None) -> None:
        self.config = config
        self.client = client or make_client(config.concurrency)
        self.bucket = self.client.bucket(config.bucket)

    def preflight(self) -> None:
        """The bucket exists and we may create and read objects in it: one clear error naming
        it, before any upload. (Reading the bucket itself is not required: a role with object
        permissions only is enough, checked with testIamPermissions.)"""
        what = f"GCS bucket {self.config.bucket!r}"
        try:
            self.bucket.reload(timeout=TIMEOUT, retry=RETRY.with_deadline(PREFLIGHT_SECONDS))
        except gexc.Forbidden:
            pass  # no storage.buckets.get: what matters is below
        except Exception as exc:
            raise preflight_error(exc, what) from None
        needed = ["storage.objects.create", "storage.objects.get"]
        try:
            granted = self.bucket.test_iam_permissions(needed, timeout=TIMEOUT)
        except (gexc.NotFound, gexc.MethodNotImplemented, gexc.BadRequest):
            return  # emulators do not implement testIamPermissions; uploads will tell
        except Exception as exc:
            raise preflight_error(exc, what) from None
        missing = [p for p in needed if p not in granted]
        if missing:
            raise DestinationError(f"no permission on {what}: missing {', '.join(missing)}")

    def upload(self, artifact: Artifact, batch: str) -> Uploaded:
        checksum = local_checksum(artifact.path, self.config.checksum)
        size = artifact.path.stat().st_size
        blob = self._blob(artifact, checksum, batch)
        try:
            self._send(blob, artifact, generation=0)
        except gexc.PreconditionFailed:
            existing = self.bucket.get_blob(artifact.name, timeout=TIMEOUT, retry=RETRY)
            if existing is not None and self._stored(existing) == checksum:
                return Uploaded(artifact.name, size, checksum, already_present=True)
            log.warning("replacing an object whose bytes differ (a changed de-identification)")
            generation = existing.generation if existing is not None else 0
            blob = self._blob(artifact, checksum, batch)
            self._send(blob, artifact, generation=generation)
        stored = self._stored(blob)
        if stored != checksum:
            raise DeliveryError(
                f"GCS checksum mismatch after upload to bucket {self.config.bucket!r}"
            )
        return Uploaded(artifact.name, size, checksum, already_present=False)

    def _blob(self, artifact: Artifact, checksum: str, batch: str) -> storage.Blob:
        blob = self.bucket.blob(artifact.name, chunk_size=CHUNK)
        blob.content_type = artifact.content_type
        blob.metadata = {"sendit-batch": batch}
        # Sent with the upload, so the service itself rejects corrupted bytes.
        if self.config.checksum == "crc32c":
            blob.crc32c = checksum
        else:
            blob.md5_hash = checksum
        return blob

    def _send(self, blob: storage.Blob, artifact: Artifact, generation: int) -> None:
        blob.upload_from_filename(
            str(artifact.path),
            content_type=artifact.content_type,
            if_generation_match=generation,
            checksum=self.config.checksum,
            timeout=TIMEOUT,
            retry=RETRY,
        )

    def _stored(self, blob: storage.Blob) -> str | None:
        return blob.crc32c if self.config.checksum == "crc32c" else blob.md5_hash

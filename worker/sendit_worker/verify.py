"""Fail closed: the last check of a de-identified file, on the exact bytes about to be written.

The bytes must re-read as DICOM with file meta that matches the dataset, carry the
de-identification record, keep the pixel data they came with, and contain none of the source's
identifying values anywhere in the header (nested sequences included: the whole serialized
header is searched, not a walk of elements that might miss one).
"""

from __future__ import annotations

import io

import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from . import words

PIXEL_DATA = 0x7FE00010


class VerificationError(Exception):
    """The file must not leave. The message names the check, never a value."""


def verify(
    data: bytes,
    *,
    transfer_syntax: str,
    had_pixels: bool,
    identifying: frozenset[str],
) -> None:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        meta = ds.file_meta
        checks = {
            "transfer syntax changed": meta.TransferSyntaxUID != transfer_syntax,
            "file meta SOP Instance UID does not match": (
                meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID
            ),
            "file meta SOP Class UID does not match": (
                meta.MediaStorageSOPClassUID != ds.SOPClassUID
            ),
            "PatientIdentityRemoved is not YES": ds.get("PatientIdentityRemoved") != "YES",
            "pixel data lost": had_pixels and PIXEL_DATA not in ds,
        }
    except Exception as exc:  # whatever makes it unreadable, it does not leave
        raise VerificationError(f"output does not re-read ({type(exc).__name__})") from None
    for reason, failed in checks.items():
        if failed:
            raise VerificationError(reason)
    if identifying and next(
        words.spans(_header_bytes(data, ds).lower(), _encoded(identifying)), None
    ):
        raise VerificationError("an identifying value of the source is still in the header")


def _header_bytes(data: bytes, ds: pydicom.Dataset) -> bytes:
    """Everything but the pixel data value, as stored (re-encoded plainly when deflated)."""
    if ds.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        return _plain_header(ds)
    raw = ds.get_item(PIXEL_DATA)
    if raw is None:
        return data
    start, length = raw.value_tell, len(raw.value or b"")
    return data[:start] + data[start + length :]


def _plain_header(ds: pydicom.Dataset) -> bytes:
    header = ds.copy()
    header.pop(PIXEL_DATA, None)
    header.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    header.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _encoded(identifying: frozenset[str]) -> set[bytes]:
    encoded: set[bytes] = set()
    for value in identifying:
        for encoding in ("utf-8", "latin-1"):
            try:
                encoded.add(value.encode(encoding))
            except UnicodeEncodeError:
                continue
    return encoded

"""Fail closed: the last check of a de-identified file, on the exact bytes about to be written.

The bytes must re-read as DICOM with file meta that matches the dataset, carry the
de-identification record and keep the pixel data they came with. Then every element, at every
depth, by its type: text decoded with its character set goes through the scanner (the source's
identifying values in all their spellings, and the patterns); binary values other than the
pixel data are searched for the source's values as bytes; codes and numbers are not compared
with names (a PatientID "400" is no WindowCenter of 400). A dataset nested too deep to walk
fails.
"""

from __future__ import annotations

import io

import pydicom
from pydicom import Dataset

from ..dicom import BINARY_VRS, PIXEL_DATA, TEXT_VRS, element_vr
from ..header.deidentify import stored_texts
from ..header.profile import CODED
from ..header.scanner import Scanner

# Written by Sendit from pseudonyms (a pseudonym may hold a run of digits), or codes: the
# source's values are searched for there, not the patterns.
NO_PATTERNS = CODED | {0x00100010, 0x00100020, 0x00080050, 0x00120063}
BYTES_MIN = 4  # shorter values are searched for in decoded text only: in bytes they match noise


class VerificationError(Exception):
    """The file must not leave. The message names the check, never a value."""


def verify(data: bytes, *, transfer_syntax: str, had_pixels: bool, scanner: Scanner) -> None:
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
            "the preamble is not empty": any(data[:128]),
            "pixel data lost": had_pixels and PIXEL_DATA not in ds,
        }
    except Exception as exc:  # whatever makes it unreadable, it does not leave
        raise VerificationError(f"output does not re-read ({type(exc).__name__})") from None
    for reason, failed in checks.items():
        if failed:
            raise VerificationError(reason)
    needles = {n.encode() for n in scanner.needles if n.isascii() and len(n) >= BYTES_MIN}
    try:
        where = _leak(ds, scanner, needles)
    except RecursionError:
        raise VerificationError("the header is nested too deep to verify") from None
    if where is not None:
        raise VerificationError(f"identifying text remains in {where}")


def _leak(ds: Dataset, scanner: Scanner, needles: set[bytes]) -> str | None:
    """The tag (gggg,eeee) of the first element that still identifies someone, at any depth."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        vr = element_vr(ds, tag)
        if vr == "SQ":
            for item in ds[tag].value or []:
                found = _leak(item, scanner, needles)
                if found is not None:
                    return found
        elif vr in TEXT_VRS:
            patterns = int(tag) not in NO_PATTERNS
            if any(scanner.finds(v, patterns=patterns) for v in stored_texts(ds, tag)):
                return f"({tag.group:04X},{tag.element:04X})"
        elif vr in BINARY_VRS and int(tag) != PIXEL_DATA and needles:
            value = raw.value if isinstance(raw.value, bytes) else ds[tag].value
            if isinstance(value, bytes) and _bytes_leak(value.lower(), needles):
                return f"({tag.group:04X},{tag.element:04X})"
    return None


def _bytes_leak(header: bytes, needles: set[bytes]) -> bool:
    for needle in needles:
        start = header.find(needle)
        while start != -1:
            end = start + len(needle)
            if not (_alnum(header[start - 1 : start]) or _alnum(header[end : end + 1])):
                return True
            start = header.find(needle, start + 1)
    return False


def _alnum(char: bytes) -> bool:
    return bool(char) and char.isalnum()

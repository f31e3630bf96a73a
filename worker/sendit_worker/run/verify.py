"""Fail closed: the last check of a de-identified file, on the exact bytes about to be written.

The bytes must re-read as DICOM with file meta that matches the dataset, carry the
de-identification record and keep the pixel data they came with, described as the pixel stage
left it (a recipe that changed Rows or the photometric interpretation fails here); pixels that
were rewritten are decoded, frame by frame, and must be exactly what was written. Pixel data
nested in a sequence (an icon) is never examined for text, so it fails. Then every element, at
every depth, by its type: text decoded with its character set goes through the scanner (the source's
identifying values in all their spellings, and the patterns); binary values other than the
pixel data are searched for the source's values as bytes; codes and numbers are not compared
with names (a PatientID "400" is no WindowCenter of 400). A dataset nested too deep to walk
fails.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom
from pydicom import Dataset

from ..dicom import BINARY_VRS, PIXEL_DATA, PIXEL_TAGS, TEXT_VRS, element_vr
from ..header.deidentify import stored_texts
from ..header.profile import CODED, OWN_TEXTS
from ..header.scanner import Scanner
from ..pixels.codec import CodecError, Layout, digests

# Written by Sendit from pseudonyms (a pseudonym may hold a run of digits), or codes: the
# source's values are searched for there, not the patterns.
NO_PATTERNS = CODED | {0x00100010, 0x00100020, 0x00080050, 0x00120063}
BYTES_MIN = 4  # shorter values are searched for in decoded text only: in bytes they match noise


# The attributes that say what the pixel data holds: they and the pixels must agree.
PIXEL_DESCRIPTION = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
)


class VerificationError(Exception):
    """The file must not leave. The message names the check, never a value."""


@dataclass(frozen=True)
class PixelRecord:
    """What the pixel stage left: whether there were pixels, how the header described them,
    and each frame's digest when they were rewritten."""

    present: bool
    description: tuple[str, ...]
    digests: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, ds: Dataset, written: tuple[bytes, ...] = ()) -> PixelRecord:
        return cls(PIXEL_DATA in ds, _description(ds), written)


def verify(data: bytes, *, transfer_syntax: str, pixels: PixelRecord, scanner: Scanner) -> None:
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
            "pixel data lost": pixels.present and PIXEL_DATA not in ds,
            "the pixel description changed": pixels.present
            and _description(ds) != pixels.description,
        }
    except Exception as exc:  # whatever makes it unreadable, it does not leave
        raise VerificationError(f"output does not re-read ({type(exc).__name__})") from None
    for reason, failed in checks.items():
        if failed:
            raise VerificationError(reason)
    if pixels.digests:
        _check_written(ds, pixels.digests)
    needles = {n.encode() for n in scanner.needles if n.isascii() and len(n) >= BYTES_MIN}
    try:
        where = _leak(ds, scanner, needles)
    except RecursionError:
        raise VerificationError("the header is nested too deep to verify") from None
    if where is not None:
        raise VerificationError(f"identifying text remains in {where}")


def _check_written(ds: Dataset, written: tuple[bytes, ...]) -> None:
    try:
        decoded = digests(ds, Layout.of(ds))
    except (CodecError, ValueError) as exc:
        raise VerificationError(f"the rewritten pixels do not decode ({exc})") from None
    if decoded != list(written):
        raise VerificationError("the rewritten pixels do not decode to what was written")


def _description(ds: Dataset) -> tuple[str, ...]:
    return (
        *(str(ds.get(k, "")) for k in PIXEL_DESCRIPTION),
        str(ds.file_meta.get("TransferSyntaxUID", "")),
    )


def _leak(ds: Dataset, scanner: Scanner, needles: set[bytes], nested: bool = False) -> str | None:
    """The tag (gggg,eeee) of the first element that still identifies someone, at any depth
    (or nested pixel data)."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if nested and int(tag) in PIXEL_TAGS:
            raise VerificationError("pixel data nested in a sequence (never examined for text)")
        vr = element_vr(ds, tag)
        if vr == "SQ":
            for item in ds[tag].value or []:
                found = _leak(item, scanner, needles, nested=True)
                if found is not None:
                    return found
        elif vr in TEXT_VRS:
            patterns = int(tag) not in NO_PATTERNS
            texts = [v for v in stored_texts(ds, tag) if v not in OWN_TEXTS]
            if any(scanner.finds(v, patterns=patterns) for v in texts):
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

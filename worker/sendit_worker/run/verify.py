"""Fail closed: the last check of a de-identified file, on the exact bytes about to be written.

One pass over the bytes, element by element at every depth, without building a dataset (parsing
them into one, and converting its values, cost more than the rest of the check): the preamble
must be empty, the bytes must parse as DICOM with file meta that matches the dataset, and the
dataset must carry the de-identification record and keep the pixel data it came with,
described as the pixel stage left it (a recipe that changed Rows or the photometric
interpretation fails here); pixels that were rewritten are decoded, frame by frame, and must be
exactly what was written; pixel data nested in a sequence (an icon, never examined for text)
fails. Text (decoded with its character set, a sequence item's own included) goes through the
scanner: the source's identifying values in all their spellings, and the patterns; binary values
other than the pixel data are searched for them as bytes; codes and numbers are not compared
with names (a PatientID "400" is no WindowCenter of 400, a surname CHEST no BodyPartExamined).
Elements stored as UN, and private ones in implicit VR, are read with the VR the dictionaries
give them, as pydicom reads them. A dataset nested too deep to walk fails.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import pydicom
from pydicom import Dataset
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import private_dictionary_VR
from pydicom.uid import UID
from pydicom.valuerep import TEXT_VR_DELIMS

from ..dicom import BINARY_VRS, PIXEL_DATA, PIXEL_TAGS, TEXT_VRS, dictionary_vr
from ..header.profile import CODED, OWN_TEXT
from ..header.scanner import Scanner
from ..pixels.codec import CodecError, Layout, digests

# Written by Sendit from pseudonyms (a pseudonym may hold a run of digits), or codes: the
# source's values are searched for there, not the patterns.
NO_PATTERNS = CODED | {0x00100010, 0x00100020, 0x00080050, 0x00120063}
BYTES_MIN = 4  # shorter values are searched for in decoded text only: in bytes they match noise
SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})  # a backslash is text there, not a separator
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN"})
LONG_VRS |= {b"UR", b"UT", b"UV"}
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
CHARSET, SOP_CLASS, SOP_INSTANCE, IDENTITY_REMOVED = 0x00080005, 0x00080016, 0x00080018, 0x00120062
DEFLATED = "1.2.840.10008.1.2.1.99"
_TOP = (SOP_CLASS, SOP_INSTANCE, IDENTITY_REMOVED)
# The attributes that say what the pixel data holds (tag: keyword, binary or text): they and
# the pixels must agree.
PIXEL_DESCRIPTION = {
    0x00280002: ("SamplesPerPixel", True),
    0x00280004: ("PhotometricInterpretation", False),
    0x00280006: ("PlanarConfiguration", True),
    0x00280008: ("NumberOfFrames", False),
    0x00280010: ("Rows", True),
    0x00280011: ("Columns", True),
    0x00280100: ("BitsAllocated", True),
    0x00280101: ("BitsStored", True),
    0x00280102: ("HighBit", True),
    0x00280103: ("PixelRepresentation", True),
}


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
        values = [ds.get(keyword) for keyword, _ in PIXEL_DESCRIPTION.values()]
        return cls(PIXEL_DATA in ds, tuple(_said(v) for v in values), written)


class _Unreadable(Exception):
    """The bytes do not parse as DICOM."""


def verify(data: bytes, *, transfer_syntax: str, pixels: PixelRecord, scanner: Scanner) -> None:
    needles = {n.encode() for n in scanner.needles if n.isascii() and len(n) >= BYTES_MIN}
    try:
        meta, start = _file_meta(data)
        syntax = UID(meta.get(0x00020010, ""))
        body = zlib.decompress(data[start:], -zlib.MAX_WBITS) if syntax == DEFLATED else data
        walk = _Walk(body, syntax.is_little_endian, syntax.is_implicit_VR, scanner, needles)
        walk.dataset(0 if syntax == DEFLATED else start, len(body), ["iso8859"], top=True)
    except RecursionError:
        raise VerificationError("the header is nested too deep to verify") from None
    except Exception as exc:  # whatever makes it unreadable, it does not leave
        raise VerificationError(f"output does not re-read ({type(exc).__name__})") from None
    checks = {
        "transfer syntax changed": syntax != transfer_syntax,
        "file meta SOP Instance UID does not match": (
            meta.get(0x00020003) != walk.top.get(SOP_INSTANCE)
        ),
        "file meta SOP Class UID does not match": meta.get(0x00020002) != walk.top.get(SOP_CLASS),
        "PatientIdentityRemoved is not YES": walk.top.get(IDENTITY_REMOVED) != "YES",
        "the preamble is not empty": any(data[:128]),
        "pixel data lost": pixels.present and not walk.pixels,
        "the pixel description changed": pixels.present
        and walk.description(PIXEL_DESCRIPTION) != pixels.description,
        "pixel data nested in a sequence (never examined for text)": walk.nested_pixels,
    }
    for reason, failed in checks.items():
        if failed:
            raise VerificationError(reason)
    if walk.leak is not None:
        raise VerificationError(f"identifying text remains in {walk.leak}")
    if pixels.digests:
        _check_written(data, pixels.digests)


def _check_written(data: bytes, written: tuple[bytes, ...]) -> None:
    """Rewritten pixels decode, frame by frame, to exactly what was written (a dataset is
    built for this: only for images whose pixels were cleaned)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        decoded = digests(ds, Layout.of(ds))
    except (CodecError, ValueError) as exc:
        raise VerificationError(f"the rewritten pixels do not decode ({exc})") from None
    if decoded != list(written):
        raise VerificationError("the rewritten pixels do not decode to what was written")


def _said(value: object) -> str:
    """A pixel description value as text, whether read by pydicom or from the bytes."""
    return "" if value is None else str(value).strip("\0 ")


def _file_meta(data: bytes) -> tuple[dict[int, str], int]:
    """The file meta's values (explicit VR little endian, group 0002) and where the body starts."""
    if data[128:132] != b"DICM":
        raise _Unreadable("no DICM prefix")
    meta, pos = {}, 132
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 2:
        tag = int.from_bytes(data[pos : pos + 2], "little") << 16
        tag |= int.from_bytes(data[pos + 2 : pos + 4], "little")
        vr = data[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            (length,), pos = struct.unpack_from("<L", data, pos + 8), pos + 12
        else:
            (length,), pos = struct.unpack_from("<H", data, pos + 6), pos + 8
        if pos + length > len(data):
            raise _Unreadable("file meta cut short")
        if vr == b"UI":
            meta[tag] = data[pos : pos + length].decode("ascii").rstrip("\0 ")
        pos += length
    return meta, pos


class _Walk:
    """One walk of a dataset's bytes: what the checks need, and the first leak."""

    def __init__(
        self, data: bytes, little: bool, implicit: bool, scanner: Scanner, needles: set[bytes]
    ) -> None:
        self.data, self.little, self.implicit = data, little, implicit
        self.scanner, self.needles = scanner, needles
        self.order = "<" if little else ">"
        self.top: dict[int, str] = {}
        self.pixels = False
        self.nested_pixels = False
        self.described: dict[int, bytes] = {}
        self.leak: str | None = None

    def description(self, tags: dict[int, tuple[str, bool]]) -> tuple[str, ...]:
        """The top level's pixel description, as `PixelRecord` says it."""
        out = []
        for tag, (_, binary) in tags.items():
            value = self.described.get(tag)
            if value is None:
                out.append("")
            elif binary:
                out.append(str(int.from_bytes(value[:2], "little" if self.little else "big")))
            else:
                out.append(_said(value.decode("ascii", "replace")))
        return tuple(out)

    def dataset(
        self, pos: int, end: int, charset: list[str], *, top: bool = False, implicit: bool = False
    ) -> int:
        """Walk the elements from pos to end (or to an item delimiter); returns where it ends."""
        data, order = self.data, self.order
        implicit = implicit or self.implicit
        creators: dict[int, str] = {}
        while pos < end:
            group, element = struct.unpack_from(order + "HH", data, pos)
            tag = group << 16 | element
            if tag == ITEM_END:
                return pos + 8
            if implicit:
                (length,), vr, pos = struct.unpack_from(order + "L", data, pos + 4), None, pos + 8
            else:
                stored = data[pos + 4 : pos + 6]
                vr = stored.decode("ascii")
                if stored in LONG_VRS:
                    (length,), pos = struct.unpack_from(order + "L", data, pos + 8), pos + 12
                else:
                    (length,), pos = struct.unpack_from(order + "H", data, pos + 6), pos + 8
            un = vr == "UN"  # a value stored as UN is encoded in implicit VR little endian
            vr = _vr(tag, vr, creators)
            if tag in PIXEL_TAGS:
                self.pixels = self.pixels or top
                self.nested_pixels = self.nested_pixels or not top
            if length == UNDEFINED:
                if tag in PIXEL_TAGS:
                    pos = self._fragments(pos)
                else:
                    pos = self.sequence(pos, None, charset, un=un or implicit)
                continue
            if pos + length > len(self.data):
                raise _Unreadable("an element runs past the end")
            value = data[pos : pos + length]
            if group & 1 and 0x10 <= element <= 0xFF:
                creators[tag] = value.decode("latin-1").strip("\0 ")
            if tag == CHARSET:
                charset = convert_encodings(value.decode("ascii").strip("\0 ").split("\\"))
            if top and tag in _TOP:
                self.top[tag] = value.decode("ascii", "replace").strip("\0 ")
            if top and tag in PIXEL_DESCRIPTION:
                self.described[tag] = value
            if vr == "SQ":
                self.sequence(pos, pos + length, charset, un=un or implicit)
            elif self.leak is None and tag not in PIXEL_TAGS:
                self._check(tag, vr, value, charset)
            pos += length
        return pos

    def sequence(self, pos: int, end: int | None, charset: list[str], *, un: bool) -> int:
        """Walk the items from pos to end, or to the sequence delimiter (end None), their
        elements in implicit VR when `un`."""
        data, order = self.data, self.order
        while end is None or pos < end:
            group, element, length = struct.unpack_from(order + "HHL", data, pos)
            tag, pos = group << 16 | element, pos + 8
            if tag == SEQUENCE_END:
                return pos
            if tag != ITEM:
                raise _Unreadable("a sequence holds something other than items")
            stop = len(data) if length == UNDEFINED else pos + length
            pos = self.dataset(pos, stop, charset, implicit=un)
        return pos

    def _fragments(self, pos: int) -> int:
        """Skip encapsulated pixel data: items until the sequence delimiter."""
        while True:
            group, element, length = struct.unpack_from(self.order + "HHL", self.data, pos)
            pos += 8
            if group << 16 | element == SEQUENCE_END:
                return pos
            pos += length

    def _check(self, tag: int, vr: str, value: bytes, charset: list[str]) -> None:
        if vr in TEXT_VRS:
            patterns = tag not in NO_PATTERNS
            texts = [t for t in _texts(value, vr, charset) if t not in OWN_TEXT]
            if any(self.scanner.finds(t, patterns=patterns) for t in texts):
                self.leak = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        elif vr in BINARY_VRS and self.needles and _bytes_leak(value.lower(), self.needles):
            self.leak = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _vr(tag: int, stored: str | None, creators: dict[int, str]) -> str:
    """The VR to read an element with: as stored, else (implicit VR, or UN) the dictionary's;
    UN when nothing knows it or it is ambiguous (binary, never text)."""
    if stored and stored != "UN":
        return stored
    group, element = tag >> 16, tag & 0xFFFF
    if group & 1:
        if 0x10 <= element <= 0xFF:
            return "LO" if stored is None else "UN"  # a private creator
        creator = creators.get(group << 16 | element >> 8)
        try:
            known = private_dictionary_VR(tag, creator) if creator and stored is None else "UN"
        except KeyError:
            known = "UN"
    else:
        known = dictionary_vr(tag)
    return "UN" if " or " in known else known


def _texts(value: bytes, vr: str, charset: list[str]) -> list[str]:
    """A text element's values, decoded: plain ASCII (no ISO 2022 escapes) reads alike in every
    DICOM character set; anything else with the dataset's."""
    if value.isascii() and b"\x1b" not in value:
        text = value.decode("ascii")
    else:
        text = decode_bytes(value, charset, TEXT_VR_DELIMS)
    values = [text] if vr in SINGLE_VALUED else text.split("\\")
    return [v.strip("\0 ") for v in values if v.strip("\0 ")]


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

"""Text riding inside compressed frames, stripped without touching a pixel.

A JPEG (baseline, extended, lossless, JPEG-LS) frame may carry comment (COM) and application
(APPn: EXIF, XMP, ICC, a JFIF thumbnail) segments before its first scan; a JPEG 2000 codestream
comment (COM) markers in its main header. None of them holds pixels a DICOM decoder needs
(DICOM says the colour space in the header), so they are dropped, segment by segment, and the
frames encapsulated again. Adobe's APP14, which tells a JPEG decoder its colour transform, is
kept. A frame that does not parse is left as it is and the image is withheld by the caller.
"""

from __future__ import annotations

import struct

import pydicom.uid as uids
from pydicom import Dataset
from pydicom.encaps import encapsulate, generate_frames

from ..dicom import PIXEL_DATA, frame_count

JPEG_FAMILY = frozenset(
    {
        uids.JPEGBaseline8Bit,
        uids.JPEGExtended12Bit,
        uids.JPEGLossless,
        uids.JPEGLosslessSV1,
        uids.JPEGLSLossless,
        uids.JPEGLSNearLossless,
    }
)
J2K_FAMILY = frozenset(
    {
        uids.JPEG2000Lossless,
        uids.JPEG2000,
        uids.HTJ2KLossless,
        uids.HTJ2KLosslessRPCL,
        uids.HTJ2K,
    }
)
SOI, SOS, EOI, APP14, COM = 0xD8, 0xDA, 0xD9, 0xEE, 0xFE
J2K_SOC, J2K_SOT, J2K_COM = 0xFF4F, 0xFF90, 0xFF64


class MarkerError(ValueError):
    """A compressed frame whose segments do not parse."""


def strip_markers(ds: Dataset) -> bool:
    """Strip text segments from every encapsulated frame, in place; True when any was."""
    syntax = ds.file_meta.TransferSyntaxUID
    if PIXEL_DATA not in ds or syntax not in JPEG_FAMILY | J2K_FAMILY:
        return False
    strip = _strip_jpeg if syntax in JPEG_FAMILY else _strip_j2k
    try:
        count = frame_count(ds)
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
    except (ValueError, EOFError) as exc:
        raise MarkerError(f"compressed frames do not parse ({type(exc).__name__})") from None
    stripped = [strip(f) for f in frames]
    if stripped == frames:
        return False
    ds.PixelData = encapsulate(stripped, has_bot=count > 1)
    return True


def _strip_jpeg(frame: bytes) -> bytes:
    if frame[:2] != b"\xff\xd8":
        raise MarkerError("a JPEG frame without a start-of-image marker")
    out = [frame[:2]]
    pos = 2
    while pos < len(frame):
        if frame[pos] != 0xFF:
            raise MarkerError("a JPEG frame whose header segments do not parse")
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (SOS, EOI):
            out.append(frame[pos:])  # entropy-coded data and what follows: as it is
            break
        (length,) = struct.unpack(">H", frame[pos + 2 : pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(frame):
            raise MarkerError("a JPEG frame whose header segments do not parse")
        if not (marker == COM or (0xE0 <= marker <= 0xEF and marker != APP14)):
            out.append(frame[pos:end])
        pos = end
    return b"".join(out)


def _strip_j2k(frame: bytes) -> bytes:
    if frame[:2] != b"\xff\x4f":
        raise MarkerError("a JPEG 2000 frame that is not a bare codestream")
    out = [frame[:2]]
    pos = 2
    while pos + 4 <= len(frame):
        (marker, length) = struct.unpack(">HH", frame[pos : pos + 4])
        if marker == J2K_SOT:
            break  # tile-parts: their lengths are counted, so their headers stay as they are
        end = pos + 2 + length
        if marker >> 8 != 0xFF or length < 2 or end > len(frame):
            raise MarkerError("a JPEG 2000 main header that does not parse")
        if marker != J2K_COM:
            out.append(frame[pos:end])
        pos = end
    out.append(frame[pos:])
    return b"".join(out)

"""Pixels decoded frame by frame as they are stored, and written back losslessly.

pydicom decodes (its own handlers, with the pylibjpeg, openjpeg, RLE and JPEG-LS plugins), one
frame at a time, so a long cine never sits in memory decoded; the header's declared size is
checked before anything is decoded. Frames come as stored: the colour space the data holds
(4:2:2 upsampled; JPEG 2000's colour transform undone by its codec), a palette's indices, and
every bit of the pixel cell: bits above BitsStored (a legacy overlay, text until proven
otherwise) are reported and cleared in the output, where pydicom's own decoding would hide them.

Write-back is right by construction, and only when something changed: native pixels go back
in their own transfer syntax and layout (planar configuration, byte order, bit packing), only
changed frames rewritten; 4:2:2 native pixels go back as YBR_FULL (the decoded, upsampled
samples, said so in the header). Compressed pixels go back in their own syntax when it is
lossless and an encoder exists (RLE, JPEG-LS lossless, JPEG 2000 lossless), checked by
decoding the result; otherwise as native Explicit VR Little Endian in the colour space the
decoder gave. Pixels that were lossless are never re-encoded lossily. The digest of every
written frame is returned, for verification to decode the output and compare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pydicom.uid as uids
from pydicom import Dataset
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import pack_bits

from ..dicom import PIXEL_DATA, frame_count

REENCODED = frozenset({uids.RLELossless, uids.JPEGLSLossless, uids.JPEG2000Lossless})
LOSSLESS = REENCODED | {
    uids.JPEGLossless,
    uids.JPEGLosslessSV1,
    uids.HTJ2KLossless,
    uids.HTJ2KLosslessRPCL,
}
# Decoders tried first where they are much faster than pydicom's default (Pillow's
# libjpeg-turbo: 3 ms against 10 ms for a 480 x 640 ultrasound frame), then pydicom's choice.
FAST_PLUGINS = {uids.JPEGBaseline8Bit: ("pillow",)}
MiB = 1 << 20
FRAME_LIMIT = 512 * MiB  # one decoded frame (a 16-bit 16k x 16k mammogram is 512 MiB)
IMAGE_LIMIT = 2048 * MiB  # every frame decoded: what a cleaned image's native output may hold
PHOTOMETRICS = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "PALETTE COLOR",
        "RGB",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_ICT",
        "YBR_RCT",
    }
)


class CodecError(ValueError):
    """Pixels that cannot be decoded or written back (the image is withheld)."""


class TooLarge(ValueError):
    """Pixels whose declared size is beyond what a pool process decodes (the file fails)."""


@dataclass(frozen=True)
class Layout:
    """What the header says the pixel data holds."""

    rows: int
    columns: int
    samples: int
    frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    planar: int
    syntax: uids.UID

    @classmethod
    def of(cls, ds: Dataset) -> Layout:
        """Raises CodecError for a description that does not hold together, TooLarge for one
        beyond the limits (both before anything is decoded)."""
        if PIXEL_DATA not in ds:
            raise CodecError("no integer pixel data to look at")
        try:
            layout = cls(
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                samples=int(ds.get("SamplesPerPixel") or 1),
                frames=frame_count(ds),
                bits_allocated=int(ds.BitsAllocated),
                bits_stored=int(ds.get("BitsStored") or ds.BitsAllocated),
                signed=int(ds.get("PixelRepresentation") or 0) == 1,
                photometric=str(ds.get("PhotometricInterpretation", "")).strip(),
                planar=int(ds.get("PlanarConfiguration") or 0),
                syntax=ds.file_meta.TransferSyntaxUID,
            )
            high_bit = int(ds.get("HighBit", layout.bits_stored - 1))
        except (AttributeError, TypeError, ValueError):
            raise CodecError("pixel data without a usable image description") from None
        if layout.photometric not in PHOTOMETRICS:
            raise CodecError("a photometric interpretation Sendit does not clean")
        if layout.samples not in (1, 3) or (layout.samples == 3) != layout.colour:
            raise CodecError("samples per pixel do not match the photometric interpretation")
        if (
            not (layout.bits_allocated == 1 or layout.bits_allocated in (8, 16, 32))
            or not 1 <= layout.bits_stored <= layout.bits_allocated
        ):
            raise CodecError("bits allocated and stored that do not hold together")
        if high_bit != layout.bits_stored - 1:
            raise CodecError("a high bit other than bits stored - 1")
        if min(layout.rows, layout.columns) < 1:
            raise CodecError("an image without rows or columns")
        if layout.frame_bytes > FRAME_LIMIT or layout.frame_bytes * layout.frames > IMAGE_LIMIT:
            size = layout.frame_bytes * layout.frames / MiB
            raise TooLarge(
                f"{size:.0f} MiB of pixels declared, beyond the decode limits "
                f"({FRAME_LIMIT // MiB} MiB a frame, {IMAGE_LIMIT // MiB} MiB an image)"
            )
        return layout

    @property
    def colour(self) -> bool:
        return self.photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")

    @property
    def frame_bytes(self) -> int:
        """One frame decoded (a 1-bit pixel takes a byte)."""
        return self.rows * self.columns * self.samples * max(1, self.bits_allocated // 8)


@dataclass(frozen=True)
class Frame:
    index: int
    values: np.ndarray  # rows x columns [x 3], as stored, only BitsStored bits (sign-extended)
    photometric: str  # the colour space of `values` (4:2:2 is upsampled: YBR_FULL)
    overlay: bool  # bits above BitsStored hold something: cleared in the output


def frames(ds: Dataset, layout: Layout) -> Iterator[Frame]:
    """Every frame, decoded one at a time."""
    for index, (cells, photometric) in enumerate(_decoded(ds, layout)):
        overlay = _overlay(cells, layout)
        values = _stored_bits(cells, layout) if overlay or _unextended(cells, layout) else cells
        yield Frame(index, values, photometric, overlay)


def rewrite(
    ds: Dataset, layout: Layout, masks: Sequence[np.ndarray | None], fill: object
) -> list[bytes]:
    """Blank each frame where its mask says (with `fill`) and clear bits above BitsStored, in
    place. Returns each written frame's digest, as pydicom decodes it from the new pixel data
    (see `digests`)."""
    native = not layout.syntax.is_compressed
    if native and layout.bits_allocated >= 8 and layout.photometric != "YBR_FULL_422":
        return _rewrite_in_place(ds, layout, masks, fill)
    written, decoded_as = [], layout.photometric
    for (cells, decoded_as), mask in zip(_decoded(ds, layout), masks, strict=True):  # noqa: B007
        written.append(_cleaned(cells, mask, fill, layout))
    stack = np.stack(written) if layout.frames > 1 else written[0]
    photometric = written_photometric(decoded_as)  # every frame decodes alike
    if native:  # 1-bit (packed together) or 4:2:2 (now full): the source's own syntax
        _set_native(ds, stack, layout, photometric, layout.syntax)
    else:
        _set_native(ds, stack, layout, photometric, uids.ExplicitVRLittleEndian)
        if layout.syntax in REENCODED:
            _reencode(ds, layout.syntax, stack)
    return [_digest(f) for f in written]


def digests(ds: Dataset, layout: Layout) -> list[bytes]:
    """Each frame's digest as decoded from `ds`: what verification compares with `rewrite`'s."""
    return [_digest(cells) for cells, _ in _decoded(ds, layout)]


def written_photometric(decoded: str) -> str:
    """The colour space a decoded frame is written in: 4:2:2 comes out of decoding full."""
    return "YBR_FULL" if decoded == "YBR_FULL_422" else decoded


def black(photometric: str, values: np.ndarray, lut_darkest: int | None = None) -> object:
    """Black as the image shows it: the darkest stored value (per sample for colour)."""
    if photometric == "PALETTE COLOR" and lut_darkest is not None:
        return lut_darkest
    if photometric == "MONOCHROME1":
        return values.max()
    if photometric.startswith("YBR") and values.ndim == 3:
        middle = (int(np.iinfo(values.dtype).max) + 1) // 2 if values.dtype.kind == "u" else 0
        return (values[..., 0].min(), middle, middle)  # luminance at its lowest, no colour
    if values.ndim == 3:
        return values.min(axis=(0, 1))
    return values.min()


def _decoded(ds: Dataset, layout: Layout) -> Iterator[tuple[np.ndarray, str]]:
    """(cells, colour space) per frame: every bit of each cell, nothing converted."""
    plugins = (*FAST_PLUGINS.get(layout.syntax, ()), "")
    for plugin in plugins:
        try:
            decoded = _decode(ds, layout, plugin)
            first = next(decoded, None)
        except CodecError:
            if plugin == plugins[-1]:
                raise
            continue  # that plugin cannot: pydicom's own choice
        if first is not None:
            yield first
        yield from decoded
        return


def _decode(ds: Dataset, layout: Layout, plugin: str) -> Iterator[tuple[np.ndarray, str]]:
    try:
        decoder = get_decoder(layout.syntax)
        for cells, meta in decoder.iter_array(
            ds, raw=True, bits_stored=layout.bits_allocated, decoding_plugin=plugin
        ):
            if cells.shape[:2] != (layout.rows, layout.columns):
                raise CodecError("a frame that does not decode to the declared size")
            yield cells, str(meta.get("photometric_interpretation", layout.photometric))
    except (CodecError, TooLarge):
        raise
    except Exception as exc:
        raise CodecError(
            f"the {layout.syntax.name} pixel data does not decode here ({type(exc).__name__}: "
            "a codec this worker lacks, or damaged frames)"
        ) from None


def _overlay(cells: np.ndarray, layout: Layout) -> bool:
    """Bits above BitsStored that are neither zero nor the sign extended (both conventions
    writers use): something drawn there, which a viewer may show."""
    spare = layout.bits_allocated - layout.bits_stored
    if spare == 0 or layout.bits_allocated == 1:
        return False
    for rows in _chunks(cells):  # a few rows at a time: no frame-sized temporaries
        bits = rows.view(rows.dtype.str.replace("i", "u"))
        high = bits >> layout.bits_stored
        if not layout.signed:
            if high.any():
                return True
            continue
        extended = ((bits >> (layout.bits_stored - 1)) & 1) * ((1 << spare) - 1)
        if ((high != 0) & (high != extended)).any():
            return True
    return False


def _unextended(cells: np.ndarray, layout: Layout) -> bool:
    """Signed cells whose bits above BitsStored are zero where the value is negative: the
    stored bits must be sign-extended to be read (else the cells are the values)."""
    spare = layout.bits_allocated - layout.bits_stored
    if not layout.signed or spare == 0:
        return False
    return any(((rows << spare) >> spare != rows).any() for rows in _chunks(cells))


def _chunks(cells: np.ndarray, rows: int = 256) -> Iterator[np.ndarray]:
    for start in range(0, cells.shape[0], rows):
        yield cells[start : start + rows]


def _cleaned(
    cells: np.ndarray,
    mask: np.ndarray | None,
    fill: object,
    layout: Layout,
    into: np.ndarray | None = None,
) -> np.ndarray:
    """A frame as it is written: its cells as they were (bytes kept), unless bits above
    BitsStored hold something (then only the stored bits), blanked where the mask says;
    written `into` the frame's place in new pixel data when given (no copy of its own)."""
    out = _stored_bits(cells, layout) if _overlay(cells, layout) else cells
    if mask is None and out is cells:
        return cells
    if into is not None:
        into[...] = out
        out = into
    elif out is cells:
        out = out.copy()
    if mask is not None:
        out[mask] = fill
    return out


def _stored_bits(cells: np.ndarray, layout: Layout) -> np.ndarray:
    """The cells with only BitsStored bits: masked, or sign-extended from the high bit."""
    spare = layout.bits_allocated - layout.bits_stored
    if spare == 0 or layout.bits_allocated == 1:
        return cells
    if layout.signed:
        return (cells << spare) >> spare  # arithmetic shift: sign-extended
    return cells & np.array((1 << layout.bits_stored) - 1, dtype=cells.dtype)


def _rewrite_in_place(
    ds: Dataset, layout: Layout, masks: Sequence[np.ndarray | None], fill: object
) -> list[bytes]:
    """Native pixels of whole bytes: changed frames written over their own bytes, in the
    source's layout and byte order; the others' bytes untouched."""
    data = bytearray(ds.PixelData)
    written = _write_frames(ds, layout, masks, fill, data)
    ds["PixelData"].value = b""  # the source's bytes go before their new copy is made
    ds.PixelData = bytes(data)  # pydicom takes a bytearray for a list of numbers
    return written


def _write_frames(
    ds: Dataset, layout: Layout, masks: Sequence[np.ndarray | None], fill: object, data: bytearray
) -> list[bytes]:
    """Each cleaned frame straight into its place in `data` (a frame is decoded, never copied
    again); each frame's digest."""
    order = "<" if layout.syntax.is_little_endian else ">"
    written = []
    for index, ((cells, _), mask) in enumerate(zip(_decoded(ds, layout), masks, strict=True)):
        place = np.frombuffer(
            data, cells.dtype.newbyteorder(order), cells.size, index * layout.frame_bytes
        )
        if layout.planar == 1 and cells.ndim == 3:  # stored a colour plane after another
            rows, columns, samples = cells.shape
            logical = place.reshape(samples, rows, columns).transpose(1, 2, 0)
        else:
            logical = place.reshape(cells.shape)
        written.append(_digest(_cleaned(cells, mask, fill, layout, into=logical)))
    return written


def _set_native(
    ds: Dataset, stack: np.ndarray, layout: Layout, photometric: str, syntax: uids.UID
) -> None:
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PhotometricInterpretation = photometric
    if layout.samples == 3:
        ds.PlanarConfiguration = 0
    if layout.bits_allocated == 1:
        ds.PixelData = pack_bits(stack)
    else:
        order = "<" if syntax.is_little_endian else ">"
        ds.PixelData = stack.astype(stack.dtype.newbyteorder(order), copy=False).tobytes()
    _as_native(ds, layout.bits_allocated)


def _reencode(ds: Dataset, syntax: uids.UID, stack: np.ndarray) -> None:
    """In the source's own lossless syntax when the result decodes to exactly these pixels;
    else left native."""
    native = (ds.PixelData, ds.file_meta.TransferSyntaxUID, ds.PhotometricInterpretation)
    try:
        ds.compress(syntax, generate_instance_uid=False)
        layout = Layout.of(ds)
        again = [cells for cells, _ in _decoded(ds, layout)]
        if np.array_equal(np.stack(again) if layout.frames > 1 else again[0], stack):
            return
    except Exception:  # no encoder for these pixels: native is lossless too
        pass
    ds.PixelData, ds.file_meta.TransferSyntaxUID, ds.PhotometricInterpretation = native
    _as_native(ds, int(ds.BitsAllocated))


def _as_native(ds: Dataset, bits_allocated: int) -> None:
    """The pixel data element as native data is written: OW or OB, of defined length."""
    ds["PixelData"].VR = "OW" if bits_allocated > 8 else "OB"
    ds["PixelData"].is_undefined_length = False


def _digest(values: np.ndarray) -> bytes:
    """A frame's samples, whatever their byte order in memory (hashed in place: a copy of a
    radiograph's frame would be the pool process's high-water mark)."""
    native = np.ascontiguousarray(values.astype(values.dtype.newbyteorder("="), copy=False))
    return hashlib.blake2b(native.data, digest_size=16).digest()

"""Pixel layouts for the pixel corpus: a frame stack written into a dataset exactly as a
modality would store it, every way the pixel issue names (planar RGB, YBR_FULL_422 stored
subsampled, YBR_FULL, palette colour with 8- or 16-bit LUT entries, signed values, bits above
BitsStored, JPEG baseline, RLE, JPEG-LS and JPEG 2000 lossless, big endian, implicit VR).

`encode` sets the Image Pixel module and the pixel data; `decoded` is what pydicom shows of
it, which `encode` checks against what it was given (exact for lossless layouts, close for
JPEG baseline), so a layout that does not say what it claims fails when the corpus is made.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom.uid as uids
from PIL import Image
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space

NATIVE = (uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian, uids.ExplicitVRBigEndian)
LOSSLESS = (uids.RLELossless, uids.JPEGLSLossless, uids.JPEG2000Lossless)
PIXEL_MODULE = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "NumberOfFrames",
    "PixelData",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "PaletteColorLookupTableUID",
)


@dataclass(frozen=True)
class Layout:
    """How a stack is stored. Colour stacks are given as RGB (palette stacks as indices);
    `photometric` is what goes in the file."""

    photometric: str = "MONOCHROME2"
    bits_allocated: int = 8
    bits_stored: int = 8
    signed: bool = False
    planar: int = 0
    syntax: str = uids.ExplicitVRLittleEndian
    lut_bits: int = 16  # palette colour: bits per LUT entry (8 or 16)

    @property
    def samples(self) -> int:
        return 1 if self.photometric.startswith("MONO") or self.palette else 3

    @property
    def palette(self) -> bool:
        return self.photometric == "PALETTE COLOR"


def clear_pixels(ds: Dataset) -> None:
    for keyword in PIXEL_MODULE:
        if keyword in ds:
            delattr(ds, keyword)


def encode(
    ds: Dataset,
    stack: np.ndarray,
    layout: Layout,
    *,
    multiframe: bool = False,
    lut: np.ndarray | None = None,
) -> None:
    """Store `stack` (frames x rows x columns [x 3]) in `ds` as `layout` says, in place. A
    multi-frame IOD (or more than one frame) gets NumberOfFrames. `lut` (entries x 3, in
    the LUT's bits) is the palette."""
    clear_pixels(ds)
    frames, rows, columns = stack.shape[:3]
    ds.SamplesPerPixel = layout.samples
    ds.PhotometricInterpretation = layout.photometric
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored = layout.bits_allocated, layout.bits_stored
    ds.HighBit = layout.bits_stored - 1
    ds.PixelRepresentation = int(layout.signed)
    if layout.samples == 3:
        ds.PlanarConfiguration = layout.planar
    if multiframe or frames > 1:
        ds.NumberOfFrames = frames
    if layout.palette:
        assert lut is not None, "a palette layout needs its LUT"
        _palette(ds, lut, layout.lut_bits)
    ds.file_meta.TransferSyntaxUID = layout.syntax
    if layout.syntax == uids.JPEGBaseline8Bit:
        _jpeg_baseline(ds, stack)
    elif layout.syntax in LOSSLESS:
        ds.PixelData = _native_bytes(stack, layout, big_endian=False)  # what compress reads
        ds["PixelData"].VR = "OW" if layout.bits_allocated > 8 else "OB"
        ds.compress(layout.syntax, _colour(stack, layout), generate_instance_uid=False)
    else:
        ds.PixelData = _native_bytes(stack, layout, layout.syntax == uids.ExplicitVRBigEndian)
        ds["PixelData"].VR = "OW" if layout.bits_allocated > 8 else "OB"
    _check(ds, stack, layout)


def decoded(ds: Dataset) -> np.ndarray:
    """The stored samples as pydicom decodes them (no colour conversion): frames first."""
    ds.pixel_array_options(as_rgb=False)
    try:
        arr = np.array(ds.pixel_array)
    finally:
        ds.pixel_array_options(as_rgb=True)
    return arr if int(ds.get("NumberOfFrames") or 1) > 1 else arr[np.newaxis]


def _colour(stack: np.ndarray, layout: Layout) -> np.ndarray:
    """The samples as stored, full resolution: RGB stacks converted to YBR when the layout is
    YBR; a single frame without its frame axis (as pydicom takes it)."""
    if layout.photometric.startswith("YBR"):
        stack = convert_color_space(stack, "RGB", "YBR_FULL")
    return stack[0] if len(stack) == 1 else stack


def _native_bytes(stack: np.ndarray, layout: Layout, big_endian: bool) -> bytes:
    arr = stack
    if layout.photometric.startswith("YBR"):
        arr = convert_color_space(arr, "RGB", "YBR_FULL")
    if layout.photometric == "YBR_FULL_422":
        arr = _subsampled(arr)
    elif layout.planar == 1:
        arr = arr.transpose(0, 3, 1, 2)  # frame by frame: the R plane, the G plane, the B plane
    kind = ("i" if layout.signed else "u") + str(layout.bits_allocated // 8)
    order = ">" if big_endian else "<"
    data = np.ascontiguousarray(arr).astype(np.dtype(order + kind)).tobytes()
    return data + b"\0" * (len(data) % 2)


def _subsampled(ybr: np.ndarray) -> np.ndarray:
    """YBR_FULL_422 as stored: each pair of pixels in a row is Y1 Y2 CB CR (PS3.3 C.7.6.3.1.2),
    the pair's chroma averaged."""
    y = ybr[..., 0].astype(np.uint16)
    chroma = ybr[..., 1:].astype(np.uint16)
    pair = (chroma[:, :, 0::2] + chroma[:, :, 1::2] + 1) // 2
    out = np.empty((*ybr.shape[:2], ybr.shape[2] // 2, 4), np.uint8)
    out[..., 0], out[..., 1] = y[:, :, 0::2], y[:, :, 1::2]
    out[..., 2:] = pair
    return out


def _palette(ds: Dataset, lut: np.ndarray, bits: int) -> None:
    entries = len(lut)
    for i, colour in enumerate(("Red", "Green", "Blue")):
        # The descriptor's VR is "US or SS": US for unsigned indices (written as such).
        ds.add_new(f"{colour}PaletteColorLookupTableDescriptor", "US", [entries % 65536, 0, bits])
        data = lut[:, i].astype(np.uint8 if bits == 8 else "<u2").tobytes()
        setattr(ds, f"{colour}PaletteColorLookupTableData", data)
        ds[f"{colour}PaletteColorLookupTableData"].VR = "OW"


def _jpeg_baseline(ds: Dataset, stack: np.ndarray) -> None:
    """JPEG baseline, 4:2:2 for colour (YBR_FULL_422, as ultrasound scanners write it), each
    frame without the JFIF APP0 segment Pillow writes (a DICOM frame needs none)."""
    frames = []
    for frame in stack:
        buffer = io.BytesIO()
        mode = "RGB" if frame.ndim == 3 else "L"
        Image.fromarray(frame, mode).save(buffer, "JPEG", quality=90, subsampling=1)
        frames.append(_without_app0(buffer.getvalue()))
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if stack.ndim == 4:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{stack.nbytes / sum(map(len, frames)):.2f}"[:16]
    ds.LossyImageCompressionMethod = "ISO_10918_1"


def _without_app0(jpeg: bytes) -> bytes:
    assert jpeg[2:4] == b"\xff\xe0", "Pillow writes JFIF APP0 first"
    length = int.from_bytes(jpeg[4:6], "big")
    return jpeg[:2] + jpeg[4 + length :]


def _check(ds: Dataset, stack: np.ndarray, layout: Layout) -> None:
    """The dataset decodes to what it was given: the samples (lossless), or close to them
    (JPEG baseline); bits above BitsStored are masked by the decoder, so compared masked."""
    got = decoded(ds)
    want = stack
    if layout.photometric.startswith("YBR") and layout.syntax != uids.JPEGBaseline8Bit:
        want = convert_color_space(stack, "RGB", "YBR_FULL")
    if layout.bits_stored < layout.bits_allocated and not layout.signed:
        want = want & ((1 << layout.bits_stored) - 1)
    assert got.shape == want.shape, (got.shape, want.shape)
    if layout.syntax == uids.JPEGBaseline8Bit:
        ds.pixel_array_options(as_rgb=True)
        error = np.abs(np.array(ds.pixel_array).reshape(want.shape).astype(int) - want).mean()
        assert error < 4, f"JPEG baseline decodes too far from its frames ({error:.1f})"
    elif layout.photometric == "YBR_FULL_422":  # chroma at half resolution: each pair's mean
        chroma = np.repeat(_subsampled(want)[..., 2:], 2, axis=2)
        assert np.array_equal(got[..., 0], want[..., 0]) and np.array_equal(got[..., 1:], chroma)
    else:
        assert np.array_equal(got, want.astype(got.dtype)), "decodes to other samples"

"""Pixels decoded, and written back losslessly.

pydicom decodes (its own handlers, with the pylibjpeg, openjpeg, RLE and JPEG-LS plugins). A
cleaned image goes back in its own transfer syntax when that syntax is lossless and an encoder
exists (RLE, JPEG-LS lossless, JPEG 2000 lossless), checked by decoding the result again;
otherwise as native pixels (a native source in its own syntax, big endian included; a
compressed one as Explicit VR Little Endian), with pydicom keeping Photometric
Interpretation and Planar Configuration true to the pixels it wrote. Pixels that were lossless
are never re-encoded lossily.
"""

from __future__ import annotations

import numpy as np
import pydicom.uid as uids
from pydicom import Dataset
from pydicom.pixels.utils import pack_bits

from ..dicom import PIXEL_DATA, frame_count

REENCODED = frozenset({uids.RLELossless, uids.JPEGLSLossless, uids.JPEG2000Lossless})


class CodecError(ValueError):
    """Pixels that cannot be decoded or written back (the image is withheld)."""


def frames(ds: Dataset) -> np.ndarray:
    """Every frame, as pydicom shows it (colour as RGB): frames x rows x columns [x samples]."""
    if PIXEL_DATA not in ds:
        raise CodecError("no integer pixel data to look at")
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        raise CodecError("palette colour pixels are not cleaned")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise CodecError(f"pixel data does not decode ({type(exc).__name__})") from None
    return arr if _frame_count(ds) > 1 else arr[np.newaxis]


def rewrite(ds: Dataset, blank: list[np.ndarray | None]) -> str:
    """Blank each frame where its mask says, in place; returns the output's transfer syntax."""
    source = ds.file_meta.TransferSyntaxUID
    try:
        if source.is_compressed:
            ds.decompress(generate_instance_uid=False)  # native; PI and planar config updated
        ds.pixel_array_options(as_rgb=False)
        arr = np.array(ds.pixel_array)  # the stored samples, as the (new) header describes them
    except Exception as exc:
        raise CodecError(f"pixel data does not decode ({type(exc).__name__})") from None
    stack = arr if _frame_count(ds) > 1 else arr[np.newaxis]
    fill = black(str(ds.get("PhotometricInterpretation", "")), stack)
    for frame, mask in zip(stack, blank, strict=True):
        if mask is not None:
            frame[mask] = fill
    ds.PixelData = _stored(ds, arr)
    ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
    if source in REENCODED:
        _reencode(ds, source, arr)
    return ds.file_meta.TransferSyntaxUID


def _reencode(ds: Dataset, syntax: str, arr: np.ndarray) -> None:
    """In the source's own lossless syntax when the result decodes to exactly these pixels;
    else left native."""
    native = (ds.PixelData, ds.file_meta.TransferSyntaxUID, ds.PhotometricInterpretation)
    try:
        ds.compress(syntax, generate_instance_uid=False)
        ds.pixel_array_options(as_rgb=False)
        if np.array_equal(ds.pixel_array, arr):
            return
    except Exception:  # no encoder for these pixels: native is lossless too
        pass
    ds.PixelData, ds.file_meta.TransferSyntaxUID, ds.PhotometricInterpretation = native
    ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"


def _stored(ds: Dataset, arr: np.ndarray) -> bytes:
    """Native pixels in the byte order of the (native) transfer syntax."""
    if int(ds.BitsAllocated) == 1:
        return pack_bits(arr)
    order = "<" if ds.file_meta.TransferSyntaxUID.is_little_endian else ">"
    return arr.astype(arr.dtype.newbyteorder(order), copy=False).tobytes()


def black(interpretation: str, stack: np.ndarray) -> object:
    """Black as the image shows it: the darkest value of its frames (per sample for colour)."""
    if interpretation == "MONOCHROME1":
        return stack.max()
    if interpretation.startswith("YBR") and stack.ndim == 4:
        middle = (int(np.iinfo(stack.dtype).max) + 1) // 2 if stack.dtype.kind == "u" else 0
        return (stack[..., 0].min(), middle, middle)  # luminance at its lowest, no colour
    if stack.ndim == 4:
        return stack.min(axis=(0, 1, 2))
    return stack.min()


def _frame_count(ds: Dataset) -> int:
    try:
        return frame_count(ds)
    except ValueError as exc:
        raise CodecError(str(exc)) from None

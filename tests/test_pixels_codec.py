"""Pixels decoded as stored, frame by frame, and written back right by construction: in their
own syntax and layout when lossless, the header true to the pixels, only what was blanked
changed, bits above BitsStored cleared."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pydicom.uid as uids
import pytest
from dicomdata import bundled
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from sendit_worker.pixels.codec import (
    FRAME_LIMIT,
    CodecError,
    Layout,
    TooLarge,
    black,
    digests,
    frames,
    rewrite,
)


def _frames(ds: pydicom.Dataset) -> np.ndarray:
    return np.stack([f.values for f in frames(ds, Layout.of(ds))])


def _blank(ds: pydicom.Dataset, mask: np.ndarray) -> list[bytes]:
    layout = Layout.of(ds)
    values = _frames(ds)
    return rewrite(ds, layout, [mask] * layout.frames, black(layout.photometric, values[0]))


def _reread(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize(
    ("name", "expected", "photometric"),
    [
        ("MR_small_RLE.dcm", uids.RLELossless, "MONOCHROME2"),
        ("MR_small_jpeg_ls_lossless.dcm", uids.JPEGLSLossless, "MONOCHROME2"),
        ("MR_small_jp2klossless.dcm", uids.JPEG2000Lossless, "MONOCHROME2"),
        ("SC_rgb_rle_2frame.dcm", uids.RLELossless, "RGB"),
        ("MR_small_bigendian.dcm", uids.ExplicitVRBigEndian, "MONOCHROME2"),
        ("SC_rgb_jpeg_dcmtk.dcm", uids.ExplicitVRLittleEndian, "YBR_FULL"),  # lossy: native
        ("examples_ybr_color.dcm", uids.ExplicitVRLittleEndian, "YBR_FULL"),  # 4:2:2 JPEG
        ("SC_ybr_full_422_uncompressed.dcm", uids.ExplicitVRLittleEndian, "YBR_FULL"),
        ("MR_small_implicit.dcm", uids.ImplicitVRLittleEndian, "MONOCHROME2"),
        ("liver_1frame.dcm", uids.ExplicitVRLittleEndian, "MONOCHROME2"),  # 1-bit
        ("examples_palette.dcm", uids.ExplicitVRLittleEndian, "PALETTE COLOR"),
    ],
)
def test_blanked_pixels_are_written_back_losslessly(name, expected, photometric) -> None:
    ds = pydicom.dcmread(bundled(name))
    before = _frames(ds)
    mask = np.zeros(before.shape[1:3], dtype=bool)
    mask[:5, :7] = True
    written = _blank(ds, mask)
    assert ds.file_meta.TransferSyntaxUID == expected
    reread = _reread(ds)
    assert reread.PhotometricInterpretation == photometric
    assert digests(reread, Layout.of(reread)) == written  # what verification checks
    after = _frames(reread)
    assert after.shape == before.shape
    # Outside the mask every sample is what it was, in the colour space it is stored in;
    # inside, one value.
    assert np.array_equal(after[:, ~mask], before[:, ~mask])
    assert len(np.unique(after[:, mask].reshape(-1, *after.shape[3:]), axis=0)) == 1
    if reread.SamplesPerPixel == 3:  # shown as a viewer does: black has no colour
        shown = (
            reread.pixel_array[..., mask, :]
            if int(reread.get("NumberOfFrames", 1) or 1) > 1
            else reread.pixel_array[mask]
        )
        assert np.ptp(shown.astype(int), axis=-1).max() <= 2


def test_planar_rgb_is_written_back_planar() -> None:
    """PlanarConfiguration 1 (all red, then all green, then all blue) stays so: the bytes of
    what was not blanked are the bytes that came in."""
    ds = pydicom.dcmread(bundled("SC_rgb_small_odd.dcm"))
    rgb = np.arange(3 * 3 * 3, dtype=np.uint8).reshape(3, 3, 3) * 9
    ds.PlanarConfiguration = 1
    ds.PixelData = rgb.transpose(2, 0, 1).tobytes()
    before = ds.PixelData
    assert np.array_equal(_frames(ds)[0], rgb)
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 1] = True
    _blank(ds, mask)
    reread = _reread(ds)
    assert reread.PlanarConfiguration == 1
    after = _frames(reread)[0]
    assert np.array_equal(after[~mask], rgb[~mask])
    assert list(after[1, 1]) == [0, 9, 18]  # black: each sample's darkest
    changed = [i for i, (a, b) in enumerate(zip(ds.PixelData, before, strict=True)) if a != b]
    assert changed == [4, 13, 22]  # pixel (1, 1) of each colour plane only


def _ct_with_overlay(signed: bool) -> pydicom.Dataset:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
    values = np.frombuffer(ds.PixelData, "<i2").astype(np.int32) % 2048  # fits 12 bits signed
    if signed:
        values -= 1024
    cells = values.astype("<i2" if signed else "<u2")
    ds.PixelData = cells.tobytes()
    return ds


@pytest.mark.parametrize("signed", [False, True])
def test_bits_above_bits_stored_are_seen_and_cleared(signed) -> None:
    """A legacy overlay in bit 15 of a 12-bit image: pydicom's decoding hides it, the codec
    reports it and the output carries only the stored bits."""
    ds = _ct_with_overlay(signed)
    clean = _frames(ds).copy()
    assert not any(f.overlay for f in frames(ds, Layout.of(ds)))  # sign extension is no overlay
    cells = np.frombuffer(ds.PixelData, "<u2").copy()
    cells[:200] |= 0x8000 if not signed else 0x4000  # text drawn in a spare bit
    ds.PixelData = cells.tobytes()
    assert ds.pixel_array.tobytes() == clean.tobytes()  # invisible to pydicom
    assert [f.overlay for f in frames(ds, Layout.of(ds))] == [True]
    written = rewrite(ds, Layout.of(ds), [None], 0)
    reread = _reread(ds)
    assert np.array_equal(_frames(reread), clean)
    assert not any(f.overlay for f in frames(reread, Layout.of(reread)))
    assert digests(reread, Layout.of(reread)) == written


def test_declared_size_is_checked_before_anything_is_decoded() -> None:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.Rows = ds.Columns = 20000  # 800 MB a frame declared: a decompression bomb's header
    with pytest.raises(TooLarge, match="MiB"):
        Layout.of(ds)
    assert FRAME_LIMIT < 20000 * 20000 * 2


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("NumberOfFrames", b"x "), ("PhotometricInterpretation", b"CMYK"), ("HighBit", 3)],
)
def test_a_description_that_does_not_hold_together_is_refused(attribute, value) -> None:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    if isinstance(value, bytes):  # as a file would hold it: pydicom refuses to set it
        tag = Tag(attribute)
        ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)
    else:
        setattr(ds, attribute, value)
    with pytest.raises(CodecError):
        Layout.of(ds)


def test_frames_are_decoded_one_at_a_time() -> None:
    ds = pydicom.dcmread(bundled("examples_ybr_color.dcm"))  # 30 frames
    it = frames(ds, Layout.of(ds))
    first = next(it)
    assert first.index == 0 and first.values.shape == (240, 320, 3)
    assert sum(1 for _ in it) == 29

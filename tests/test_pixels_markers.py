"""Text in compressed frames' comment and APPn segments is stripped, not a pixel changed."""

from __future__ import annotations

import pydicom
from dicomdata import bundled
from pydicom.encaps import encapsulate, generate_frames

from sendit_worker.pixels.markers import strip_markers

SECRET = b"Zyxwvutson MRN 7734129"


def _with_segment(name: str, segment: bytes, after: int) -> pydicom.Dataset:
    ds = pydicom.dcmread(bundled(name))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[:after] + segment + frame[after:]])
    return ds


def test_jpeg_comment_and_exif_segments_are_stripped() -> None:
    original = pydicom.dcmread(bundled("SC_rgb_jpeg_dcmtk.dcm"))
    for marker in (b"\xff\xfe", b"\xff\xe1"):  # COM, APP1
        ds = _with_segment("SC_rgb_jpeg_dcmtk.dcm", marker + b"\x00\x18" + SECRET, 2)
        assert strip_markers(ds)
        assert SECRET not in ds.PixelData
        assert (ds.pixel_array == original.pixel_array).all()


def test_jpeg2000_main_header_comments_are_stripped() -> None:
    original = pydicom.dcmread(bundled("MR_small_jp2klossless.dcm"))
    ds = _with_segment("MR_small_jp2klossless.dcm", b"\xff\x64\x00\x1a\x00\x01" + SECRET, 2)
    assert strip_markers(ds)
    assert SECRET not in ds.PixelData
    assert (ds.pixel_array == original.pixel_array).all()


def test_frames_without_text_segments_are_left_byte_for_byte() -> None:
    ds = pydicom.dcmread(bundled("MR_small_jpeg_ls_lossless.dcm"))
    before = ds.PixelData
    assert not strip_markers(ds)
    assert ds.PixelData == before

"""A withheld image's preview: its first frame at native size, as a viewer opens it, with the
text found (red), the rules' regions (yellow) and a proposed region (green) outlined."""

from __future__ import annotations

import cv2
import numpy as np
import pydicom
import pytest
from dicomdata import bundled

from sendit_worker.pixels.codec import CodecError
from sendit_worker.pixels.preview import FOUND, PROPOSED, RULED, preview


def picture(ds: pydicom.Dataset, *args) -> np.ndarray:
    png = preview(ds, *args)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]  # RGB


def grey(rows: int = 64, columns: int = 96) -> pydicom.Dataset:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    values = (np.arange(rows * columns) % 200 + 20).astype(np.uint8).reshape(rows, columns)
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = values.tobytes()
    for keyword in ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"):
        ds.pop(keyword, None)
    return ds


def test_the_first_frame_at_native_size_with_nothing_outlined() -> None:
    ds = grey()
    shown = picture(ds)
    assert shown.shape == (64, 96, 3)
    assert (shown[..., 0] == shown[..., 1]).all()  # grey, no colour drawn


def test_found_text_rule_regions_and_a_proposed_region_are_outlined_each_in_its_colour() -> None:
    shown = picture(grey(), [(10, 5, 40, 15)], ((0, "50,30,90,60"),), ((0, "2,40,20,60"),))
    assert tuple(shown[5, 20]) == FOUND  # the top edge of the box found
    assert tuple(shown[30, 70]) == RULED  # the top edge of the rule's region
    assert tuple(shown[50, 2]) == PROPOSED  # the left edge of the proposed one
    assert tuple(shown[10, 25]) not in (FOUND, RULED, PROPOSED)  # inside: the picture


def test_through_the_headers_first_window_as_a_viewer_opens_it() -> None:
    ds = grey()
    ds.WindowCenter, ds.WindowWidth = 100, 20
    shown = picture(ds)[..., 0]
    stored = np.frombuffer(ds.PixelData, np.uint8).reshape(64, 96)
    assert (shown[stored < 90] == 0).all() and (shown[stored > 110] == 255).all()


def test_pixels_that_do_not_decode_have_no_preview() -> None:
    ds = grey()
    ds.PhotometricInterpretation = "HSV"
    with pytest.raises(CodecError):
        preview(ds)

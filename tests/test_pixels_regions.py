"""deid's coordinates as a mask: in the file's order, 0 blanks and 1 keeps."""

from __future__ import annotations

import pydicom
import pytest
from dicomdata import bundled

from sendit_worker.pixels.regions import RegionError, blank_mask


def test_coordinates_blank_and_keepcoordinates_keep_in_order() -> None:
    ds = pydicom.Dataset()
    mask = blank_mask(((0, "all"), (1, "10,20,30,40")), ds, 100, 50)
    assert mask is not None and mask.shape == (100, 50)
    assert not mask[20:40, 10:30].any() and mask[:20].all() and mask[40:].all()


def test_ultrasound_regions_are_read_from_the_image() -> None:
    us = pydicom.dcmread(bundled("examples_rgb_color.dcm"))
    region = pydicom.Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 5, 6
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 9, 10  # inclusive
    us.SequenceOfUltrasoundRegions = pydicom.Sequence([region])
    mask = blank_mask(((0, "from:SequenceOfUltrasoundRegions"),), us, 240, 320)
    assert mask is not None and mask.sum() == 5 * 5 and mask[6:11, 5:10].all()


def test_no_region_is_no_mask_and_bad_coordinates_fail() -> None:
    assert blank_mask((), pydicom.Dataset(), 4, 4) is None
    assert blank_mask(((0, "from:SequenceOfUltrasoundRegions"),), pydicom.Dataset(), 4, 4) is None
    with pytest.raises(RegionError):
        blank_mask(((0, "0,0,ten,10"),), pydicom.Dataset(), 4, 4)

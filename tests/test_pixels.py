"""The pixel screen: deid's filters decide, memoized per distinct header."""

from __future__ import annotations

from pathlib import Path

import pydicom
from dicomdata import bundled, make_clean_image
from pydicom.dataelem import RawDataElement

from sendit_worker.pixels import BURNED_IN_HEADER, PixelScreen


def test_original_images_pass_and_secondary_captures_are_withheld() -> None:
    screen = PixelScreen()
    assert screen.withheld_reason(pydicom.dcmread(bundled("CT_small.dcm"))) is None
    reason = screen.withheld_reason(pydicom.dcmread(bundled("SC_rgb_rle.dcm")))
    assert reason and reason.startswith("possible burned-in text")


def test_the_header_flag_withholds_whatever_the_filters_say() -> None:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    ds.BurnedInAnnotation = "YES"
    assert PixelScreen().withheld_reason(ds) == BURNED_IN_HEADER


def test_a_users_filter_adds_rules(tmp_path: Path) -> None:
    (tmp_path / "mine.deid").write_text(
        "FORMAT dicom\n\n%filter blacklist\n\nLABEL Our scanner burns names in\n"
        "  contains ManufacturerModelName MRT50H1\n"
    )
    mr = make_clean_image(pydicom.dcmread(bundled("MR_small.dcm")))
    assert PixelScreen().withheld_reason(mr) is None
    assert PixelScreen((tmp_path / "mine.deid",)).withheld_reason(mr)


def test_a_filter_may_name_its_field_by_tag(tmp_path: Path) -> None:
    (tmp_path / "mine.deid").write_text(
        "FORMAT dicom\n\n%filter blacklist\n\nLABEL Our scanner burns names in\n"
        "  contains 0x00081090 MRT50H1\n"  # ManufacturerModelName
    )
    mr = make_clean_image(pydicom.dcmread(bundled("MR_small.dcm")))
    assert PixelScreen((tmp_path / "mine.deid",)).withheld_reason(mr)


def test_screening_leaves_the_dataset_as_read() -> None:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    PixelScreen().withheld_reason(ds)
    assert isinstance(ds.get_item("ImageType"), RawDataElement)


def test_verdicts_are_memoized_on_the_fields_the_rules_read() -> None:
    screen = PixelScreen()
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    screen.withheld_reason(ds)
    ds.InstanceNumber = 99  # not read by any rule: same verdict, no new evaluation
    screen.withheld_reason(ds)
    assert len(screen._verdicts) == 1

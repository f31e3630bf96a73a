"""The pixel screen: what deid's filter rules say about an image, memoized per distinct header."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from dicomdata import bundled, make_clean_image
from pydicom.dataelem import RawDataElement

from sendit_worker.pixels import BURNED_IN_HEADER, PixelScreen


def test_derived_and_secondary_images_are_sent_to_detection_not_withheld() -> None:
    screen = PixelScreen()
    for name in ("MR_small.dcm", "SC_rgb_rle.dcm", "CT_small.dcm"):
        verdict = screen.verdict(pydicom.dcmread(bundled(name)))
        assert verdict.text_by_nature is None
    # The withhold policy's reason: deid's blanket rules still flag them.
    assert screen.verdict(pydicom.dcmread(bundled("SC_rgb_rle.dcm"))).flagged


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("ImageType", ["DERIVED", "SECONDARY", "REPORTDATA"]), ("ConversionType", "SD")],
)
def test_documents_and_reports_are_text_by_nature(keyword: str, value: object) -> None:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    setattr(ds, keyword, value)
    assert PixelScreen().verdict(ds).text_by_nature


@pytest.mark.parametrize("value", ["UNKNOWN", ["YES", "NO"], "no ", "N0"])
def test_only_an_exact_no_is_a_claim_of_no_text(value: object) -> None:
    ds = pydicom.dcmread(bundled("SC_rgb_rle.dcm"))
    ds.BurnedInAnnotation = value
    verdict = PixelScreen().verdict(ds)
    assert not verdict.says_no_text
    # deid's whitelist `contains BurnedInAnnotation No` does not clear it either.
    assert verdict.flagged


def test_an_exact_no_clears_deids_flags_for_the_withhold_policy() -> None:
    ds = pydicom.dcmread(bundled("SC_rgb_rle.dcm"))
    ds.BurnedInAnnotation = "NO"
    verdict = PixelScreen().verdict(ds)
    assert verdict.says_no_text and verdict.flagged is None


def test_the_header_flag_is_the_withhold_reason() -> None:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    ds.BurnedInAnnotation = "YES"
    verdict = PixelScreen().verdict(ds)
    assert verdict.says_text and verdict.flagged == BURNED_IN_HEADER


def test_a_users_blacklist_rule_withholds(tmp_path: Path) -> None:
    (tmp_path / "mine.deid").write_text(
        "FORMAT dicom\n\n%filter blacklist\n\nLABEL Our scanner burns names in\n"
        "  contains 0x00081090 MRT50H1\n"  # ManufacturerModelName, by tag
    )
    mr = make_clean_image(pydicom.dcmread(bundled("MR_small.dcm")))
    assert PixelScreen().verdict(mr).text_by_nature is None
    assert PixelScreen((tmp_path / "mine.deid",)).verdict(mr).text_by_nature


def test_a_rules_coordinates_are_regions_and_from_fields_stay_unresolved(tmp_path: Path) -> None:
    (tmp_path / "mine.deid").write_text(
        "FORMAT dicom\n\n%filter graylist\n\nLABEL Top banner\n"
        "  contains Modality US\n"
        "  ctpcoordinates 0,0,100,20\n"
        "  coordinates all\n"
        "  keepcoordinates from:SequenceOfUltrasoundRegions\n"
    )
    screen = PixelScreen((tmp_path / "mine.deid",))
    us = pydicom.dcmread(bundled("examples_rgb_color.dcm"))
    expected = ((0, "0,0,100,20"), (0, "all"), (1, "from:SequenceOfUltrasoundRegions"))
    assert screen.verdict(us).regions == expected
    us.ImageType = ["ORIGINAL", "PRIMARY", "X"]  # a new evaluation: the rule was put back
    assert screen.verdict(us).regions == expected


def test_screening_leaves_the_dataset_as_read() -> None:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    PixelScreen().verdict(ds)
    assert isinstance(ds.get_item("ImageType"), RawDataElement)


def test_verdicts_are_memoized_on_the_fields_the_rules_read() -> None:
    screen = PixelScreen()
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    screen.verdict(ds)
    ds.InstanceNumber = 99  # not read by any rule: same verdict, no new evaluation
    screen.verdict(ds)
    assert len(screen._verdicts) == 1


def test_an_encapsulated_document_is_text_by_nature() -> None:
    ds = pydicom.dcmread(bundled("rtplan.dcm"))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
    assert PixelScreen().verdict(ds).text_by_nature

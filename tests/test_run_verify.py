"""Fail closed: the final check refuses bytes that still identify or do not hold together."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from dicomdata import bundled
from pydicom.dataelem import RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from sendit_worker.header.scanner import Scanner
from sendit_worker.pixels.codec import Layout, digests
from sendit_worker.run.verify import PixelRecord, VerificationError, verify


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)  # as is: pydicom must not mend what the check is meant to catch
    return buffer.getvalue()


def _clean(name: str = "CT_small.dcm") -> pydicom.Dataset:
    ds = pydicom.dcmread(bundled(name))
    ds.PatientIdentityRemoved = "YES"
    ds.preamble = bytes(128)
    return ds


def _verify(ds: pydicom.Dataset, names=(), values=(), pixels: PixelRecord | None = None) -> None:
    verify(
        _bytes(ds),
        transfer_syntax=ds.file_meta.TransferSyntaxUID,
        pixels=pixels or PixelRecord.of(ds),
        scanner=Scanner(names, values),
    )


def test_a_clean_file_passes() -> None:
    _verify(_clean(), ["Nobody"], ["nobody-here"])


def test_an_identifying_value_anywhere_in_the_header_fails() -> None:
    ds = _clean()
    item = pydicom.Dataset()
    item.CodeMeaning = "seen by Quintessa"
    ds.ProcedureCodeSequence = pydicom.Sequence([item])
    with pytest.raises(VerificationError, match=r"identifying text remains in \(0008,0104\)"):
        _verify(ds, ["Quintessa"])


def test_matching_is_by_whole_word_so_uids_do_not_trip_on_short_ids() -> None:
    ds = _clean()
    ds.SOPInstanceUID = "2.25.1234567"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    _verify(ds, values=["1234"])


def test_pixel_data_is_not_searched_but_must_survive() -> None:
    """Pixel bytes are image, not text (the pixel policy examines them): a value that happens to
    be spelt in them does not fail the file; losing them does."""
    ds = _clean()
    pixels = bytearray(ds.PixelData)
    pixels[64 : 64 + 11] = b" ZYXWVUTSO "
    ds.PixelData = bytes(pixels)
    _verify(ds, names=["Zyxwvutso"])
    record = PixelRecord.of(ds)
    del ds.PixelData
    with pytest.raises(VerificationError, match="pixel data lost"):
        _verify(ds, pixels=record)


def test_file_meta_must_match_the_dataset() -> None:
    ds = _clean()
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    with pytest.raises(VerificationError, match="SOP Instance UID"):
        _verify(ds)


def test_a_preamble_that_holds_anything_fails() -> None:
    ds = _clean()
    ds.preamble = b"Quintessa".ljust(128, b"\0")
    with pytest.raises(VerificationError, match="preamble"):
        _verify(ds)


def test_identity_removed_flag_is_required() -> None:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    with pytest.raises(VerificationError, match="PatientIdentityRemoved"):
        _verify(ds)


def test_unreadable_bytes_fail() -> None:
    with pytest.raises(VerificationError, match="does not re-read"):
        verify(
            b"\0" * 200,
            transfer_syntax="1.2.840.10008.1.2.1",
            pixels=PixelRecord(False, ()),
            scanner=Scanner(),
        )


def test_deflated_files_are_searched_after_inflating() -> None:
    ds = _clean("image_dfl.dcm")
    assert ds.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    ds.StudyDescription = "scan of Quintessa"
    with pytest.raises(VerificationError, match="identifying text"):
        _verify(ds, ["Quintessa"])


def test_text_is_compared_with_text_only() -> None:
    """A PatientID "400" is no WindowCenter of 400, a surname CHEST no BodyPartExamined."""
    ds = _clean()
    ds.WindowCenter, ds.BodyPartExamined = "400", "CHEST"
    _verify(ds, names=["Chest"], values=["400"])
    ds.ImageComments = "chest"
    with pytest.raises(VerificationError, match="identifying text"):
        _verify(ds, names=["Chest"])


def test_patterns_fail_text_that_identifies_whatever_the_header_says() -> None:
    for text in ("born 06/15/1955", "call 555-123-4567", "MRN 00123456", "jd@example.org"):
        ds = _clean()
        ds.ImageComments = text
        with pytest.raises(VerificationError, match=r"\(0020,4000\)"):
            _verify(ds)


def test_a_value_in_a_binary_element_fails() -> None:
    ds = _clean()
    ds.add_new(0x00282000, "OB", b"\x00Quintessa Marisol\x00")  # ICC profile
    with pytest.raises(VerificationError, match=r"\(0028,2000\)"):
        _verify(ds, ["Quintessa"])


def test_a_value_any_depth_down_fails() -> None:
    ds = _clean()
    inner = ds
    for _ in range(150):
        item = pydicom.Dataset()
        inner.ReferencedImageSequence = pydicom.Sequence([item])
        inner = item
    inner.ImageComments = "Quintessa"
    with pytest.raises(VerificationError, match="identifying text"):
        _verify(ds, ["Quintessa"])


def test_a_pixel_description_changed_after_the_pixel_stage_fails() -> None:
    """A recipe that rewrote Rows or the photometric interpretation: header and pixels would
    no longer agree."""
    ds = _clean()
    record = PixelRecord.of(ds)
    ds.PhotometricInterpretation = "MONOCHROME1"
    with pytest.raises(VerificationError, match="pixel description changed"):
        _verify(ds, pixels=record)


def test_rewritten_pixels_must_decode_to_what_was_written() -> None:
    ds = _clean()
    layout = Layout.of(ds)
    written = tuple(digests(ds, layout))
    _verify(ds, pixels=PixelRecord.of(ds, written))
    pixels = bytearray(ds.PixelData)
    pixels[100] ^= 0xFF
    ds.PixelData = bytes(pixels)
    with pytest.raises(VerificationError, match="do not decode to what was written"):
        _verify(ds, pixels=PixelRecord.of(ds, written))


def test_pixel_data_nested_in_a_sequence_fails() -> None:
    """An icon image holds pixels no one examined for text."""
    ds = _clean()
    icon = pydicom.Dataset()
    icon.Rows, icon.Columns, icon.BitsAllocated, icon.PixelData = 2, 2, 8, b"\0" * 4
    ds.IconImageSequence = pydicom.Sequence([icon])
    with pytest.raises(VerificationError, match="nested"):
        _verify(ds)


def test_text_is_decoded_with_its_character_set_iso2022_included() -> None:
    ds = _clean()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 149"]
    ds.StudyDescription = "흉부 CT 홍길동"
    with pytest.raises(VerificationError, match=r"\(0008,1030\)"):
        _verify(ds, ["홍길동"])
    ds.StudyDescription = "흉부 CT"
    _verify(ds, ["홍길동"])


def test_implicit_vr_and_un_elements_are_read_as_the_dictionaries_say() -> None:
    """In implicit VR nothing stores a VR: the dictionary's tells text from binary; a known
    sequence stored as UN is walked."""
    ds = _clean("MR_small_implicit.dcm")
    del ds.StationName, ds.DeviceSerialNumber  # their own values are runs of digits
    _verify(ds, ["Quintessa"])
    ds.StudyDescription = "scan of Quintessa"
    with pytest.raises(VerificationError, match=r"\(0008,1030\)"):
        _verify(ds, ["Quintessa"])
    ds = _clean()
    item = pydicom.Dataset()
    item.CodeMeaning = "seen by Quintessa"
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, True
    write_dataset(body, item)
    encoded = struct.pack("<HHI", 0xFFFE, 0xE000, len(body.getvalue())) + body.getvalue()
    tag = Tag(0x00081032)  # ProcedureCodeSequence, stored as UN as some archives do
    ds[tag] = RawDataElement(tag, "UN", len(encoded), encoded, 0, False, True)
    with pytest.raises(VerificationError, match="identifying text"):
        _verify(ds, ["Quintessa"])

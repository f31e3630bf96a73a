"""The header transform: what each Annex E action and option does to one dataset."""

from __future__ import annotations

import copy
import struct
from pathlib import Path

import pydicom
import pytest
from dicomdata import PLANTED, bundled, make_clean_image, plant_phi
from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.dataelem import RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag

from sendit_api.errors import Permanent
from sendit_worker.header.deidentify import Replacements, deidentify, shift_date
from sendit_worker.header.profile import SAFE_PRIVATE, Options, default_profile, profile_for
from sendit_worker.identifiers.replacements import PatientIdentifiers

IDS = PatientIdentifiers(patient="PSEUDO123", jitter_days=-10, studies={"ACCX-5512": "SNEWACC"})


def _map_uid(uid: str) -> str:
    """As the pool maps them: a registered UID (a class, a syntax) to itself."""
    return uid if uid in UID_dictionary else "2.25." + str(abs(hash(uid)))


def _deidentified(ds: pydicom.Dataset | None = None) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    source = ds or plant_phi(make_clean_image(pydicom.dcmread(bundled("CT_small.dcm"))))
    original = copy.deepcopy(source)
    repl = Replacements(IDS, "ACCX-5512", _map_uid)
    deidentify(source, default_profile(), repl)
    return original, source


def test_patient_gets_the_pseudonym_and_the_study_its_accession() -> None:
    _, ds = _deidentified()
    assert ds.PatientID == "PSEUDO123"
    assert str(ds.PatientName) == "PSEUDO123"
    assert ds.AccessionNumber == "SNEWACC"


def test_dates_shift_by_the_jitter_and_birth_date_is_emptied() -> None:
    original, ds = _deidentified()
    assert original.StudyDate == "20040119"
    assert ds.StudyDate == "20040109"
    assert ds.PatientBirthDate in (None, "")
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_patient_characteristics_are_retained() -> None:
    original, ds = _deidentified()
    assert ds.PatientSex == original.PatientSex
    assert ds.get("PatientAge") == original.get("PatientAge")


def test_names_addresses_and_ids_are_gone_everywhere_nested_included() -> None:
    _, ds = _deidentified()
    for keyword in ("InstitutionName", "ReferringPhysicianName", "StationName"):
        assert ds.get(keyword) in (None, ""), keyword
    for keyword in (
        "PatientAddress",
        "OtherPatientIDs",
        "PatientMotherBirthName",
        "PatientTelephoneNumbers",
        "InstitutionAddress",
        "PatientComments",
        "ImageComments",
    ):
        assert keyword not in ds, keyword
    assert "RequestAttributesSequence" not in ds
    inner = ds.ReferencedImageSequence[0]
    assert inner.PatientID == "PSEUDO123"
    assert str(inner.PatientName) == "PSEUDO123"
    assert inner.get("ReferringPhysicianName") in (None, "")
    assert inner.ReferencedSOPInstanceUID == ds.SOPInstanceUID


def test_private_tags_are_removed_unless_on_the_safe_list() -> None:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    unsafe = ds.private_block(0x0009, "HOSPITAL PRIVATE", create=True)
    unsafe.add_new(0x10, "LO", "Somebody^Named")
    safe = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    safe.add_new(0x0C, "IS", "1000")
    _, out = _deidentified(ds)
    kept = [e for e in out if e.tag.group & 1 and e.tag.element >= 0x1000]
    assert kept, "CT_small's GE blocks hold attributes of Table E.3.10-1"
    for elem in kept:
        creator = out[(elem.tag.group << 16) | (elem.tag.element >> 8)].value
        key = (creator, elem.tag.group, elem.tag.element & 0xFF)
        assert SAFE_PRIVATE.get(key) == elem.VR, key
    assert out.private_block(0x0019, "SIEMENS MR HEADER")[0x0C].value == "1000"
    assert 0x00090010 not in out  # the unsafe block's creator went with it


def test_descriptions_are_cleaned_of_identifying_values_not_dropped() -> None:
    _, ds = _deidentified()
    family = PLANTED["PatientName"].split("^")[0]
    assert family not in ds.StudyDescription
    assert "Feelgood" not in ds.StudyDescription
    assert ds.StudyDescription.startswith("Head CT for")
    assert PLANTED["PatientID"] not in ds.SeriesDescription


def test_uids_are_remapped_but_class_uids_kept() -> None:
    original, ds = _deidentified()
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert ds.StudyInstanceUID != original.StudyInstanceUID
    assert ds.SOPClassUID == original.SOPClassUID


def test_a_class_uid_no_registry_knows_is_remapped_too() -> None:
    """A private SOP class UID may embed anything (here an MRN): default deny."""
    source = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.826.0.1.7734129"
    source.ReferencedImageSequence = pydicom.Sequence([item])
    _, ds = _deidentified(source)
    assert ds.ReferencedImageSequence[0].ReferencedSOPClassUID.startswith("2.25.")


def test_method_is_recorded_with_codes_of_the_options() -> None:
    _, ds = _deidentified()
    assert ds.PatientIdentityRemoved == "YES"
    codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113105", "113107", "113108"}


def test_shift_date_handles_dates_datetimes_and_nonsense() -> None:
    assert shift_date("20200301", -1) == "20200229"
    assert shift_date("20200301120000.5+0100", -1) == "20200229120000.5+0100"
    assert shift_date("2020", -1) is None
    assert shift_date("20201340", -1) is None
    assert shift_date("20200301-20200310", -1) == "20200229-20200309"  # both ends of a range
    assert shift_date("-20200310", -1) == "-20200309"
    assert shift_date("20200301120000-0500", -1) == "20200229120000-0500"  # an offset


def test_identifying_values_are_collected_from_nested_sequences() -> None:
    """What verification will search the output for: values from every depth, including those
    of sequences the profile removes whole."""
    ds = plant_phi(make_clean_image(pydicom.dcmread(bundled("CT_small.dcm"))))
    ds.RequestAttributesSequence[0].RequestingPhysician = "Quuxberg^Otto"  # only in there
    repl = Replacements(IDS, "ACCX-5512", lambda _: "2.25.1")
    values = deidentify(ds, default_profile(), repl).needles
    assert "quuxberg" in values
    assert "zyxwvutson" in values
    assert PLANTED["PatientID"].lower() in values
    assert PLANTED["PatientBirthDate"] in values
    assert "saint elsewhere infirmary" in values


def test_a_sequence_stored_as_UN_is_walked_like_any_sequence(tmp_path: Path) -> None:
    """A known sequence written with VR UN (as some archives do) is still de-identified."""
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item.PatientName = "Zyxwvutson^Anna"
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, True
    write_dataset(body, item)
    encoded = struct.pack("<HHI", 0xFFFE, 0xE000, len(body.getvalue())) + body.getvalue()
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    tag = Tag(0x00082112)  # SourceImageSequence
    ds[tag] = RawDataElement(tag, "UN", len(encoded), encoded, 0, False, True)
    ds.save_as(tmp_path / "un.dcm")
    stored = pydicom.dcmread(tmp_path / "un.dcm")
    assert stored.get_item(0x00082112).VR == "UN"
    identifying = deidentify(
        stored, default_profile(), Replacements(IDS, "ACCX-5512", lambda _: "2.25.1")
    )
    assert "zyxwvutson" in identifying.needles  # so verification searches the output for it
    inner = stored.SourceImageSequence[0]
    assert inner.ReferencedSOPInstanceUID == "2.25.1"
    assert "PatientName" not in inner or str(inner.PatientName) == "PSEUDO123"


def _with(options: Options, **values: str) -> pydicom.Dataset:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    ds.PatientName = "Zyxwvutson^Quintessa"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    repl = Replacements(IDS, "ACCX-5512", lambda uid: "2.25.1")
    deidentify(ds, profile_for(options), repl)
    return ds


DEFAULT = Options(keep_descriptors=(), cap_ages=True)


def test_descriptors_outside_the_kept_list_go_unless_the_batch_keeps_them() -> None:
    text = "ROI near Zyxwvutson marker"
    assert "ROIObservationDescription" not in _with(DEFAULT, ROIObservationDescription=text)
    kept = Options(keep_descriptors=("ROIObservationDescription",), cap_ages=True)
    assert (
        _with(kept, ROIObservationDescription=text).ROIObservationDescription == "ROI near marker"
    )


def test_a_kept_descriptor_must_be_text() -> None:
    with pytest.raises(Permanent, match="PatientBirthDate"):
        profile_for(Options(keep_descriptors=("PatientBirthDate",), cap_ages=True))


def test_ages_of_ninety_and_over_become_090Y_unless_the_batch_keeps_them() -> None:
    assert _with(DEFAULT, PatientAge="095Y").PatientAge == "090Y"
    assert _with(DEFAULT, PatientAge="089Y").PatientAge == "089Y"
    assert _with(DEFAULT, PatientAge="1100M").get("PatientAge") is None  # not an AS: gone
    assert _with(Options((), cap_ages=False), PatientAge="095Y").PatientAge == "095Y"


def test_an_enumerated_characteristic_keeps_only_its_defined_values() -> None:
    assert _with(DEFAULT, PatientSex="F").PatientSex == "F"
    assert "PatientSex" not in _with(DEFAULT, PatientSex="SENTINEL")


def test_values_that_are_not_what_their_vr_says_go() -> None:
    ds = _with(DEFAULT, BodyPartExamined="chest of J. Doe")
    text = b"Zyxwvutson"  # a DS holding a name, as an export may: stored, never converted
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    ds.BodyPartExamined = "chest of J. Doe"
    ds[0x00180050] = RawDataElement(Tag(0x00180050), "DS", len(text), text, 0, False, True)
    deidentify(ds, default_profile(), Replacements(IDS, "A", lambda uid: "2.25.1"))
    assert "SliceThickness" not in ds and "BodyPartExamined" not in ds
    ds = _with(DEFAULT, SliceThickness="2.5", BodyPartExamined="CHEST")
    assert (ds.SliceThickness, ds.BodyPartExamined) == (2.5, "CHEST")


def test_a_safe_private_sequence_is_walked_and_a_safe_slot_holding_text_goes() -> None:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    philips = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
    item = Dataset()
    item.PatientName, item.ImageComments = "Zyxwvutson^Quintessa", "Zyxwvutson"
    philips.add_new(0x5F, "SQ", pydicom.Sequence([item]))  # Stack Sequence: safe, walked
    philips.add_new(0x02, "LO", "Zyxwvutson")  # Chemical Shift Number is an IS: not this
    _, out = _deidentified(ds)
    block = out.private_block(0x2001, "Philips Imaging DD 001")
    (inner,) = block[0x5F].value
    assert str(inner.get("PatientName", "")) in ("", "PSEUDO123") and "ImageComments" not in inner
    assert (block.get_tag(0x02)) not in out


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def test_a_code_meaning_is_the_standards_for_a_known_code_else_cleaned() -> None:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    ds.ProcedureCodeSequence = pydicom.Sequence(
        [_code("113100", "DCM", "seen by Thistlewood"), _code("P-17", "99LOCAL", "Brain Okonkwo")]
    )
    _, out = _deidentified(ds)
    known, local = out.ProcedureCodeSequence
    assert known.CodeMeaning == "Basic Application Confidentiality Profile"
    assert local.CodeMeaning == "Brain"


def test_text_is_kept_only_for_attributes_safe_by_nature_and_cleaned() -> None:
    ds = _with(
        DEFAULT,
        CompressionDescription="lossless",  # a retired LO: nothing vouches for it
        ImageID="CHEST 3",  # an SH Annex E does not name
        Manufacturer="Okonkwo Medical Systems",  # safe by nature: kept, cleaned
    )
    assert "CompressionDescription" not in ds and "ImageID" not in ds
    assert ds.Manufacturer == "Medical Systems"


def test_numbers_are_kept_only_in_their_vr_range() -> None:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    for tag, vr, text in (
        (0x00200011, "IS", b"6175554891"),  # SeriesNumber beyond a signed 32-bit integer
        (0x00200012, "IS", b"2147483647"),  # AcquisitionNumber at its limit
        (0x00180050, "DS", b"1e999"),  # SliceThickness: no finite number
    ):
        ds[tag] = RawDataElement(Tag(tag), vr, len(text), text, 0, False, True)
    deidentify(ds, default_profile(), Replacements(IDS, "A", lambda uid: "2.25.1"))
    assert "SeriesNumber" not in ds and "SliceThickness" not in ds
    assert ds.AcquisitionNumber == 2147483647


def test_a_code_string_holding_a_name_goes() -> None:
    assert "BodyPartExamined" not in _with(DEFAULT, BodyPartExamined="JOHNSON")  # a common name
    assert "BodyPartExamined" not in _with(DEFAULT, BodyPartExamined="ZYXWVUTSON")  # the file's
    assert _with(DEFAULT, BodyPartExamined="CHEST").BodyPartExamined == "CHEST"

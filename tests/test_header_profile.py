"""The compiled Annex E profile, checked attribute by attribute on a file that has them all."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as annex_e
from dicomdata import KEY, bundled, make_clean_image
from pydicom.datadict import dictionary_VR, keyword_for_tag

from sendit_worker.header.profile import ENUMERATED, PATIENT_CHARACTERISTICS, Op, default_profile
from sendit_worker.run.shard import ShardOptions, run_shard

# Operations that keep a value when it is what its VR says and holds nothing identifying.
KEPT_IF_VALID = (Op.KEEP, Op.CLEAN, Op.CODE, Op.NUMBER, Op.AGE, Op.MEANING, Op.CODED)
TABLE_TAGS = sorted((e[0] << 16) | e[1] for e in annex_e.ALL_TAGS if len(e) == 2)


def _planted(tag: int, vr: str) -> object | None:
    """A value for every kind of attribute, distinct per tag so a survivor is recognisable."""
    h = f"{tag:08X}"
    return {
        "PN": f"Annexperson^Tag{h}",
        "DA": "19990102",
        "DT": "19990102101010",
        "TM": "101010",
        "UI": f"1.2.826.0.1.99.{tag}",
        "IS": "7",
        "DS": "7.5",
        "CS": f"ANX{h}",
        "AS": "041Y",
        "US": 1,
        "SS": 1,
        "UL": 1,
        "SL": 1,
        "FL": 1.0,
        "FD": 1.0,
        "OB": b"ANX" + h.encode() + b"\0",
        "UN": b"ANX" + h.encode() + b"\0",
        "UR": f"http://example.org/anx{h}",
    }.get(vr, f"ANX{h}" if vr in ("LO", "SH", "LT", "ST", "UT", "UC", "AE") else None)


def _with_every_attribute() -> tuple[pydicom.Dataset, dict[int, object]]:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    planted: dict[int, object] = {}
    for tag in TABLE_TAGS:
        if tag in (0x00080016, 0x00080018, 0x0020000D, 0x0020000E) or tag >> 16 in (0, 2):
            continue  # the instance's own identity stays valid
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        if vr == "SQ":
            item = pydicom.Dataset()
            item.PatientName = f"Annexperson^Seq{tag:08X}"
            ds.add_new(tag, vr, pydicom.Sequence([item]))
            planted[tag] = item.PatientName
            continue
        value = _planted(tag, vr)
        if value is not None and "or" not in vr:
            ds.add_new(tag, vr, value)
            planted[tag] = value
    return ds, planted


def test_every_annex_e_attribute_is_acted_on(tmp_path: Path) -> None:
    ds, planted = _with_every_attribute()
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "all.dcm", enforce_file_format=True)
    report = run_shard(
        ShardOptions(folders=[tmp_path / "in"], output=tmp_path / "out", key=KEY, workers=1)
    )
    assert report.anonymized == 1, report.errors
    out = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    profile = default_profile()
    kept = []
    for tag, value in planted.items():
        op = profile.op_for(tag, dictionary_VR(tag))
        survivor = out.get(tag)
        if op in KEPT_IF_VALID or survivor is None:
            continue
        if survivor.VR == "SQ":
            assert all("Annexperson" not in str(i.get("PatientName", "")) for i in survivor.value)
        elif survivor.value == value and survivor.value not in (None, "", b""):
            kept.append(keyword_for_tag(tag))
    assert kept == []
    for tag in PATIENT_CHARACTERISTICS & set(planted):
        op = profile.op_for(tag, dictionary_VR(tag))
        if tag in ENUMERATED:
            assert tag not in out, keyword_for_tag(tag)  # "ANX..." is no defined term
        elif op is not Op.CLEAN and out[tag].VR != "SQ":  # (a planted text is no word)
            assert out[tag].value == planted[tag], keyword_for_tag(tag)
    assert "Annexperson" not in (tmp_path / "out").rglob("*.dcm").__next__().read_bytes().decode(
        "latin-1"
    )


@pytest.mark.parametrize(
    ("keyword", "op"),
    [
        ("PatientName", Op.PATIENT_NAME),
        ("PatientID", Op.PATIENT_ID),
        ("AccessionNumber", Op.ACCESSION),
        ("PatientBirthDate", Op.EMPTY),
        ("StudyDate", Op.SHIFT),
        ("StudyInstanceUID", Op.UID),
        ("InstitutionName", Op.EMPTY),
        ("PatientAddress", Op.REMOVE),
        ("StudyDescription", Op.CLEAN),
        ("ImageComments", Op.REMOVE),
        ("PatientSex", Op.CODE),
        ("PatientAge", Op.AGE),
        ("SOPClassUID", Op.UID),  # registered: kept by the mapping
        ("Modality", Op.CODE),
        ("Rows", Op.KEEP),
        ("SliceThickness", Op.NUMBER),
        ("ManufacturerModelName", Op.CLEAN),  # safe by nature: cleaned
        ("CompressionDescription", Op.REMOVE),  # text no list vouches for, whatever its VR
        ("CodeMeaning", Op.MEANING),
        ("EthnicGroup", Op.CLEAN),  # a retained characteristic, as text: cleaned
        ("CodeValue", Op.CODED),
        ("TextValue", Op.REMOVE),
        ("ContentSequence", Op.REMOVE),  # SR content: X in Annex E
        ("RetrieveURL", Op.REMOVE),
        ("ICCProfile", Op.REMOVE),
        ("RedPaletteColorLookupTableData", Op.KEEP),
        ("ROIDescription", Op.REMOVE),
        ("ReferencedImageSequence", Op.RECURSE),
    ],
)
def test_resolved_operations(keyword: str, op: Op) -> None:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    assert default_profile().op_for(tag, dictionary_VR(tag)) is op


def test_private_overlay_and_unlisted_names_are_removed() -> None:
    profile = default_profile()
    assert profile.op_for(0x00091010, "LO") is Op.REMOVE
    assert profile.op_for(0x60003000, "OW") is Op.REMOVE
    assert profile.op_for(0x00321032, "PN") is Op.REMOVE  # RequestingPhysician
    assert profile.op_for(0x00431029, "UN") is Op.REMOVE
    assert profile.op_for(0x00990010, "UN") is Op.REMOVE  # unknown public

"""Test data: pydicom's bundled files (never a download) and identified files made from them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pydicom.data

BUNDLED = Path(pydicom.data.__file__).parent / "test_files"
KEY = b"test-key-0123456789abcdef-test-key"

# One of each kind the issue names: CT, MR, US, NM, RT, big endian, deflated, JPEG 2000,
# multi-frame, no file meta.
KINDS = {
    "ct": "CT_small.dcm",
    "mr": "MR_small.dcm",
    "mr_implicit": "MR_small_implicit.dcm",
    "us_big_endian": "ExplVR_BigEnd.dcm",
    "nm_jpeg2000": "JPEG2000.dcm",
    "rt_dose": "rtdose.dcm",
    "rt_plan": "rtplan.dcm",
    "deflated": "image_dfl.dcm",
    "mr_jpeg2000": "MR_small_jp2klossless.dcm",
    "multiframe_rle": "SC_rgb_rle_2frame.dcm",
    "no_meta": "ExplVR_LitEndNoMeta.dcm",
    "mr_rle": "MR_small_RLE.dcm",
}

# Kinds whose SOP Instance UIDs differ (the MR variants share one), to run in one batch.
DISTINCT = ["ct", "mr", "us_big_endian", "nm_jpeg2000", "rt_dose", "deflated", "multiframe_rle"]

PLANTED = {
    "PatientName": "Zyxwvutson^Quintessa^Marisol",
    "PatientID": "PID-7734129",
    "PatientBirthDate": "19610412",
    "AccessionNumber": "ACCX-5512",
    "InstitutionName": "Saint Elsewhere Infirmary",
    "InstitutionAddress": "742 Evergreen Terrace",
    "ReferringPhysicianName": "Feelgood^Nicholas",
    "OtherPatientIDs": "OLDMRN-99817",
    "PatientMotherBirthName": "Brightwater^Ottilie",
    "PatientAddress": "1313 Mockingbird Lane",
    "PatientTelephoneNumbers": "555-0199-222",
    "StationName": "XRAYROOM-77",
    "PerformingPhysicianName": "Hackenbush^Quincy",
}


def bundled(name: str) -> Path:
    path = BUNDLED / name
    assert path.exists(), f"{name} is not bundled with pydicom"
    return path


def dciodvfy_errors(path: Path) -> set[str]:
    """The kinds of error dciodvfy (dicom3tools) finds in a file: values differ between an
    input and its output by design, so numbers, quoted values and paths are masked."""
    dciodvfy = shutil.which("dciodvfy")
    assert dciodvfy, "dciodvfy is missing: scripts/test.sh installs dicom3tools"
    result = subprocess.run([dciodvfy, "-new", str(path)], capture_output=True, text=True)
    lines = (result.stdout + result.stderr).splitlines()
    return {
        re.sub(r"<[^>]*>|\"[^\"]*\"|\d+", "#", line) for line in lines if line.startswith("Error")
    }


def copy_bundled(dest: Path, names: list[str]) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(bundled(n), dest / n)) for n in names]


def make_clean_image(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Mark an image as original with no burned-in text, so deid's filters let it pass."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"
    ds.Manufacturer = "Test Maker"
    return ds


def plant_phi(ds: pydicom.Dataset, values: dict[str, str] = PLANTED) -> pydicom.Dataset:
    """Identifiers everywhere they hide: top level, nested sequences, private blocks, text."""
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    family = values["PatientName"].split("^")[0]
    ds.StudyDescription = f"Head CT for {family} per Dr Feelgood"
    ds.SeriesDescription = f"axial {values['PatientID']}"
    ds.ImageComments = f"{family} moved during scan"
    ds.PatientComments = "prefers morning appointments"
    item = pydicom.Dataset()
    item.AccessionNumber = values["AccessionNumber"]
    item.RequestingPhysician = values["ReferringPhysicianName"]
    inner = pydicom.Dataset()
    inner.PatientName = values["PatientName"]
    inner.PatientID = values["PatientID"]
    item.ReferencedPatientSequence = pydicom.Sequence([inner])
    ds.RequestAttributesSequence = pydicom.Sequence([item])  # removed whole by Annex E
    ref = pydicom.Dataset()  # walked item by item by Annex E (X/Z/U*)
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ref.PatientName = values["PatientName"]
    ref.PatientID = values["PatientID"]
    ref.ReferringPhysicianName = values["ReferringPhysicianName"]
    ds.ReferencedImageSequence = pydicom.Sequence([ref])
    block = ds.private_block(0x0009, "HOSPITAL PRIVATE", create=True)
    block.add_new(0x10, "LO", values["PatientName"])
    block.add_new(0x11, "LO", values["PatientID"])
    return ds


def identified_file(path: Path, source: str = "CT_small.dcm", **overrides: str) -> Path:
    ds = make_clean_image(pydicom.dcmread(bundled(source)))
    plant_phi(ds, {**PLANTED, **overrides})
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def planted_tokens(values: dict[str, str] = PLANTED) -> list[str]:
    """Every planted value and each part of every planted name, for leak scans."""
    tokens = set(values.values())
    for keyword in (
        "PatientName",
        "ReferringPhysicianName",
        "PatientMotherBirthName",
        "PerformingPhysicianName",
    ):
        tokens.update(p for p in values[keyword].split("^") if p)
    return sorted(tokens)


def leaks(data: bytes, tokens: list[str]) -> list[str]:
    lowered = data.lower()
    return [t for t in tokens if t.lower().encode() in lowered]

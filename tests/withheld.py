"""Identified images that the default pipeline withholds, one per reason class it can reach, and
one it releases: a source folder for quarantine and review tests."""

from __future__ import annotations

import random
from pathlib import Path

import pydicom
from dicomdata import identified_file

from sendit_worker.cli.sample import identify, make_patient, scanned_document

# The reason class each file is withheld for (sendit_api.status.WITHHELD_REASONS); None: released.
CLASSES = {
    "header-yes.dcm": "burned-in-header",  # BurnedInAnnotation YES, no text in the pixels
    "letter.dcm": "document",  # a scanned letter (ConversionType SD): text by nature
    "page.dcm": "document",  # the same page, undeclared: the search finds it is one
    "face.dcm": "face",  # declared to show a face
    "blocked.dcm": "filter-rule",  # a blacklist rule of the batch's filters
    "hsv.dcm": "not-cleaned",  # a colour space the pixel stage does not clean
    "plain.dcm": None,
}
BLOCKED_MAKER = "Blocked Maker"
# The batch's filter file that withholds blocked.dcm.
BLOCKING = f"""FORMAT dicom

%filter blacklist

LABEL A scanner whose images never leave
  contains Manufacturer {BLOCKED_MAKER}
"""
LETTER_TEXT = (15, 20, 300, 400)  # x, y, w, h: every line of the page's text


def write_withheld(folder: Path) -> dict[str, Path]:
    """The files of CLASSES in `folder`, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (source, changes) in {
        "header-yes.dcm": ("CT_small.dcm", {"BurnedInAnnotation": "YES"}),
        "face.dcm": ("MR_small.dcm", {"RecognizableVisualFeatures": "YES"}),
        "blocked.dcm": ("CT_small.dcm", {"Manufacturer": BLOCKED_MAKER}),
        "hsv.dcm": ("CT_small.dcm", {"PhotometricInterpretation": "HSV"}),
        "plain.dcm": ("MR_small.dcm", {}),
    }.items():
        path = identified_file(folder / name, source=source)
        ds = pydicom.dcmread(path)
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(path, enforce_file_format=True)
        paths[name] = path
    patient = make_patient(1, random.Random(1))
    for name in ("letter.dcm", "page.dcm"):
        ds = scanned_document(patient)
        identify(ds, patient, pydicom.uid.generate_uid(), pydicom.uid.generate_uid())
        if name == "page.dcm":
            del ds.ConversionType
        ds.save_as(folder / name, enforce_file_format=True)
        paths[name] = folder / name
    return paths

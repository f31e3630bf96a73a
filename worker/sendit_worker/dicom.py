"""Facts about DICOM that several stages use, each said once: the pixel data tags, the classes
of value representations, an element's VR, and a dataset's frame count."""

from __future__ import annotations

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.tag import BaseTag

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)  # Float and Double Float Pixel Data
PIXEL_TAGS = (PIXEL_DATA, *FLOAT_PIXEL_DATA)

# VRs that hold free text, any of which may carry an identifying value.
TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
# Binary numbers (AT, a tag, is a number of its own kind: see the profile).
NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
DATE_VRS = frozenset({"DA", "DT"})


def dictionary_vr(tag: int) -> str:
    """The dictionary's VR of a public tag, UN when it has none; it may be ambiguous
    ("US or SS")."""
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def element_vr(ds: Dataset, tag: BaseTag) -> str:
    """An element's VR as stored. Where the file stores none (implicit VR), as pydicom reads it:
    the dictionary's, an ambiguous one resolved from the dataset (US or SS by its pixel
    representation), a private one from pydicom's private dictionary. A public element stored as
    UN is read as the dictionary says. UN when nothing knows it: binary, never text."""
    stored = ds.get_item(tag).VR
    if stored and stored != "UN":
        return stored
    known = dictionary_vr(tag)
    if stored == "UN" or (known != "UN" and " or " not in known):
        return "UN" if " or " in known else known
    try:
        resolved = ds[tag].VR
    except Exception:  # a value pydicom cannot convert: nothing vouches for its VR
        return "UN"
    return "UN" if not resolved or " or " in resolved else resolved


def frame_count(ds: Dataset) -> int:
    """NumberOfFrames as a count: absent, empty or 0 is one frame. ValueError when it is not a
    whole number, or is negative."""
    try:
        value = ds.get("NumberOfFrames")
        count = 1 if value in (None, "") else int(value)
    except (TypeError, ValueError):
        raise ValueError("NumberOfFrames is not a number") from None
    if count < 0:
        raise ValueError("NumberOfFrames is negative")
    return count or 1

"""Header de-identification of one dataset: the compiled profile applied element by element.

Elements the profile keeps are never decoded, so they (and the pixel data) are written back
byte for byte; only what must change is touched.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

from . import words
from .identifiers import PatientIdentifiers
from .profile import METHOD_CODES, METHOD_TEXT, SAFE_PRIVATE, TEXT_VRS, Op, Profile

_DUMMY_TEXT = "ANONYMIZED"
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
# Name parts too common to be identifying on their own (PN prefixes and suffixes are skipped).
MIN_TOKEN = 3
PIXEL_DATA = 0x7FE00010
BIRTH_DATE = 0x00100030


@dataclass(frozen=True)
class Replacements:
    """What one file's identifying values become."""

    ids: PatientIdentifiers
    item_key: str
    map_uid: Callable[[str], str]


def identifying_values(ds: Dataset, profile: Profile) -> frozenset[str]:
    """Values in the header that identify someone: names, IDs, addresses, the birth date...

    Collected from every element (nested sequences included) whose value the profile removes or
    replaces, plus every person name; the same set drives Clean Descriptors and verification.
    `deidentify` collects them in the same walk that changes the dataset; this is that
    collection alone.
    """
    found: set[str] = set()
    _collect(ds, profile, found)
    return _lowered(found)


def _collect(ds: Dataset, profile: Profile, found: set[str]) -> None:
    for tag in list(ds.keys()):
        t = int(tag)
        if t & 0x10000 or t == PIXEL_DATA:
            continue  # private values are removed wholesale; pixel data is not header
        vr = _vr(ds, tag, t)
        if vr == "SQ":
            for item in _items(ds[tag]):
                _collect(item, profile, found)
        else:
            _collect_element(ds, tag, t, vr, profile.op_for(t, vr), found)


def _collect_element(ds: Dataset, tag: BaseTag, t: int, vr: str, op: Op, found: set[str]) -> None:
    if vr == "PN":
        found.update(_name_tokens(ds[tag].value))
    elif t == BIRTH_DATE or (vr in TEXT_VRS and op in _IDENTIFYING_OPS):
        found.update(_strings(ds[tag].value))


def _vr(ds: Dataset, tag: BaseTag, t: int) -> str:
    vr = ds.get_item(tag).VR
    # Implicit VR files store none; pydicom reads a known tag stored as UN with its own VR.
    return vr if vr not in (None, "UN") else _dictionary_vr(t)


def _items(elem: DataElement) -> Sequence:
    if elem.VR != "SQ":  # the file and the dictionary disagree: nothing is left unseen
        raise ValueError("a sequence attribute does not hold a sequence")
    return elem.value or Sequence()


def _lowered(found: set[str]) -> frozenset[str]:
    return frozenset(v.lower() for v in found if len(v) >= MIN_TOKEN)


_IDENTIFYING_OPS = frozenset({Op.REMOVE, Op.EMPTY, Op.DUMMY, Op.PATIENT_ID, Op.ACCESSION})


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list | tuple | MultiValue) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


def _name_tokens(value: object) -> list[str]:
    tokens: list[str] = []
    for name in _strings(value):
        for group in name.split("="):
            parts = group.split("^")
            for part in parts[:3]:  # family, given, middle: not prefix or suffix
                tokens.extend(t for t in re.split(r"[\s,]+", part) if t)
            tokens.append(" ".join(p for p in parts[:3][::-1] if p).strip())
    return tokens


def clean_text(text: str, identifying: frozenset[str]) -> str:
    """Cut every identifying value out of free text (whole words, any case)."""
    return re.sub(r"\s{2,}", " ", words.remove(text, identifying)).strip(" ,;:-^")


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA or the date part of a DT; None when it is not a full date."""
    if len(value) < 8 or not value[:8].isdigit():
        return None
    try:
        shifted = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8])) + dt.timedelta(days)
    except ValueError:
        return None
    return shifted.strftime("%Y%m%d") + value[8:]


def deidentify(ds: Dataset, profile: Profile, repl: Replacements) -> frozenset[str]:
    """De-identify a dataset in place, in one walk, and record how.

    Returns the identifying values found on the way (see `identifying_values`): descriptions
    are cleaned of them once the walk has seen every one, and `verify` searches the output
    for them.
    """
    found: set[str] = set()
    descriptors: list[DataElement] = []
    _apply(ds, profile, repl, found, descriptors)
    identifying = _lowered(found)
    for elem in descriptors:
        _map_values(elem, lambda v: clean_text(v, identifying))
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
    ds.add_new(0x00120062, "CS", "YES")  # PatientIdentityRemoved
    ds.add_new(0x00120063, "LO", METHOD_TEXT)  # DeidentificationMethod
    ds.add_new(0x00280303, "CS", "MODIFIED")  # LongitudinalTemporalInformationModified
    codes = []
    for value, meaning in METHOD_CODES:
        item = Dataset()
        item.add_new(0x00080100, "SH", value)  # CodeValue
        item.add_new(0x00080102, "SH", "DCM")  # CodingSchemeDesignator
        item.add_new(0x00080104, "LO", meaning)  # CodeMeaning
        codes.append(item)
    ds.add_new(0x00120064, "SQ", Sequence(codes))  # DeidentificationMethodCodeSequence
    return identifying


def _apply(
    ds: Dataset,
    profile: Profile,
    repl: Replacements,
    found: set[str],
    descriptors: list[DataElement],
) -> None:
    """Each element: its identifying values collected, then its operation applied (cleaning
    waits in `descriptors` for the whole walk)."""
    safe = _safe_private_blocks(ds)
    kept_blocks: set[tuple[int, int]] = set()
    for tag in list(ds.keys()):
        t = int(tag)
        if t & 0x10000:  # private
            element = t & 0xFFFF
            if 0x10 <= element <= 0xFF:
                continue  # a creator: decided below, once its block is known
            block = (t >> 16, element >> 8)
            if element >= 0x1000 and (*safe.get(block, ("",)), element & 0xFF) in SAFE_PRIVATE:
                kept_blocks.add(block)
            else:
                del ds[tag]
            continue
        if t == PIXEL_DATA:
            continue
        vr = _vr(ds, tag, t)
        op = profile.op_for(t, vr)
        if op is Op.RECURSE:
            for item in _items(ds[tag]):
                _apply(item, profile, repl, found, descriptors)
            continue
        if vr == "SQ":
            for item in _items(ds[tag]):  # what goes with the sequence identified someone
                _collect(item, profile, found)
        else:
            _collect_element(ds, tag, t, vr, op, found)
        if op is Op.KEEP:
            continue
        if op is Op.REMOVE:
            del ds[tag]
        elif op is Op.CLEAN:
            descriptors.append(ds[tag])
        else:
            _transform(ds, ds[tag], op, repl)
    # Private creators stay only for blocks that kept a safe element.
    for tag in [t for t in ds.keys() if t & 0x10000 and 0x10 <= (t & 0xFFFF) <= 0xFF]:  # noqa: SIM118
        if (tag >> 16, tag & 0xFF) not in kept_blocks:
            del ds[tag]


_SAFE_CREATORS = frozenset(creator for creator, _, _ in SAFE_PRIVATE)
_SAFE_GROUPS = frozenset(group for _, group, _ in SAFE_PRIVATE)


def _safe_private_blocks(ds: Dataset) -> dict[tuple[int, int], tuple[str, int]]:
    """(group, block) -> (creator, group) for the blocks whose creator has safe elements."""
    blocks: dict[tuple[int, int], tuple[str, int]] = {}
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset yields elements, not tags)
        # (Only creators in groups that have safe elements are decoded.)
        if tag >> 16 in _SAFE_GROUPS and 0x10 <= (tag & 0xFFFF) <= 0xFF:
            creator = ds[tag].value
            creator = creator.strip() if isinstance(creator, str) else ""
            if creator in _SAFE_CREATORS:
                blocks[(tag >> 16, tag & 0xFF)] = (creator, tag >> 16)
    return blocks


def _transform(ds: Dataset, elem: DataElement, op: Op, repl: Replacements) -> None:
    vr = elem.VR
    if op is Op.EMPTY:
        elem.value = Sequence() if vr == "SQ" else None
    elif op is Op.DUMMY:
        elem.value = _dummy(vr)
    elif op is Op.UID:
        _map_values(elem, repl.map_uid)
    elif op is Op.SHIFT:
        _shift(ds, elem, repl.ids.jitter_days)
    elif op is Op.PATIENT_ID or op is Op.PATIENT_NAME:
        elem.value = repl.ids.patient
    elif op is Op.ACCESSION:
        elem.value = repl.ids.studies.get(repl.item_key, "") if elem.value else ""


def _map_values(elem: DataElement, fn: Callable[[str], str]) -> None:
    value = elem.value
    if value is None or value == "":
        return
    if isinstance(value, str):
        elem.value = fn(value)
    else:
        elem.value = [fn(str(v)) for v in value]


def _shift(ds: Dataset, elem: DataElement, days: int) -> None:
    values = _strings(elem.value)
    if not values:
        return
    shifted = [shift_date(v, days) for v in values]
    if any(s is None for s in shifted):
        elem.value = None  # not a date we can shift: it goes, rather than stay as it was
    else:
        elem.value = shifted if len(shifted) > 1 else shifted[0]


def _dummy(vr: str) -> object:
    if vr in TEXT_VRS or vr == "CS":
        return _DUMMY_TEXT
    if vr in ("IS", "DS"):
        return "0"
    if vr in _NUMBER_VRS:
        return 0
    if vr == "AS":
        return "000D"
    if vr == "TM":
        return "000000"
    return None  # binary and anything else: empty


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"

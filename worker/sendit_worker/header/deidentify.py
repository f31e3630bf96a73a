"""Header de-identification of one dataset: the compiled profile applied element by element.

Elements the profile keeps unconditionally are never decoded, so they (and the pixel data) are
written back byte for byte; only what must change, or be checked, is touched. One walk collects
the file's identifying values and applies the profile; text that depends on them (cleaned
text, code meanings, codes) is decided once the walk has seen every one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from ..dicom import NUMBER_VRS, PIXEL_DATA, TEXT_VRS, element_vr
from ..identifiers.replacements import PatientIdentifiers
from .profile import (
    CLEAN_PIXELS,
    ENUMERATED,
    METHOD_CODES,
    METHOD_TEXT,
    SAFE_PRIVATE,
    Op,
    Profile,
    op_for_private,
)
from .scanner import Scanner, fold, id_spellings, name_parts, scanner_for
from .vocabulary import Vocabulary, code_meaning

_DUMMY_TEXT = "ANONYMIZED"
BIRTH_DATE = 0x00100030
OLDEST_AGE = 90  # HIPAA Safe Harbor: 90 and above are one category, written 090Y
_AS = re.compile(r"^(\d{3})([DWMY])$")
# What a stored value of these VRs may be, every value of it (checked on the stored bytes).
_VALUE = {
    "IS": rb" *[+-]?\d{1,12} *",
    "DS": rb" *[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)? *",
    "CS": rb"[A-Z0-9 _]{0,16}",
}
_STORED = {vr: re.compile(rb"(?:%s)(?:\\(?:%s))*[\0 ]*" % (v, v)) for vr, v in _VALUE.items()}
IS_RANGE = (-(2**31), 2**31 - 1)  # PS3.5: an IS is a signed 32-bit integer
DS_LENGTH = 16  # PS3.5: a DS value is at most 16 bytes
_CODE_WORD = re.compile(rb"[A-Z]{4,}")  # shorter ones are abbreviations (IM, ST, LL), not names


class HeaderError(Exception):
    """An element that could not be de-identified: which one, and the kind of trouble."""

    def __init__(self, tag: BaseTag, exc: Exception) -> None:
        name = keyword_for_tag(tag) or ("a private element" if tag.group & 1 else "unknown")
        if isinstance(exc, UnicodeError):
            what = "text not in the declared character set"
        elif isinstance(exc, ValueError | TypeError):
            what = f"a value that is not what its VR says ({type(exc).__name__})"
        else:
            what = f"a malformed element ({type(exc).__name__})"
        super().__init__(f"({tag.group:04X},{tag.element:04X}) {name}: {what}")


@dataclass(frozen=True)
class Replacements:
    """What one file's identifying values become."""

    ids: PatientIdentifiers
    item_key: str
    map_uid: Callable[[str], str]


@dataclass
class Identity:
    """What one file's header says identifies someone, as it is collected."""

    names: set[str]
    values: set[str]

    def scanner(self) -> Scanner:
        return scanner_for(frozenset(self.names), frozenset(self.values))


def _collect(ds: Dataset, profile: Profile, found: Identity) -> None:
    """The identifying values of what goes whole (a sequence the profile removes with its
    items): collected, so that the output is searched for them anywhere else."""
    for tag in list(ds.keys()):
        t = int(tag)
        if t & 0x10000 or t == PIXEL_DATA:
            continue  # private values are removed wholesale; pixel data is not header
        vr = element_vr(ds, tag)
        if vr == "SQ":
            for item in _items(ds[tag]):
                _collect(item, profile, found)
        else:
            _collect_element(ds, tag, t, vr, profile, found)


def _collect_element(
    ds: Dataset, tag: BaseTag, t: int, vr: str, profile: Profile, found: Identity
) -> None:
    if vr == "PN":
        for name in stored_texts(ds, tag):
            found.names.update(name_parts(name))
    elif t == BIRTH_DATE or (vr in TEXT_VRS and _identifies(t, vr, profile)):
        for value in stored_texts(ds, tag):
            found.values.update(id_spellings(value))


def _identifies(t: int, vr: str, profile: Profile) -> bool:
    """A text element whose value is taken to identify someone: one the profile removes or
    replaces, except short text removed only because nothing vouches for it (a vendor's LO
    holding CHEST must not cut CHEST out of every description)."""
    return profile.op_for(t, vr) in _IDENTIFYING_OPS and (t in profile.table or vr not in _SHORT)


_SHORT = frozenset({"LO", "SH"})


def _items(elem: DataElement) -> Sequence:
    if elem.VR != "SQ":  # the file and the dictionary disagree: nothing is left unseen
        raise ValueError("a sequence attribute does not hold a sequence")
    return elem.value or Sequence()


_IDENTIFYING_OPS = frozenset({Op.REMOVE, Op.EMPTY, Op.DUMMY, Op.PATIENT_ID, Op.ACCESSION})


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list | tuple | MultiValue) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA, the date part of a DT, or both ends of a range (A-B, -B, A-); None when a
    part is not a full date."""
    if value.count("-") == 1 and not _is_dt_offset(value):  # a range: both ends move
        ends = [shift_date(v, days) if v else "" for v in value.split("-")]
        return None if None in ends else "-".join(e or "" for e in ends)
    if len(value) < 8 or not value[:8].isdigit():
        return None
    try:
        shifted = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8])) + dt.timedelta(days)
    except ValueError:
        return None
    return shifted.strftime("%Y%m%d") + value[8:]


def _is_dt_offset(value: str) -> bool:
    """A DT with a negative UTC offset (20200101120000-0500), not a range."""
    head, _, tail = value.rpartition("-")
    return len(head) > 8 and len(tail) == 4 and tail.isdigit()


def cap_age(value: str, cap: bool = True) -> str | None:
    """A valid AS, with ages of 90 years and more as 090Y when `cap`; None when not an age."""
    match = _AS.match(value.strip())
    if not match:
        return None
    years = int(match[1]) / {"D": 365.25, "W": 52.18, "M": 12, "Y": 1}[match[2]]
    return f"{OLDEST_AGE:03d}Y" if cap and years >= OLDEST_AGE else value.strip()


def deidentify(ds: Dataset, profile: Profile, repl: Replacements) -> Scanner:
    """De-identify a dataset in place, in one walk, and record how.

    Returns the scanner of the identifying values found on the way (names, IDs, addresses, the
    birth date: every value the profile removes or replaces, and every person name, nested
    sequences included): descriptions are cleaned by it and retained text checked by it once
    the walk has seen every value, and `verify` scans the output with it.
    """
    found = Identity(set(), set())
    pending: list[tuple[Dataset, BaseTag, Op]] = []
    _apply(ds, profile, repl, found, pending)
    scanner = found.scanner()
    words = profile.words
    for parent, tag, op in pending:
        if op is Op.CODED:
            if any(scanner.finds(v, patterns=False) for v in stored_texts(parent, tag)):
                del parent[tag]  # kept only when none of the file's values is in it
            continue
        if op is Op.CODE:
            if _names_a_value(_stored_strings(parent, tag), scanner, words):
                del parent[tag]  # a code string holding the file's own name (ZYXWVUTSON)
            continue
        meaning = _known_meaning(parent) if op is Op.MEANING else None
        if meaning is not None:
            parent[tag].value = meaning
        else:
            _map_values(parent[tag], lambda v: words.clean(scanner.clean(v)))
    ds.add_new(0x00120062, "CS", "YES")  # PatientIdentityRemoved
    ds.add_new(0x00120063, "LO", METHOD_TEXT)  # DeidentificationMethod
    ds.add_new(0x00280303, "CS", "MODIFIED")  # LongitudinalTemporalInformationModified
    codes = [_method_code(value, meaning) for value, meaning in METHOD_CODES]
    ds.add_new(0x00120064, "SQ", Sequence(codes))  # DeidentificationMethodCodeSequence
    return scanner


def _names_a_value(codes: list[str], scanner: Scanner, words: Vocabulary) -> bool:
    """A code string's word is one of the file's identifying values and no known word: a
    surname CHEST is no reason to drop BodyPartExamined CHEST."""
    return any(
        (w := fold(word)) in scanner.needles and not words.knows(w)
        for code in codes
        for word in code.replace("_", " ").split()
    )


def _known_meaning(item: Dataset) -> str | None:
    """The standard's meaning of the item's code, when the code is one the dictionaries know
    (read after the code value itself was checked)."""
    scheme, value = item.get(0x00080102), item.get(0x00080100)  # CodingSchemeDesignator, CodeValue
    if scheme is None or value is None:
        return None
    return code_meaning(str(scheme.value or "").strip(), str(value.value or "").strip())


def record_clean_pixels(ds: Dataset) -> None:
    """The pixels were checked for burned-in text and cleaned of it: the output says so."""
    ds.add_new(0x00280301, "CS", "NO")  # BurnedInAnnotation
    ds.add_new(0x00120063, "LO", [*ds[0x00120063].value, CLEAN_PIXELS[1].removesuffix(" Option")])
    ds[0x00120064].value.append(_method_code(*CLEAN_PIXELS))


def _method_code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.add_new(0x00080100, "SH", value)  # CodeValue
    item.add_new(0x00080102, "SH", "DCM")  # CodingSchemeDesignator
    item.add_new(0x00080104, "LO", meaning)  # CodeMeaning
    return item


def _apply(
    ds: Dataset,
    profile: Profile,
    repl: Replacements,
    found: Identity,
    pending: list[tuple[Dataset, BaseTag, Op]],
) -> None:
    """Each element: its identifying values collected, then its operation applied (text that
    the scanner decides waits in `pending` for the whole walk)."""
    safe = _safe_private_blocks(ds)
    kept_blocks: set[tuple[int, int]] = set()
    for tag in list(ds.keys()):
        try:
            _apply_element(ds, tag, profile, repl, found, pending, safe, kept_blocks)
        except (HeaderError, RecursionError):
            raise
        except Exception as exc:  # says which element and what kind of trouble, no value
            raise HeaderError(tag, exc) from None
    # Private creators stay only for blocks that kept a safe element.
    for tag in [t for t in ds.keys() if t & 0x10000 and 0x10 <= (t & 0xFFFF) <= 0xFF]:  # noqa: SIM118
        if (tag >> 16, tag & 0xFF) not in kept_blocks:
            del ds[tag]


def _apply_element(
    ds: Dataset,
    tag: BaseTag,
    profile: Profile,
    repl: Replacements,
    found: Identity,
    pending: list[tuple[Dataset, BaseTag, Op]],
    safe: dict[tuple[int, int], tuple[str, int]],
    kept_blocks: set[tuple[int, int]],
) -> None:
    t = int(tag)
    if t & 0x10000:  # private
        element = t & 0xFFFF
        if 0x10 <= element <= 0xFF:
            return  # a creator: decided below, once its block is known
        block = (t >> 16, element >> 8)
        wanted = SAFE_PRIVATE.get((*safe.get(block, ("",)), element & 0xFF))
        if element < 0x1000 or wanted is None or element_vr(ds, tag) != wanted:
            del ds[tag]
            return
        op = op_for_private(wanted)
        if op is Op.RECURSE:  # a safe sequence: its items are de-identified like any
            for item in _items(ds[tag]):
                _apply(item, profile, repl, found, pending)
        else:
            _apply_op(ds, tag, op, repl, pending, profile)
        if tag in ds:
            kept_blocks.add(block)
        return
    if t == PIXEL_DATA:
        return
    vr = element_vr(ds, tag)
    op = profile.op_for(t, vr)
    if op is Op.RECURSE:
        for item in _items(ds[tag]):
            _apply(item, profile, repl, found, pending)
        return
    if vr == "SQ":
        for item in _items(ds[tag]):  # what goes with the sequence identified someone
            _collect(item, profile, found)
    else:
        _collect_element(ds, tag, t, vr, profile, found)
    _apply_op(ds, tag, op, repl, pending, profile)


def _apply_op(
    ds: Dataset,
    tag: BaseTag,
    op: Op,
    repl: Replacements,
    pending: list[tuple[Dataset, BaseTag, Op]],
    profile: Profile,
) -> None:
    if op is Op.KEEP:
        return
    if op is Op.REMOVE:
        del ds[tag]
    elif op in (Op.CLEAN, Op.MEANING, Op.CODED):
        pending.append((ds, tag, op))
    elif op is Op.NUMBER or op is Op.CODE:
        if not _stored_is_valid(ds, tag, profile.words) or (
            int(tag) in ENUMERATED and not set(_stored_strings(ds, tag)) <= ENUMERATED[int(tag)]
        ):  # a DS of "Smith", an IS of 6175554891, a CS of free text or a common name
            del ds[tag]
        elif op is Op.CODE:
            pending.append((ds, tag, op))  # nor the file's own values: decided after the walk
    elif op is Op.AGE:
        stored = _stored_strings(ds, tag)
        ages = [cap_age(v, profile.cap_ages) for v in stored]
        if None in ages:
            del ds[tag]
        elif ages != stored:
            ds[tag].value = ages if len(ages) > 1 else ages[0]
    else:
        _transform(ds, tag, op, repl)


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


def _transform(ds: Dataset, tag: BaseTag, op: Op, repl: Replacements) -> None:
    """Apply a value operation (the checks that remove an element are `_apply_op`'s). The new
    value replaces the stored one, read from its bytes where they are plain ASCII: pydicom
    never converts what is thrown away."""
    vr = element_vr(ds, tag)
    if op is Op.EMPTY:
        value: object = Sequence() if vr == "SQ" else None
    elif op is Op.DUMMY:
        value = _dummy(vr)
    elif op is Op.UID or op is Op.SHIFT:
        values = stored_texts(ds, tag)
        if not values:
            return
        if op is Op.UID:
            value = _single([repl.map_uid(v) for v in values])
        else:  # not a date that can be shifted: emptied, rather than kept as it was
            shifted = [shift_date(v, repl.ids.jitter_days) for v in values]
            value = None if None in shifted else _single(shifted)
    elif op is Op.PATIENT_ID or op is Op.PATIENT_NAME:
        value = repl.ids.patient
    else:  # Op.ACCESSION
        value = repl.ids.studies.get(repl.item_key, "") if stored_texts(ds, tag) else ""
    ds.add_new(tag, vr, value)


def _single(values: list) -> object:
    return values if len(values) > 1 else values[0]


def stored_texts(ds: Dataset, tag: BaseTag) -> list[str]:
    """A text element's values, decoded: from the stored bytes when they are plain ASCII (no
    ISO 2022 escapes), which every DICOM character set reads alike, else by pydicom with the
    dataset's character set."""
    value = ds.get_item(tag).value
    if isinstance(value, bytes) and value.isascii() and b"\x1b" not in value:
        return _stored_strings(ds, tag)
    return _strings(ds[tag].value)


def _stored_is_valid(ds: Dataset, tag: BaseTag, words: Vocabulary) -> bool:
    """Every value of an IS, DS or CS, as stored (before pydicom converts it), is what its VR
    says: a number in its range, a code string that is no common name."""
    value = ds.get_item(tag).value
    if value is None:
        return True
    if not isinstance(value, bytes):  # already converted (set in memory): its text
        value = "\\".join(_strings(value)).encode("ascii", "replace")
    return _valid(element_vr(ds, tag), value, words)


@lru_cache(maxsize=4096)
def _valid(vr: str, value: bytes, words: Vocabulary) -> bool:
    pattern = _STORED.get(vr)
    if pattern is None or pattern.fullmatch(value) is None:
        return False
    values = [v.strip() for v in value.rstrip(b"\0 ").split(b"\\")]
    if vr == "IS":
        return all(IS_RANGE[0] <= int(v) <= IS_RANGE[1] for v in values if v)
    if vr == "DS":
        return all(len(v) <= DS_LENGTH and math.isfinite(float(v)) for v in values if v)
    return not any(words.is_name(w.decode()) for w in _CODE_WORD.findall(value))


def _stored_strings(ds: Dataset, tag: BaseTag) -> list[str]:
    """A text element's values as stored, before pydicom converts them."""
    raw = ds.get_item(tag)
    if isinstance(raw.value, bytes):
        text = raw.value.decode("ascii", "replace").rstrip("\0 ")
        return [v.strip() for v in text.split("\\") if v.strip()]
    return _strings(raw.value)


def _map_values(elem: DataElement, fn: Callable[[str], str]) -> None:
    value = elem.value
    if value is None or value == "":
        return
    if isinstance(value, str):
        elem.value = fn(value)
    else:
        elem.value = [fn(str(v)) for v in value]


def _dummy(vr: str) -> object:
    if vr in TEXT_VRS or vr == "CS":
        return _DUMMY_TEXT
    if vr in ("IS", "DS"):
        return "0"
    if vr in NUMBER_VRS:
        return 0
    if vr == "AS":
        return "000D"
    if vr == "TM":
        return "000000"
    return None  # binary and anything else: empty

"""The built-in de-identification profile: DICOM PS3.15 Annex E, compiled once into a tag table.

The Basic Application Level Confidentiality Profile's action table (current edition) comes from
the `dicom-anonymizer` package, which tracks the standard; this module resolves each action,
together with the options Sendit applies, into one concrete operation per tag:

- Retain Longitudinal Temporal Information with Modified Dates: dates are shifted, not removed.
- Retain Patient Characteristics: age, sex, size, weight and the like are kept.
- Clean Descriptors: a short, named list of descriptions research needs (`KEPT_DESCRIPTORS`)
  is kept cleaned (`Op.CLEAN`: the scanner cuts the file's identifying values and patterns,
  then every word not known to be safe goes, see vocabulary); every other descriptor goes, as
  the basic profile says, unless a batch keeps it.

Anything the table does not name is denied unless Sendit can vouch for it. Text is kept only
for the attributes named here as safe by nature (`SAFE_TEXT`: the device, the technique), and
cleaned as descriptors are; never because of its VR. A code's meaning is the standard's when
the dictionaries know the code, else cleaned. By VR: sequences are walked, UIDs remapped (class
UIDs and transfer syntaxes kept), dates shifted, numbers kept only when they are what their VR
says and in its range (an IS holding "Smith" or 6175554891 goes), codes only when they are code
strings and no common name; free text, names, URLs, AE titles, binary values other than pixel
data and lookup tables, unknown and UN elements are removed. Private tags are removed unless on
the safe list (with the VR it gives: a number only where the table says the element is one);
overlays and curves are removed; ages over 89 become 090Y (HIPAA Safe Harbor).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as annex_e
from pydicom.datadict import tag_for_keyword

from sendit_api.errors import Permanent

from ..dicom import BINARY_VRS, DATE_VRS, NUMBER_VRS, PIXEL_DATA, dictionary_vr
from .vocabulary import Vocabulary, vocabulary

EDITION = "2026c"


class Op(enum.Enum):
    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"  # zero-length value: the attribute stays, as Type 2 attributes must
    DUMMY = "dummy"  # a fixed, non-identifying value of the right VR
    UID = "uid"  # consistent remapping
    SHIFT = "shift"  # dates moved by the patient's jitter
    CLEAN = "clean"  # identifying text and unknown words cut out (Clean Descriptors)
    MEANING = "meaning"  # a code meaning: the standard's for a known code, else cleaned
    CODED = "coded"  # a code: kept unless the file's identifying values are in it
    NUMBER = "number"  # an IS or DS kept only when every value is a number in the VR's range
    CODE = "code"  # a CS kept only when every value is a code string and no common name
    AGE = "age"  # an AS kept when valid, over 89 years as 090Y
    RECURSE = "recurse"  # a sequence whose items get the same profile
    PATIENT_ID = "patient-id"
    PATIENT_NAME = "patient-name"
    ACCESSION = "accession"


# Codes of CID 7050 (De-identification Method) naming what this profile does.
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113105", "Clean Descriptors Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)
CLEAN_PIXELS = ("113101", "Clean Pixel Data Option")  # burned-in text checked for and blanked
# De-identification Method is LO: several values, each at most 64 characters.
METHOD_TEXT = [f"Sendit PS3.15 Annex E Basic Profile {EDITION}"] + [
    name.removesuffix(" Option") for _, name in METHOD_CODES[1:]
]
# Sendit's own words in the output, which no source value can have put there: verification does
# not search them (a removed value "Patient" is no reason to fail "Retain Patient
# Characteristics").
_MEANINGS = [name for _, name in (*METHOD_CODES, CLEAN_PIXELS)]
OWN_TEXT = frozenset((*METHOD_TEXT, *_MEANINGS, CLEAN_PIXELS[1].removesuffix(" Option")))

# Retain Patient Characteristics Option: kept (as their VR allows: an age over 89 is capped).
PATIENT_CHARACTERISTICS = frozenset(
    tag_for_keyword(k)
    for k in (
        "PatientAge",
        "PatientSex",
        "PatientSexNeutered",
        "PatientSize",
        "PatientWeight",
        "EthnicGroup",
        "EthnicGroups",
        "EthnicGroupCodeSequence",
        "SmokingStatus",
        "PregnancyStatus",
    )
)

# Clean Descriptors: the descriptions kept by default, because research needs them to find
# and group images; cleaned by the scanner. Every other descriptor of the table is removed.
KEPT_DESCRIPTORS = frozenset(
    tag_for_keyword(k)
    for k in (
        "StudyDescription",
        "SeriesDescription",
        "ProtocolName",
        "PerformedProcedureStepDescription",
        "RequestedProcedureDescription",
        "ScheduledProcedureStepDescription",
        "AcquisitionProtocolDescription",
        "AcquisitionDeviceProcessingDescription",
        "DerivationDescription",
        "RTPlanDescription",
    )
)

# Text attributes Annex E does not name that are safe by nature (what made the image and how),
# kept cleaned as descriptors are. Any other text attribute the table does not name goes.
SAFE_TEXT = frozenset(
    tag_for_keyword(k)
    for k in (
        "Manufacturer",
        "ManufacturerModelName",
        "SoftwareVersions",
        "SecondaryCaptureDeviceManufacturer",
        "SecondaryCaptureDeviceManufacturerModelName",
        "SecondaryCaptureDeviceSoftwareVersions",
        "ConvolutionKernel",
        "FilterType",
        "SequenceName",
        "PulseSequenceName",
        "ReceiveCoilName",
        "TransmitCoilName",
        "ImagedNucleus",
        "ContrastBolusRoute",
        "Radiopharmaceutical",
        "ReconstructionMethod",
        "CollimatorGridName",
        "PlateType",
        "TransducerData",
        "ProcessingFunction",
        "AcquisitionDeviceProcessingCode",
        "WindowCenterWidthExplanation",
        "RescaleType",
        "LUTExplanation",
        "PositionReferenceIndicator",
        "DimensionDescriptionLabel",
        "TimezoneOffsetFromUTC",
    )
)
CODE_MEANING = tag_for_keyword("CodeMeaning")

# Identifiers PS3.15 Annex E does not name: removed (or, where the object needs a value, a
# dummy), wherever they stand.
UNLISTED_IDENTIFIERS = {
    tag_for_keyword(k): op
    for k, op in (
        ("RetrieveURL", "remove"),
        ("PixelDataProviderURL", "remove"),
        ("HL7InstanceIdentifier", "remove"),
        ("StorageMediaFileSetID", "remove"),
        ("StorageMediaFileSetUID", "uid"),
        ("ReferencedFileID", "remove"),  # path components of the source's files
        ("LocalNamespaceEntityID", "remove"),
        ("UniversalEntityID", "remove"),
        ("PatientBirthDateInAlternativeCalendar", "remove"),
        ("PatientDeathDateInAlternativeCalendar", "remove"),
        ("PatientAlternativeCalendar", "remove"),
        ("ContentLabel", "dummy"),
        ("ContentCreatorName", "remove"),
        ("DocumentTitle", "remove"),
        ("EncapsulatedDocument", "remove"),
    )
}

# Coded values: short, meaningful as codes (a SNOMED code is a long run of digits), so only
# the file's own identifying values are looked for in them, not the patterns.
CODED = frozenset(
    tag_for_keyword(k)
    for k in (
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "LongCodeValue",
        "URNCodeValue",
        "MappingResource",
        "ContextGroupVersion",
        "ContextIdentifier",
    )
)

# Binary values that are data, not text: pixel data and what draws it. Any other binary
# element (an ICC profile, an encapsulated document, a vendor blob) is removed.
KNOWN_BINARY = frozenset(
    tag_for_keyword(k)
    for k in (
        "PixelData",
        "FloatPixelData",
        "DoubleFloatPixelData",
        "ExtendedOffsetTable",
        "ExtendedOffsetTableLengths",
        "RedPaletteColorLookupTableData",
        "GreenPaletteColorLookupTableData",
        "BluePaletteColorLookupTableData",
        "AlphaPaletteColorLookupTableData",
        "LargeRedPaletteColorLookupTableData",
        "LargeGreenPaletteColorLookupTableData",
        "LargeBluePaletteColorLookupTableData",
        "SegmentedRedPaletteColorLookupTableData",
        "SegmentedGreenPaletteColorLookupTableData",
        "SegmentedBluePaletteColorLookupTableData",
        "SegmentedAlphaPaletteColorLookupTableData",
        "LUTData",
        "WaveformData",
        "ChannelMinimumValue",
        "ChannelMaximumValue",
        "WaveformPaddingValue",
    )
)

# Retained characteristics whose values the standard enumerates: any other value is not a
# characteristic Sendit can vouch for, and goes.
ENUMERATED = {
    tag_for_keyword("PatientSex"): frozenset({"M", "F", "O"}),
    tag_for_keyword("PatientSexNeutered"): frozenset({"ALTERED", "UNALTERED"}),
    tag_for_keyword("SmokingStatus"): frozenset({"YES", "NO", "UNKNOWN"}),
}

# Never shifted: the birth date is emptied and the birth time removed, as the basic profile says.
NOT_SHIFTED = frozenset(tag_for_keyword(k) for k in ("PatientBirthDate", "PatientBirthTime"))


def _safe_private() -> dict[tuple[str, int, int], str]:
    """PS3.15 Table E.3.10-1 (data/safe_private.tsv): (private creator, group, element offset
    within the block) -> the VR the element must have. One stored with another VR (text in a
    numeric slot, UN) is removed; a kept one still goes through its VR's rules."""
    text = (resources.files("sendit_worker") / "data" / "safe_private.tsv").read_text()
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return {
        (creator, int(group, 16), int(element, 16)): vr for group, element, vr, creator in rows[1:]
    }


SAFE_PRIVATE = _safe_private()

_PSEUDONYMS = {
    tag_for_keyword("PatientID"): Op.PATIENT_ID,
    tag_for_keyword("PatientName"): Op.PATIENT_NAME,
    tag_for_keyword("AccessionNumber"): Op.ACCESSION,
}
DESCRIPTOR_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
# What an element the table does not name becomes, by its VR (anything else, text included:
# removed).
_BY_VR = {
    "SQ": Op.RECURSE,
    "DA": Op.SHIFT,
    "DT": Op.SHIFT,
    "TM": Op.KEEP,
    "IS": Op.NUMBER,
    "DS": Op.NUMBER,
    "CS": Op.CODE,
    "AS": Op.AGE,
    **dict.fromkeys(NUMBER_VRS | {"AT"}, Op.KEEP),
}
# A safe private element, by the VR the safe list gives it: its short text is cleaned.
_PRIVATE_BY_VR = {**_BY_VR, "LO": Op.CLEAN, "SH": Op.CLEAN}
# What the table's compound actions resolve to (where a choice is allowed, the one that keeps
# the object conformant: an empty Type 2 attribute rather than none).
_BASIC = {
    "D_TAGS": Op.DUMMY,
    "Z_TAGS": Op.EMPTY,
    "X_TAGS": Op.REMOVE,
    "U_TAGS": Op.UID,
    "Z_D_TAGS": Op.EMPTY,
    "X_Z_TAGS": Op.EMPTY,
    "X_D_TAGS": Op.REMOVE,
    "X_Z_D_TAGS": Op.EMPTY,
    "X_Z_U_STAR_TAGS": Op.RECURSE,
}


def _resolve(tag: int, basic: Op) -> Op:
    """The operation for a tag the Annex E table names, with Sendit's options applied."""
    vr = dictionary_vr(tag)
    if tag in _PSEUDONYMS:
        return _PSEUDONYMS[tag]
    if tag in PATIENT_CHARACTERISTICS:
        # kept as their VR allows (an age capped, text cleaned, a name in a sequence gone)
        return Op.CLEAN if vr in DESCRIPTOR_VRS else _BY_VR.get(vr, Op.REMOVE)
    if vr in DATE_VRS and tag not in NOT_SHIFTED:
        return Op.SHIFT
    if vr == "UI":
        return Op.UID
    if vr == "SQ":
        # A sequence cannot hold a dummy value: its content goes; an empty one keeps Type 2.
        return {Op.DUMMY: Op.REMOVE, Op.UID: Op.RECURSE}.get(basic, basic)
    if tag in KEPT_DESCRIPTORS:
        return Op.CLEAN
    return basic


@dataclass(frozen=True)
class Profile:
    """Compiled tag table: one operation per public tag the table names; rules for the rest."""

    table: dict[int, Op]
    cap_ages: bool = True  # ages of 90 years and more become 090Y (HIPAA Safe Harbor)
    words: Vocabulary = field(default_factory=vocabulary)  # what cleaned text may keep

    def op_for(self, tag: int, vr: str) -> Op:
        op = self.table.get(tag)
        if op is not None:
            return op
        group = tag >> 16
        if group & 1:
            return Op.REMOVE  # private: the caller keeps those on SAFE_PRIVATE
        if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            return Op.REMOVE  # curves and overlays can carry burned-in text
        if (tag & 0xFFFF) == 0 or tag > PIXEL_DATA:
            return Op.REMOVE  # group lengths, trailing padding and signatures
        if vr == "UI":
            # Every UID is mapped: a registered one (a class UID, a transfer syntax) maps to
            # itself, any other, a private class UID that may embed a number included, to a new one.
            return Op.UID
        if vr in BINARY_VRS:
            return Op.KEEP if tag in KNOWN_BINARY else Op.REMOVE
        return _BY_VR.get(vr, Op.REMOVE)  # text, names, URLs and AE titles go


def op_for_private(vr: str) -> Op:
    """A safe private element, by the VR the safe list gives it."""
    return _PRIVATE_BY_VR.get(vr, Op.REMOVE)


@cache
def default_profile() -> Profile:
    table: dict[int, Op] = {}
    for category, basic in _BASIC.items():
        for entry in getattr(annex_e, category):
            if len(entry) != 2:
                continue  # repeating groups (curves, overlays): covered by Profile.op_for
            tag = (entry[0] << 16) | entry[1]
            table[tag] = _resolve(tag, basic)
    for tag, op in UNLISTED_IDENTIFIERS.items():
        table[tag] = Op(op)
    for tag in SAFE_TEXT:
        table.setdefault(tag, Op.CLEAN)
    table[CODE_MEANING] = Op.MEANING
    for tag in CODED:
        table.setdefault(tag, Op.CODED)
    for tag, op in _PSEUDONYMS.items():
        table[tag] = op
    return Profile(table)


@dataclass(frozen=True)
class Options:
    """A batch's choices over the default (spec.deidentify: keepDescriptors, capAges)."""

    keep_descriptors: tuple[str, ...]
    cap_ages: bool


@cache
def profile_for(options: Options) -> Profile:
    """The default profile with a batch's options. Raises Permanent for a descriptor that is
    not a text attribute of the dictionary (only text can be cleaned)."""
    table = dict(default_profile().table)
    for keyword in options.keep_descriptors:
        tag = tag_for_keyword(keyword)
        if tag is None or dictionary_vr(tag) not in DESCRIPTOR_VRS:
            raise Permanent(f"deidentify.keepDescriptors: {keyword!r} is not a text attribute")
        table[tag] = Op.CLEAN
    return Profile(table, cap_ages=options.cap_ages)

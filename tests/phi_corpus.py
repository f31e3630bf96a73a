# ruff: noqa: RUF001  (the corpus spells names in other scripts on purpose)
"""A planted-PHI corpus: one case per class of header leak, each a dataset made from pydicom's
bundled CT with sentinels planted where real exports hide identity, and the sentinels that must
not appear in any output (decoded with the file's character set, at any depth).

`python tests/phi_corpus.py DIR` writes the corpus to DIR (one folder per case), to run any
version of `sendit run` on it; `leaked(out, case)` lists what got through.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from dicomdata import bundled, make_clean_image
from pydicom import Dataset, Sequence


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], Dataset]
    sentinels: tuple[str, ...]


def _base(name: str = "Zyxwvutson^Quintessa", pid: str = "PID-7734129") -> Dataset:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))
    ds.PatientName, ds.PatientID = name, pid
    ds.PatientBirthDate = "19550615"
    ds.AccessionNumber = "ACCX-5512"
    return ds


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def free_text_outside_annex_e() -> Dataset:
    ds = _base()
    ds.AnatomicRegionSequence = Sequence(
        [_item(CodeValue="T-A0100", CodingSchemeDesignator="SRT", CodeMeaning="Zyxwvutson brain")]
    )
    ds.StructureSetROISequence = Sequence([_item(ROINumber=1, ROIName="Zyxwvutson tumour")])
    ds.BeamSequence = Sequence([_item(BeamNumber=1, BeamName="Quintessa AP")])
    ds.SegmentSequence = Sequence([_item(SegmentNumber=1, SegmentLabel="Zyxwvutson lesion")])
    ds.FrameLabel = "Zyxwvutson frame"
    ds.GraphicLayerSequence = Sequence(
        [_item(GraphicLayer="L1", GraphicLayerDescription="notes on Zyxwvutson")]
    )
    ds.WindowCenterWidthExplanation = "Quintessa preset"
    ds.FrameComments = "Zyxwvutson moved"
    ds.ROIObservationDescription = "nothing identifying at all"  # a C descriptor not kept
    ds.DocumentTitle = "Report of Zyxwvutson"
    return ds


def weak_descriptors() -> Dataset:
    ds = _base(pid="000123456")
    ds.StudyDescription = "CT head MRN 123456 tel (555) 867-5309"
    ds.SeriesDescription = "axial born 06/15/1955, 15.06.1955 or 1955-06-15"
    ds.ProtocolName = "from 1313 Mockingbird Lane visit"
    return ds


def name_variants() -> Dataset:
    ds = _base(name="Garcia-Lopez^Ng Wu")
    ds.StudyDescription = "CT for Lopez"
    ds.SeriesDescription = "Ng head"
    ds.ProtocolName = "WU protocol"
    ds.RequestedProcedureDescription = "Wu, Ng Garcia-Lopez"
    return ds


def spelled(name: str, charset: str | list[str], **texts: str) -> Callable[[], Dataset]:
    """A patient named in a character set, the name written again in descriptions."""

    def build() -> Dataset:
        ds = _base(name=name)
        ds.SpecificCharacterSet = charset
        for keyword, text in texts.items():
            setattr(ds, keyword, text)
        return ds

    return build


umlauts_and_dotless_i = spelled(
    "Müller^Işık",
    "ISO_IR 192",
    StudyDescription="MULLER scan",
    SeriesDescription="for ışık",
    ProtocolName="ISIK follow-up",
)
latin1 = spelled(
    "Çelikkaya^Zoë", "ISO_IR 100", StudyDescription="CT ÇELIKKAYA", SeriesDescription="Zoe axial"
)
cyrillic = spelled(
    "Иванов^Пётр", "ISO_IR 144", StudyDescription="КТ ИВАНОВ", SeriesDescription="пётр серия"
)
japanese_iso2022 = spelled(
    "Yamada^Tarou=山田^太郎=やまだ^たろう", ["", "ISO 2022 IR 87"], StudyDescription="山田様の検査"
)
korean_iso2022 = spelled(
    "Hong^Gildong=洪^吉洞=홍^길동", ["", "ISO 2022 IR 149"], StudyDescription="홍 길동 검사"
)
chinese_utf8 = spelled("Wang^XiaoDong=王^小东=", "ISO_IR 192", StudyDescription="王小东胸部CT")


def private_blocks_that_look_safe() -> Dataset:
    ds = _base()
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "LO", "Zyxwvutson^Quintessa")  # B_value holding a name
    block.add_new(
        0x0D, "SQ", Sequence([_item(PatientComments="Zyxwvutson", OtherPatientIDs="OLDMRN-99817")])
    )
    return ds


def unknown_and_binary() -> Dataset:
    ds = _base()
    ds.add_new(0x00191100, "UN", b"Zyxwvutson")  # not in any block
    ds.add_new(0x00282000, "OB", b"\x00\x00desc Zyxwvutson Quintessa\x00")  # ICC profile
    ds.add_new(0x00420011, "OB", b"%PDF-1.4 Zyxwvutson report")  # encapsulated document
    ds.add_new(0x00170010, "LO", "Zyxwvutson")  # odd group without a creator: private
    return ds


def identifiers_annex_e_does_not_name() -> Dataset:
    ds = _base()
    ds.RetrieveURL = "https://pacs.example.org/wado?pid=PID-7734129"
    ds.PixelDataProviderURL = "https://pacs.example.org/px/PID-7734129"
    ds.StorageMediaFileSetID = "PID7734129"
    ds.ContentLabel = "ZYXWVUTSON"
    ds.HL7InstanceIdentifier = "PID-7734129^^^HOSP"
    ds.file_meta.SourceApplicationEntityTitle = "ZYXWVUTSONPACS"
    ds.file_meta.ImplementationVersionName = "QUINTESSA_1"
    return ds


def dates_that_escape() -> Dataset:
    ds = _base()
    ds.DateOfSecondaryCapture = "19990102"
    ds.add_new(0x00181200, "DA", ["19990102-19990303"])  # DateOfLastCalibration, a range
    ds.PatientBirthDateInAlternativeCalendar = "1376/03/25"
    ds.PatientAge = "095Y"
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def code_meanings_holding_names() -> Dataset:
    """Code meanings as free text: of codes the standard knows (the meaning becomes the
    standard's) and of a local scheme (held to the word rule)."""
    ds = _base()
    ds.ProcedureCodeSequence = Sequence([_code("77477000", "SCT", "CT per Dr Thistlewood")])
    ds.PerformedProtocolCodeSequence = Sequence(
        [_code("PROT-17", "99LOCAL", "Brain routine Okonkwo Adaeze")]
    )
    ds.AnatomicRegionSequence = Sequence([_code("T-A0100", "SRT", "Brain of Okonkwo")])
    ds.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding by Thistlewood")])
    return ds


def descriptors_of_a_pre_anonymized_export() -> Dataset:
    """The header's own name is already blank: only the words themselves give a name away."""
    ds = _base(name="", pid="ANON0001")
    ds.StudyDescription = "CT chest Okonkwo Adaeze follow-up"
    ds.SeriesDescription = "Rose Baker axial 5mm"
    ds.ProtocolName = "BRAIN per Dr White, Larchmont Road"
    ds.PerformedProcedureStepDescription = "MR brain Thistlewood_protocol"
    ds.RequestedProcedureDescription = "CT head call 555-4891 or 5554891 or 555 4891"
    return ds


# Korean and Japanese names in ISO 2022 descriptions, the header's own name blank.
names_in_iso2022_kr = spelled(
    "", ["", "ISO 2022 IR 149"], StudyDescription="김민준 흉부 CT", SeriesDescription="박서연 검사"
)
names_in_iso2022_jp = spelled("", ["", "ISO 2022 IR 87"], StudyDescription="佐藤花子 頭部CT")


def text_kept_by_vr() -> Dataset:
    """Attributes no list vouches for, whatever their VR (a retired LO, an SH), a code string
    holding a name, and a phone number in safe private slots: an IS beyond its range, an SH."""
    ds = _base(name="")
    ds.CompressionDescription = "Okonkwo lossless"  # retired LO
    ds.ImageID = "Thistlewood 3"  # SH that Annex E does not name
    ds.BodyPartExamined = "OKONKWO"  # CS: a name in a code string
    philips = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
    philips.add_new(0x02, "IS", "6175554891")  # Chemical Shift Number (IS): beyond IS's range
    gems = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    gems.add_new(0x27, "SH", "6175554891")  # a text slot: no number like this
    return ds


def text_in_the_preamble() -> Dataset:
    ds = _base()
    ds.preamble = b"Zyxwvutson Quintessa PID-7734129".ljust(128, b"\0")
    return ds


def deep_nesting() -> Dataset:
    ds = _base()
    inner = ds
    for _ in range(150):
        item = Dataset()
        inner.ReferencedImageSequence = Sequence([item])
        inner = item
    inner.ReferencedSOPInstanceUID = "1.2.3"
    inner.PatientName = "Zyxwvutson^Quintessa"
    inner.ImageComments = "OLDMRN-99817"
    return ds


CASES = [
    Case("free-text", free_text_outside_annex_e, ("zyxwvutson", "quintessa")),
    Case(
        "descriptors",
        weak_descriptors,
        ("123456", "867-5309", "06/15/1955", "15.06.1955", "1955-06-15", "mockingbird"),
    ),
    Case("name-variants", name_variants, ("garcia", "lopez", "ng", "wu")),
    Case("umlauts", umlauts_and_dotless_i, ("müller", "muller", "ışık", "isik")),
    Case("latin-1", latin1, ("çelikkaya", "celikkaya", "zoe")),
    Case("cyrillic", cyrillic, ("иванов", "пётр")),
    Case("iso2022-jp", japanese_iso2022, ("山田", "yamada")),
    Case("iso2022-kr", korean_iso2022, ("홍", "길동", "gildong")),
    Case("utf8-zh", chinese_utf8, ("王", "小东", "xiaodong")),
    Case("private", private_blocks_that_look_safe, ("zyxwvutson", "oldmrn-99817")),
    Case("binary", unknown_and_binary, ("zyxwvutson", "quintessa")),
    Case("unnamed-ids", identifiers_annex_e_does_not_name, ("7734129", "zyxwvutson", "quintessa")),
    Case("dates", dates_that_escape, ("19990102", "19990303", "1376/03/25", "095y")),
    Case("deep", deep_nesting, ("zyxwvutson", "oldmrn-99817")),
    Case("preamble", text_in_the_preamble, ("zyxwvutson", "7734129")),
    Case("code-meanings", code_meanings_holding_names, ("thistlewood", "okonkwo", "adaeze")),
    Case(
        "pre-anonymized",
        descriptors_of_a_pre_anonymized_export,
        (
            "okonkwo",
            "adaeze",
            "rose",
            "baker",
            "white",
            "larchmont",
            "thistlewood",
            "555-4891",
            "5554891",
            "4891",
        ),
    ),
    Case("iso2022-kr-names", names_in_iso2022_kr, ("김민준", "민준", "박서연", "서연")),
    Case("iso2022-jp-names", names_in_iso2022_jp, ("佐藤", "花子")),
    Case("kept-by-vr", text_kept_by_vr, ("okonkwo", "thistlewood", "6175554891")),
]


def write(root: Path) -> None:
    for case in CASES:
        folder = root / case.name
        folder.mkdir(parents=True, exist_ok=True)
        case.build().save_as(folder / "image.dcm", enforce_file_format=True)


def texts(path: Path) -> Iterator[str]:
    """Everything an output says, decoded with its character set: the preamble, every value at
    every depth (file meta included; binary values as Latin-1), the pixel data aside."""
    ds = pydicom.dcmread(path)
    yield (ds.preamble or b"").decode("latin-1")
    stack: list[Dataset] = [ds.file_meta, ds]
    while stack:
        for elem in stack.pop():
            if elem.VR == "SQ":
                stack.extend(elem.value)
            elif elem.tag != 0x7FE00010:
                value = elem.value
                yield value.decode("latin-1") if isinstance(value, bytes) else str(value)


def leaked(out: Path, case: Case) -> list[str]:
    """The case's sentinels found in any output under `out` (whole words, any case)."""
    found: set[str] = set()
    for path in out.rglob("*.dcm"):
        text = " | ".join(texts(path)).casefold()
        for s in case.sentinels:
            word = re.escape(s.strip().casefold())
            if re.search(rf"(?<![^\W_]){word}(?![^\W_])", text) or (
                not s.isascii() and s.casefold() in text
            ):
                found.add(s)
    return sorted(found)


if __name__ == "__main__":
    write(Path(sys.argv[1]))

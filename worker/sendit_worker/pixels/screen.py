"""The header's side of the pixel policy: what deid's filter rules say about an image.

The filter files are deid's default one and each one the user names, deid's filter syntax being
the rule format. A matching rule may carry coordinates (`coordinates`, `ctpcoordinates`,
`keepcoordinates`, `from:` ultrasound regions): those regions are blanked. A few rules, and
a few header facts, say the image is text by nature (a scanned document, a report,
demographic data): it is withheld. A user's blacklist rule without coordinates withholds, as
the user asked. Every other rule, deid's blanket ones included ("missing ImageType", "DERIVED
or SECONDARY CT/MR"), only says what the header suspects: the detector decides.

Only an exact BurnedInAnnotation of NO is a claim of no text (deid's whitelist rule `contains
BurnedInAnnotation No` would also match UNKNOWN and `YES\\NO`): the rules see any other value
as absent. Verdicts are memoized on the stored values of the few fields the rules read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import FileDataset, FileMetaDataset

from ..header.deidlib import DeidRecipe, has_burned_pixels

CACHE_SIZE = 4096
SPECIFIC_CHARACTER_SET = 0x00080005
BURNED_IN = 0x00280301
BURNED_IN_HEADER = "burned-in annotation: the header says BurnedInAnnotation=YES"
# deid's default rules that name an image class made of text.
TEXT_BY_NATURE_LABELS = frozenset({"Any REPORTDATA", "Any DEMOGRAPHICDATA, INVALID"})
# Header facts of the same kind: a scanned document (Conversion Type SD), a document modality.
TEXT_BY_NATURE_HEADER = {"ConversionType": {"SD"}, "Modality": {"DOC"}}
SOP_CLASS = 0x00080016
MODALITY = 0x00080060
TEXT_BY_NATURE_TAGS = frozenset(tag_for_keyword(k) for k in TEXT_BY_NATURE_HEADER) | {SOP_CLASS}
# A face: declared (Recognizable Visual Features YES), or a photograph not declared free of one
# (VL Photographic and Video Photographic images, external-camera photography).
RECOGNIZABLE = 0x00280302
PHOTOGRAPH_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.77.1.4", "1.2.840.10008.5.1.4.1.1.77.1.4.1"}
)
PHOTOGRAPH_MODALITIES = frozenset({"XC"})
FACE_TAGS = frozenset({RECOGNIZABLE, SOP_CLASS, MODALITY})


@dataclass(frozen=True)
class Verdict:
    """What the header says about one image's pixels; reasons never carry a value."""

    text_by_nature: str | None = None  # withheld under any policy
    flagged: str | None = None  # the first rule that flagged it (the withhold policy's reason)
    regions: tuple[tuple[int, str], ...] = ()  # (1 keep | 0 blank, deid coordinate), in order
    says_text: bool = False  # BurnedInAnnotation is exactly YES
    says_no_text: bool = False  # BurnedInAnnotation is exactly NO
    face: str | None = None  # declared to show a face: withheld unless the batch retains it


@dataclass(frozen=True)
class _Rule:
    recipe: int  # 0: deid's default file; then the user's, in order
    group: str
    label: str
    coordinates: tuple[tuple[int, str], ...]


class PixelScreen:
    """deid's filters, parsed once per process."""

    def __init__(self, extra_filters: Sequence[Path] = ()) -> None:
        self.recipes = [DeidRecipe()] + [DeidRecipe(str(p), base=False) for p in extra_filters]
        self._rules: dict[int, _Rule] = {}
        fields: set[str] = set()
        for index, recipe in enumerate(self.recipes):
            for group, items in (recipe.get_filters() or {}).items():
                for item in items:
                    for flt in item.get("filters") or ():
                        fields.update(flt["field"])
                    self._adopt(index, group, item)
        # A field is a keyword or a tag written 0xGGGGEEEE (deid's filter syntax). A name that is
        # neither (deid's default recipe has misspellings) is never present, as deid finds it.
        # The character set is part of the key: equal bytes decode alike only under it.
        tags = {t for t in map(_tag, fields) if t is not None}
        fixed = {SPECIFIC_CHARACTER_SET, BURNED_IN} | TEXT_BY_NATURE_TAGS | FACE_TAGS
        self.tags = tuple(sorted(tags | fixed))
        self._verdicts: dict[tuple, Verdict] = {}

    def _adopt(self, index: int, group: str, item: dict) -> None:
        coordinates = tuple((int(v), str(c)) for v, c in item.get("coordinates") or ())
        label = str(item.get("name", "")).removeprefix("LABEL").strip()  # deid keeps the word
        self._rules[id(item["coordinates"])] = _Rule(index, group, label, coordinates)

    def verdict(self, ds: Dataset) -> Verdict:
        key = tuple((tag, _key(ds.get_item(tag).value)) for tag in self.tags if tag in ds)
        if key not in self._verdicts:
            if len(self._verdicts) >= CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[key] = self._evaluate(key, ds)
        return self._verdicts[key]

    def _evaluate(self, key: tuple, ds: Dataset) -> Verdict:
        probe = FileDataset("screen", Dataset(), file_meta=FileMetaDataset())
        for tag, _ in key:
            elem = ds.get_item(tag)
            if isinstance(elem, RawDataElement):  # decoded for the probe only: `ds` stays as read
                elem = convert_raw_data_element(elem, encoding=ds.original_character_set, ds=ds)
            probe[tag] = elem
        claim = _exact(probe, BURNED_IN)
        if BURNED_IN in probe and claim not in ("YES", "NO"):
            del probe[BURNED_IN]  # UNKNOWN, YES\NO, garbage: no claim either way
        nature = _text_by_nature(probe)
        flagged: str | None = BURNED_IN_HEADER if claim == "YES" else None
        regions: list[tuple[int, str]] = []
        for recipe in self.recipes:
            if not recipe.get_filters():
                continue  # a recipe of header actions only
            results = has_burned_pixels(probe, deid=recipe)["results"]
            rules = [self._rules[id(r["coordinates"])] for r in results]
            for result, rule in zip(results, rules, strict=True):
                # deid resolves `from:` coordinates in the rule itself, in place (and the probe
                # has no regions): the rule is put back. They are resolved image by image.
                result["coordinates"][:] = [[v, c] for v, c in rule.coordinates]
            cleared = any(r.group == "whitelist" for r in rules)
            for rule in rules:
                if rule.group == "whitelist":
                    continue  # a claim of no text: not trusted by the clean policy
                regions.extend(rule.coordinates)
                if rule.recipe == 0 and rule.label in TEXT_BY_NATURE_LABELS:
                    nature = nature or f"text by nature: deid {rule.group} rule matched"
                elif rule.recipe > 0 and rule.group == "blacklist" and not rule.coordinates:
                    nature = nature or "withheld by a blacklist rule of the batch's filters"
                if flagged is None and not cleared:
                    flagged = f"possible burned-in text: deid {rule.group} rule matched"
        return Verdict(
            text_by_nature=nature,
            flagged=flagged,
            regions=tuple(regions),
            says_text=claim == "YES",
            says_no_text=claim == "NO",
            face=_face(probe),
        )


def _text_by_nature(probe: Dataset) -> str | None:
    if UID_dictionary.get(_exact(probe, SOP_CLASS), ("",))[0].startswith("Encapsulated"):
        return "text by nature: an encapsulated document (PDF, CDA...)"
    for keyword, values in TEXT_BY_NATURE_HEADER.items():
        if _exact(probe, tag_for_keyword(keyword)) in values:
            return f"text by nature: {keyword} names a document"
    return None


def _face(probe: Dataset) -> str | None:
    declared = _exact(probe, RECOGNIZABLE)
    if declared == "YES":
        return "recognizable visual features: the header says the image shows a face"
    photograph = (
        _exact(probe, SOP_CLASS) in PHOTOGRAPH_CLASSES
        or _exact(probe, MODALITY) in PHOTOGRAPH_MODALITIES
    )
    if photograph and declared != "NO":
        return "recognizable visual features: a photograph not declared free of a face"
    return None


def _exact(probe: Dataset, tag: int) -> str:
    """A single value as written (a multi-valued one is never equal to a single word)."""
    value = probe[tag].value if tag in probe else None
    return value.strip() if isinstance(value, str) else ""


def _tag(field: str) -> int | None:
    if "0x" in field:
        try:
            return int(field, 0)
        except ValueError:
            return None
    return tag_for_keyword(field)


def _key(value: object) -> object:
    if isinstance(value, str | int | float | bytes) or value is None:
        return value
    return repr(value)

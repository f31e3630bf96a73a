"""Pixel policy: images that may show a patient's identity in their pixels are withheld.

An image is withheld when its header says BurnedInAnnotation=YES, or when a filter file puts it
on a graylist or blacklist and no whitelist of the same file clears it. The filter files are the
default one shipped with deid, and each one the user names: a user's rule is never cleared by
deid's default whitelist. Pixel data itself is never decoded here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import FileDataset, FileMetaDataset

from .deidlib import DeidRecipe, has_burned_pixels

CLEARING_GROUPS = frozenset({"whitelist"})
CACHE_SIZE = 4096
SPECIFIC_CHARACTER_SET = 0x00080005
BURNED_IN_HEADER = "burned-in annotation: the header says BurnedInAnnotation=YES"


class PixelScreen:
    """deid's filters, parsed once per process.

    deid interprets some 350 rule lines per image; the verdict depends only on the few header
    fields the rules name, and those repeat across a series, so verdicts are memoized on those
    elements' values as stored (equal bytes, equal verdict; nothing is decoded for a cache hit).
    """

    def __init__(self, extra_filters: Sequence[Path] = ()) -> None:
        self.recipes = [DeidRecipe()] + [DeidRecipe(str(p), base=False) for p in extra_filters]
        fields: set[str] = set()
        for recipe in self.recipes:
            for items in (recipe.get_filters() or {}).values():
                for item in items:
                    for group in item.get("filters") or ():
                        fields.update(group["field"])
        # A field is a keyword or a tag written 0xGGGGEEEE (deid's filter syntax). A name that is
        # neither (deid's default recipe has misspellings) is never present, as deid finds it.
        # The character set is part of the key: equal bytes decode alike only under it.
        tags = {t for t in map(_tag, fields) if t is not None} | {SPECIFIC_CHARACTER_SET}
        self.tags = tuple(sorted(tags))
        self._verdicts: dict[tuple, str | None] = {}

    def withheld_reason(self, ds: Dataset) -> str | None:
        """Why this image must not leave, or None when it may.

        Reasons name the rule group, never a value from the image.
        """
        if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            return BURNED_IN_HEADER
        key = tuple((tag, _key(ds.get_item(tag).value)) for tag in self.tags if tag in ds)
        if key not in self._verdicts:
            if len(self._verdicts) >= CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[key] = self._evaluate(key, ds)
        return self._verdicts[key]

    def _evaluate(self, key: tuple, ds: Dataset) -> str | None:
        probe = FileDataset("screen", Dataset(), file_meta=FileMetaDataset())
        for tag, _ in key:
            elem = ds.get_item(tag)
            if isinstance(elem, RawDataElement):  # decoded for the probe only: `ds` stays as read
                elem = convert_raw_data_element(elem, encoding=ds.original_character_set, ds=ds)
            probe[tag] = elem
        for recipe in self.recipes:
            if not recipe.get_filters():
                continue  # a recipe of header actions only
            results = has_burned_pixels(probe, deid=recipe)["results"]
            if any(r["group"] in CLEARING_GROUPS for r in results):
                continue
            flagged = [r["group"] for r in results if r["group"] not in CLEARING_GROUPS]
            if flagged:
                return f"possible burned-in text: deid {flagged[0]} rule matched"
        return None


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

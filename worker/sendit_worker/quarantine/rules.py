"""A reviewer's rules, in deid's filter syntax (the format the pixel stage reads, pixels.screen):
a region (`x,y,w,h` in the image's pixels) or a rule file, as what a release adds to its
batch's filters; and a region saved as a rule for the image's device (manufacturer, model,
size), for the next batches to clean that layout without review.

A region's rule matches every image with pixels (`present Rows`: deid fails on a rule without
criteria), since a release holds only the images it was made for. A device's rule matches the
device exactly.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset

from sendit_api.errors import Permanent

from ..files import write_atomically
from ..header.deidlib import DeidRecipe
from ..pixels.regions import RegionError, blank_mask
from ..pixels.screen import PixelScreen
from .store import Item

RELEASE_KEY = "release.deid"  # the rule's key in a release's ConfigMap
HEADER = "FORMAT dicom\n\n%filter graylist\n"
# What deid's filter parser would read as syntax inside a value (an operator, a comment).
UNSAFE_VALUE = re.compile(r"\+|\|\||#|[\r\n]")


@dataclass(frozen=True)
class Region:
    """`--region x,y,w,h`: left, top, width, height, in the image's pixels."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Region:
        try:
            x, y, width, height = (int(v) for v in text.split(","))
        except ValueError:
            raise Permanent(f"--region {text!r}: give x,y,w,h, four whole numbers") from None
        if min(x, y) < 0 or min(width, height) < 1:
            raise Permanent(f"--region {text!r}: x and y 0 or more, w and h 1 or more")
        return cls(x, y, width, height)

    @property
    def coordinates(self) -> str:
        """deid's xmin,ymin,xmax,ymax (the max exclusive, as the pixel stage blanks it)."""
        return f"{self.x},{self.y},{self.x + self.width},{self.y + self.height}"

    def fits(self, item: Item) -> bool:
        return self.x + self.width <= item.columns and self.y + self.height <= item.rows

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.width},{self.height}"


@dataclass(frozen=True)
class Rule:
    """What a release adds to its batch's filters."""

    text: str  # a deid filter file
    regions: tuple[Region, ...] = ()  # a region release's (checked against each image's size)
    digest: str = ""  # a rule file's: its sha256

    @classmethod
    def of_regions(cls, regions: list[Region]) -> Rule:
        lines = "".join(f"  coordinates {r.coordinates}\n" for r in regions)
        label = "LABEL Sendit review: a reviewed region\n  present Rows\n"
        return cls(f"{HEADER}\n{label}{lines}", tuple(regions))

    @classmethod
    def read(cls, path: Path) -> Rule:
        """A rule file, parsed as the pixel stage will: Permanent if it does not parse or
        names no region."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise Permanent(f"cannot read the rule file ({type(exc).__name__})") from None
        if not text.lstrip().startswith("FORMAT dicom"):
            raise Permanent(
                "the rule file is not in deid's syntax (it must start with FORMAT dicom)"
            )
        try:
            filters = DeidRecipe(str(path), base=False).get_filters() or {}
        except SystemExit as exc:  # deid exits on a parse error
            raise Permanent(f"the rule file does not parse (deid exit {exc.code})") from None
        rules = [item for items in filters.values() for item in items]
        coordinates = [(v, spec) for item in rules for v, spec in item.get("coordinates") or ()]
        if not coordinates:
            raise Permanent("the rule file names no region (no coordinates in a %filter rule)")
        if not all(item.get("filters") for item in rules):
            raise Permanent(
                "the rule file has a rule without criteria, which deid cannot evaluate: give "
                "each at least one (`present Rows` matches every image with pixels)"
            )
        try:  # each coordinate as the pixel stage reads it
            blank_mask(tuple((int(v), str(c)) for v, c in coordinates), Dataset(), 1, 1)
        except RegionError as exc:
            raise Permanent(f"the rule file does not parse: {exc}") from None
        return cls(text, digest=hashlib.sha256(text.encode()).hexdigest())

    def regions_for(self, images: list[Dataset]) -> list[tuple[tuple[int, str], ...]]:
        """The regions this rule names for each image (deid's coordinates), beyond deid's."""
        with tempfile.TemporaryDirectory(prefix="sendit-rule-") as folder:
            path = Path(folder) / "rule.deid"
            path.write_text(self.text)
            screen, plain = PixelScreen([path]), PixelScreen()
            return [screen.verdict(ds).regions[len(plain.verdict(ds).regions) :] for ds in images]

    def audit(self) -> dict[str, Any]:
        """What the audit log says of it: where it blanks, never a value a filter matches."""
        if self.regions:
            return {"regions": [str(r) for r in self.regions]}
        return {"file": f"sha256:{self.digest}"}


def device_rule(item: Item, regions: list[Region]) -> str:
    """A graylist rule for the item's device and size, blanking these regions."""
    values = {"Manufacturer": item.manufacturer, "ManufacturerModelName": item.model}
    if not all(values.values()):
        raise Permanent(
            f"{item.ref}: its header names no manufacturer or no model, so a rule for its device "
            "would match every image of its size; write one by hand and give it with --filter"
        )
    if any(UNSAFE_VALUE.search(v) for v in values.values()):
        raise Permanent(
            f"{item.ref}: its manufacturer or model holds characters deid's filter syntax reads "
            "as syntax (+, ||, #); write the rule by hand and give it with --filter"
        )
    criteria = [f"equals {k} {v}" for k, v in values.items()]
    criteria += [f"equals Rows {item.rows}", f"equals Columns {item.columns}"]
    lines = "\n  + ".join(criteria)
    coordinates = "".join(f"  coordinates {r.coordinates}\n" for r in regions)
    return f"LABEL Sendit review: a reviewed region of this device\n  {lines}\n{coordinates}"


def save_rules(path: Path, rules: list[str]) -> None:
    """Append device rules to a filter file (made when missing); what is written must parse,
    else nothing is."""
    try:
        before = path.read_text() if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise Permanent(f"cannot read the rule file to save into ({type(exc).__name__})") from None
    text = before.rstrip("\n") + "\n\n%filter graylist\n" if before else HEADER
    text += "".join(f"\n{rule}" for rule in rules)
    with tempfile.TemporaryDirectory(prefix="sendit-rule-") as folder:
        scratch = Path(folder) / "rules.deid"
        scratch.write_text(text)
        Rule.read(scratch)
    write_atomically(path, text.encode())

"""One scanner of identifying text, for Clean Descriptors, for retained text and for the final
verification of the bytes about to be written.

It finds, in text (never in codes or numbers: a PatientID "400" is not a WindowCenter of 400):

- the file's own identifying values in their spellings: name parts of two letters or more
  ("Ng", "Wu", each part of "Garcia-Lopez"), whole names in either order, IDs with and without
  leading zeros or separators; compared Unicode-normalised and case-folded (Müller, MÜLLER and
  Muller match; so do the Turkish dotted and dotless i), as whole words (an ID 1234 is not found
  inside 2.25.91234567) except in scripts written without spaces (CJK), where any occurrence
  counts;
- patterns that identify whatever the header says: dates in common formats, phone numbers (with
  or without an area code), e-mail addresses, URLs, long runs of digits (MRN-like) and US street
  addresses.

Values are compiled once per file into one regular expression; a text that cannot hold a match
costs one search.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

MIN_NAME = 2  # a name part this short is still a name ("Ng"), matched as a whole word only
# (in a script written without spaces, one character is a name: 王)
MIN_VALUE = 3  # other values shorter than this match too much to mean anything
MEMO = 4096  # texts remembered per scanner

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_STREET = (
    r"street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|terrace|ter"
    r"|place|pl|parkway|pkwy|circle|cir|highway|hwy|square|sq|trail|trl"
)
PATTERNS: dict[str, str] = {
    "date": (
        r"(?<!\d)(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})"
        r"|\d{4}[/.\-]\d{1,2}[/.\-]\d{1,2}"
        r"|(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))(?!\d)"
        rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{2,4}}\b"
        rf"|\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b"
    ),
    "phone": r"(?<!\d)(?:\+\d{1,3}[\s.\-]?)?\(?\d{3}\)?[\s.\-]\d{3}[\s.\-]\d{4}(?!\d)"
    r"|(?<![\d.\-])\d{3}[.\-]\d{4}(?![\d\-]|\.\d)",  # and without an area code: 555-4891
    "e-mail": r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+",
    "url": r"\b(?:https?|ftp)://\S+|\bwww\.\S+",
    "digits": r"(?<!\d)\d{6,}(?!\d)",
    "street address": rf"\b\d{{1,6}}\s+(?:[\w'.\-]+\s+){{0,4}}(?:{_STREET})\b\.?",
}
_PATTERNS = re.compile("|".join(f"(?:{p})" for p in PATTERNS.values()))
# Every pattern needs one of these: text without any cannot match, and costs one quick search.
_MAY_MATCH = re.compile(r"[0-9@]|www|://")
_WORD = re.compile(r"[^\W_]+")
# Scripts written without spaces between words: there, a name is found anywhere.
NO_SPACES = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def fold(text: str) -> str:
    """Text as the scanner compares it: compatibility-decomposed, without combining marks,
    case-folded, the dotless i as i. Each character folds on its own (spans map back)."""
    return text.lower() if text.isascii() else "".join(_fold_char(c) for c in text)


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    if c.isascii():
        return c.lower()
    decomposed = unicodedata.normalize("NFKD", c)
    kept = "".join(d for d in decomposed if not unicodedata.combining(d)) or c
    return kept.casefold().replace("\u0131", "i")  # the dotless i


def name_parts(name: str) -> list[str]:
    """Every spelling of a person name (PN: family^given^middle^prefix^suffix, = groups for
    other scripts) worth searching for: each part and sub-part, and the whole name in both
    orders."""
    out: list[str] = []
    for group in name.split("="):
        parts = [p.strip() for p in group.split("^")[:3]]
        words = [w for p in parts for w in re.split(r"[\s,\-]+", p) if w]
        out += words + [p for p in parts if p]
        given_first = " ".join(p for p in (parts[1:3] + parts[:1]) if p)
        family_first = " ".join(p for p in parts if p)
        out += [given_first, family_first]
    return [n for n in out if len(n) >= MIN_NAME or NO_SPACES.search(n)]


def id_spellings(value: str) -> list[str]:
    """An identifier as it may be written elsewhere: as is, without separators, and (digits)
    without leading zeros."""
    out = [value]
    compact = re.sub(r"[\s\-./]", "", value)
    out.append(compact)
    if compact.isdigit():
        out.append(compact.lstrip("0"))
    return [v for v in out if len(v) >= MIN_VALUE]


@lru_cache(maxsize=64)
def scanner_for(names: frozenset[str], values: frozenset[str]) -> Scanner:
    """One scanner per set of identifying values: the files of a patient's series share one
    (compiled once, its answers remembered)."""
    return Scanner(names, values)


class Scanner:
    """The identifying values of one file (folded), and the patterns, as one matcher."""

    def __init__(self, names: Iterable[str] = (), values: Iterable[str] = ()) -> None:
        needles = {fold(n) for n in names if len(n) >= MIN_NAME or NO_SPACES.search(n)}
        needles |= {fold(v) for v in values if len(v) >= MIN_VALUE}
        needles.discard("")
        self.needles = frozenset(needles)
        self._values = _matcher(needles)
        # A whole-word match starts with a whole word: a text holding none of the needles'
        # first words cannot match, and is told so by a set lookup instead of the regex.
        self._first = {w[0] for n in needles if (w := _WORD.findall(n))}
        self._anywhere = [n for n in needles if NO_SPACES.search(n)]
        self._seen: dict[tuple[str, bool], bool] = {}

    def spans(self, text: str, *, patterns: bool = True) -> list[tuple[int, int]]:
        """Where identifying text stands in `text` (indices into `text`), merged."""
        folded, index = _fold_indexed(text)
        found = self._matches(folded, patterns)
        if index is not None:  # a character folded to several: map back to the text
            found = [(index[s], index[e - 1] + 1) for s, e in found if e > s]
        return _merged(found)

    def _matches(self, folded: str, patterns: bool) -> list[tuple[int, int]]:
        found = [m.span() for m in self._values.finditer(folded)] if self._values else []
        if patterns and _MAY_MATCH.search(folded):
            found += [m.span() for m in _PATTERNS.finditer(folded)]
        return found

    def finds(self, text: str, *, patterns: bool = True) -> bool:
        """Does `text` hold anything identifying? (Remembered: a series repeats its values.)"""
        key = (text, patterns)
        found = self._seen.get(key)
        if found is None:
            if len(self._seen) >= MEMO:
                self._seen.clear()
            found = self._seen[key] = self._finds(text, patterns)
        return found

    def _finds(self, text: str, patterns: bool) -> bool:
        folded = fold(text)
        values = self._values
        if values is not None and self._may_hold_a_value(folded) and values.search(folded):
            return True
        return (
            patterns
            and _MAY_MATCH.search(folded) is not None
            and (_PATTERNS.search(folded) is not None)
        )

    def clean(self, text: str) -> str:
        """`text` with everything identifying cut out (never the whole value kept as it was)."""
        cuts = self.spans(text)
        if not cuts:
            return text
        kept, last = [], 0
        for start, end in cuts:
            kept.append(text[last:start])
            last = end
        kept.append(text[last:])
        return re.sub(r"\s{2,}", " ", "".join(kept)).strip(" ,;:-^/")

    def _may_hold_a_value(self, folded: str) -> bool:
        return not self._first.isdisjoint(_WORD.findall(folded)) or any(
            n in folded for n in self._anywhere
        )


def _matcher(needles: Iterable[str]) -> re.Pattern[str] | None:
    """One regex for the needles, longest first: whole words (no letter or digit touches one; an
    underscore separates, as in Doe_John) behind one shared boundary, which compiles in a
    fraction of the time of a boundary per needle; in scripts without spaces, anywhere."""
    ordered = sorted(needles, key=len, reverse=True)
    words = "|".join(re.escape(n) for n in ordered if not NO_SPACES.search(n))
    anywhere = "|".join(re.escape(n) for n in ordered if NO_SPACES.search(n))
    parts = ([rf"(?<![^\W_])(?:{words})(?![^\W_])"] if words else []) + (
        [anywhere] if anywhere else []
    )
    return re.compile("|".join(parts)) if parts else None


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def _fold_indexed(text: str) -> tuple[str, list[int] | None]:
    """The folded text and, when its length differs, each folded position's source position."""
    pieces = [_fold_char(c) for c in text]
    if all(len(p) == 1 for p in pieces):
        return "".join(pieces), None
    index = [i for i, p in enumerate(pieces) for _ in p]
    return "".join(pieces), index

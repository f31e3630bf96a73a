"""Default deny down to the word: a kept text keeps only the words known to be safe.

Every text the profile keeps (Clean Descriptors, the text attributes safe by nature, the
meaning of a code no dictionary knows, safe private text) goes through here after the scanner
has cut the file's own identifying values and the patterns. A word (a run of letters and
digits) is kept when it is:

- in the imaging vocabulary (data/imaging.txt: imaging, anatomy, protocol and vendor words,
  written by hand), which wins over the nets below (HEAD, WHITE matter);
- a known word (data/words.txt: common English words, the words of the DICOM code meanings and
  keywords, less person names, cities, months, days and street types);
- a number of at most four digits (a year, a series number; a longer one is an ID, a ZIP code
  or a phone number), unless it is one of a run of numbers spaced like a phone number (seven
  digits or more: 555 4891);
- a token shape: letters and digits mixed (T1, 3D, 5MM, B1000, E11), each letter run known,
  or of at most three Latin letters that are no common name (data/names.txt: Ng1 goes), each
  digit run of at most four digits; or a single Latin letter (W/O, C+, R);
- in a script written without spaces (Chinese, Japanese, Korean), a vocabulary word of that
  script found in the run, longest first (頭部 of 山田様の頭部; the rest is cut).

Whatever the vocabulary says, a common name after a title (Dr White) and the word before a
street type (Maple Street) are cut. Words are compared folded (case, accents and width aside).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources

from .scanner import NO_SPACES, fold

MAX_DIGITS = 4  # a longer number is an identifier, a ZIP code or a phone number
PHONE_DIGITS = 7  # numbers spaced like a phone number (555 4891) go
SHORT_RUN = 3  # the letters of a mixed token (AX1, E11, VB17) need not be words


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


TITLES = _set("dr doctor mr mrs ms miss prof professor sir dott herr frau mme mlle sr sra dra srta")
STREET_TYPES = _set(
    "street avenue ave road rd boulevard blvd lane ln terrace parkway pkwy highway hwy crescent"
    " plaza alley strasse rue calle"
)
_CJK = NO_SPACES.pattern.strip("[]")
_TOKEN = re.compile(r"[^\W_]+")
_PARTS = re.compile(rf"[{_CJK}]+|\d+|(?:(?![{_CJK}])[^\W\d_])+")
# Numbers spaced like a phone number: by spaces, hyphens, brackets (dotted ones are versions;
# the scanner's patterns know dotted phone numbers).
_NUMBERS = re.compile(r"(?<![^\W_])(?<!\.)\+?\(?\d+\)?(?:[ \-()]{1,3}\d+\)?)+(?![^\W_])")
_CAMEL = re.compile(r"[A-Z][a-z]+|[a-z]+|[A-Z]+(?![a-z])")
_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}")
MEMO = 8192  # texts remembered: a series repeats its descriptions


def _lines(name: str) -> list[str]:
    text = (resources.files("sendit_worker") / "data" / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """The words known to be safe, and the common names (all folded)."""

    imaging: frozenset[str]
    words: frozenset[str]
    names: frozenset[str]
    longest: int = field(init=False)  # the longest word of a script without spaces

    def __post_init__(self) -> None:
        spaceless = [w for w in self.imaging if NO_SPACES.search(w)]
        object.__setattr__(self, "longest", max(map(len, spaceless), default=1))

    def clean(self, text: str) -> str:
        """`text` with every word not known to be safe cut out."""
        return _clean(self, text)

    def is_name(self, word: str) -> bool:
        """A common name no list of safe words claims (for code strings)."""
        folded = fold(word)
        return folded in self.names and not self.knows(folded)

    def knows(self, folded: str) -> bool:
        """A folded word of the imaging vocabulary or of the safe words."""
        return folded in self.imaging or folded in self.words

    def _token(self, token: str) -> str:
        """What is kept of one token: all of it, none, or (spaceless scripts) its known words."""
        if self.knows(fold(token)):
            return token
        if token.isdigit():
            return token if len(token) <= MAX_DIGITS else ""
        parts = _PARTS.findall(token)
        if any(NO_SPACES.match(p) for p in parts):
            return "".join(
                self._spaceless(p) if NO_SPACES.match(p) else self._token(p) for p in parts
            )
        if len(parts) == 1 and len(token) == 1:
            return token if token.isascii() else ""
        mixed = len(parts) > 1
        return token if all(self._part(p, mixed) for p in parts) else ""

    def _part(self, part: str, mixed: bool) -> bool:
        """A run of letters or of digits, of a token that mixes them or not."""
        if part.isdigit():
            return len(part) <= MAX_DIGITS
        folded = fold(part)
        if self.knows(folded):
            return True
        if mixed and part.isascii() and len(part) <= SHORT_RUN and folded not in self.names:
            return True
        words = _CAMEL.findall(part)  # LightSpeed, ReferencedSegmentNumber
        return len(words) > 1 and all(self.knows(fold(w)) for w in words)

    def _spaceless(self, run: str) -> str:
        """The vocabulary's words found in a run of a script without spaces, longest first."""
        kept, i = [], 0
        while i < len(run):
            for size in range(min(self.longest, len(run) - i), 0, -1):
                if fold(run[i : i + size]) in self.imaging:
                    kept.append(run[i : i + size])
                    i += size
                    break
            else:
                i += 1
        return "".join(kept)


@lru_cache(maxsize=MEMO)
def _clean(vocabulary: Vocabulary, text: str) -> str:
    numbers = _NUMBERS.sub(lambda m: _phone_cut(m.group()), text)
    pieces = _TOKEN.split(numbers)  # the separators, between the tokens
    tokens = _TOKEN.findall(numbers)
    folded = [fold(t) for t in tokens]
    out, cut = [pieces[0]], numbers != text
    for i, token in enumerate(tokens):
        after_title = i > 0 and folded[i - 1] in TITLES and folded[i] in vocabulary.names
        before_street = i + 1 < len(tokens) and folded[i + 1] in STREET_TYPES
        kept = "" if after_title or before_street else vocabulary._token(token)
        if kept:
            out += [kept, pieces[i + 1]]
            cut = cut or kept != token
        else:  # the separators on either side of the word become one, or none at an end
            end = len(out) == 1 or i == len(tokens) - 1
            out[-1] = "" if end else _joined(out[-1], pieces[i + 1])
            cut = True
    return re.sub(r"\s{2,}", " ", "".join(out)).strip() if cut else text


def _phone_cut(run: str) -> str:
    return "" if sum(c.isdigit() for c in run) >= PHONE_DIGITS else run


def _joined(before: str, after: str) -> str:
    """The separator left where a word was cut: a comma (or ; :) of either side, else a space
    if either side had one, else the first mark (an underscore, a slash); no empty brackets."""
    both = _BRACKETS.sub("", before + after)
    spaced = any(c.isspace() for c in both)
    for mark in both:
        if mark in ",;:":
            return mark + (" " if spaced else "")
    if spaced:
        return " "
    return both[:1]


@cache
def _code_meanings() -> dict[tuple[str, str], str]:
    rows = (line.split("\t") for line in _lines("code_meanings.tsv"))
    return {(scheme, code): meaning for scheme, code, meaning in rows}


def code_meaning(scheme: str, code: str) -> str | None:
    """The standard's meaning of a code of a scheme the DICOM dictionaries know (DCM, SCT, SRT,
    LN, UCUM...), None for any other. Loaded on the first code seen."""
    return _code_meanings().get((scheme, code))


@cache
def vocabulary() -> Vocabulary:
    """Loaded once per process (before the pool forks: the pages are shared). The generated
    lists are stored folded, one word a line; the hand-written one is folded here."""
    imaging = frozenset(fold(w) for line in _lines("imaging.txt") for w in _TOKEN.findall(line))
    return Vocabulary(imaging, frozenset(_lines("words.txt")), frozenset(_lines("names.txt")))

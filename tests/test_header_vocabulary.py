# ruff: noqa: RUF001  (names in other scripts on purpose)
"""Default deny down to the word: what a kept text keeps, word by word."""

from __future__ import annotations

import pytest

from sendit_worker.header.vocabulary import code_meaning, vocabulary


@pytest.mark.parametrize(
    "text",
    [
        "CT HEAD W/O CONTRAST",
        "t1_mprage_sag_p2_iso",
        "Ax T2 FRFSE",
        "AX DWI 1000b",
        "Thorax 1.0 B70f",
        "MRI KNEE LEFT WO",
        "XR CHEST 2 VIEWS",
        "C-",
        "T2*",
        "syngo MR E11",
        "51.80.108.010",  # a software version: dotted numbers are no phone number
        "GE MEDICAL SYSTEMS",
        "MR Schädel nativ",
        "胸部CT",
        "흉부 CT",
        "WHITE MATTER",  # a name elsewhere, imaging here
    ],
)
def test_imaging_words_and_token_shapes_are_kept_as_written(text: str) -> None:
    assert vocabulary().clean(text) == text


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("MRI BRAIN W WO CONTRAST - John Smith", "MRI BRAIN W WO CONTRAST"),  # names
        ("Smith, John - CT Chest", "CT Chest"),  # and the separators they leave
        ("CT (Zyxwvutson) head", "CT head"),  # a word no list knows
        ("Rose Baker axial", "axial"),  # English words that are names
        ("BRAIN per Dr White", "BRAIN per Dr"),  # a name after a title, imaging word or not
        ("CT Maple Street", "CT"),  # a street and its name
        ("CT call 555 4891", "CT"),  # numbers spaced like a phone number
        ("CT 94305", "CT"),  # more than four digits: a ZIP code, an ID
        ("Kim1 AX2 Ng3", "AX2"),  # a common name in a mixed token
        ("CT March 15", "CT 15"),  # a month is a date
        ("山田様の頭部CT", "の頭部CT"),  # a run without spaces keeps its known words
        ("홍길동 흉부 CT", "흉부 CT"),
        ("КТ ИВАНОВ", "КТ"),
    ],
)
def test_every_word_not_known_to_be_safe_is_cut(text: str, kept: str) -> None:
    assert vocabulary().clean(text) == kept


def test_camel_case_words_are_read_word_by_word() -> None:
    assert vocabulary().clean("ReferencedSegmentNumber") == "ReferencedSegmentNumber"
    assert vocabulary().clean("JohnSmith") == ""


def test_common_names_are_known_for_code_strings() -> None:
    words = vocabulary()
    assert words.is_name("JOHNSON") and words.is_name("Garcia")
    assert not words.is_name("AXIAL") and not words.is_name("NONE")


def test_the_standard_gives_the_meaning_of_a_code_it_knows() -> None:
    assert code_meaning("DCM", "113100") == "Basic Application Confidentiality Profile"
    assert code_meaning("SRT", "T-A0100") == code_meaning("SCT", "12738006")  # SNOMED RT to CT
    assert code_meaning("99LOCAL", "113100") is None

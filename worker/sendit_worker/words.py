"""Whole-word, case-insensitive search for identifying values, in text or in bytes.

One definition of "this value appears" for both Clean Descriptors and the final verification:
a match must not touch a letter or digit on either side, so an ID of 1234 is not found inside
a UID such as 2.25.91234567, nor a name "Ann" inside "Annex".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import AnyStr

_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyz")


def spans(haystack: AnyStr, needles: Iterable[AnyStr]) -> Iterator[tuple[int, int]]:
    """Where any needle stands as a whole word. Both sides must already be lower-cased."""
    is_bytes = isinstance(haystack, bytes)
    for needle in needles:
        start = haystack.find(needle)
        while start != -1:
            end = start + len(needle)
            before = haystack[start - 1 : start] if start else haystack[:0]
            after = haystack[end : end + 1]
            if not (_word(before, is_bytes) or _word(after, is_bytes)):
                yield start, end
            start = haystack.find(needle, start + 1)


def _word(char: str | bytes, is_bytes: bool) -> bool:
    if not char:
        return False
    return char[0] in _ALNUM if is_bytes else char.isalnum()


def remove(text: str, needles: Iterable[str]) -> str:
    """`text` with every whole-word occurrence of the (lower-case) needles cut out."""
    lowered = text.lower()
    cuts = sorted(spans(lowered, sorted(needles, key=len, reverse=True)))
    if not cuts:
        return text
    kept, last = [], 0
    for start, end in cuts:
        if start >= last:
            kept.append(text[last:start])
            last = end
        elif end > last:
            last = end
    kept.append(text[last:])
    return "".join(kept)

"""Pixels: burned-in text is cleaned, or the image withheld (fail closed).

`screen` reads deid's filter rules against the header (which regions to blank, whether the
image is text by nature); `regions` turns a rule's coordinates into a mask; `detect` finds
text in the pixels; `codec` decodes and writes pixels back losslessly; `markers` strips text
riding in compressed frames; `clean` is the policy that ties them together per image.
"""

from __future__ import annotations

from .clean import PixelCleaner, PixelOutcome
from .policy import DEFAULT_PIXELS, PixelPolicy
from .screen import BURNED_IN_HEADER, PixelScreen, Verdict

__all__ = [
    "BURNED_IN_HEADER",
    "DEFAULT_PIXELS",
    "PixelCleaner",
    "PixelOutcome",
    "PixelPolicy",
    "PixelScreen",
    "Verdict",
]

"""Pixels: burned-in text is cleaned, or the image withheld (fail closed).

`screen` reads deid's filter rules and the header's claims (which regions to blank, whether
the image is text by nature or shows a face); `regions` turns a rule's coordinates into a
mask; `codec` decodes frame by frame and writes back losslessly; `views` shows a frame as a
viewer could; `candidates` is the cheap first look for text everywhere, `detect` the text
detector where it points, `search` the two together; `markers` strips text riding in
compressed frames; `clean` is the policy that ties them together per image.
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

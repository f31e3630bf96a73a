"""The pixel policy, image by image: withhold, or clean and check again.

`clean` (the default): an image that is text by nature is withheld. The regions matching
filter rules name are blanked. Unless the batch trusts an exact BurnedInAnnotation=NO, every
frame goes through the text detector and what it finds is blanked (an image that is mostly
text is a document: withheld). Changed frames are checked again: text still found withholds
the image, and so does a header that says YES when neither a rule nor the detector found any.
Pixels that need no change pass through undecoded, only text segments of compressed frames
stripped. `withhold`: what the rules flag is withheld, nothing is decoded (text segments of
compressed frames are stripped all the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset

from ..dicom import FLOAT_PIXEL_DATA, PIXEL_DATA
from .codec import CodecError, frames, rewrite
from .detect import TextDetector, mask_of, views
from .markers import MarkerError, strip_markers
from .policy import WITHHOLD, PixelPolicy
from .regions import RegionError, blank_mask
from .screen import PixelScreen, Verdict

# Detection passes: blanking one line can bare a line the detector had merged with it; the
# last pass only checks (text found then withholds the image).
ROUNDS = 3
# Many lines covering much of a frame: a document (withheld, whatever the header says). A light
# page needs less of it than a dark screen, where annotations crowd real images.
DOCUMENT_LINES = 6
DOCUMENT_SHARE = 0.15  # on a light page
DOCUMENT_LIGHTNESS = 0.5
SCREEN_LINES = 10
SCREEN_SHARE = 0.5  # on a dark one


@dataclass(frozen=True)
class PixelOutcome:
    withheld: str = ""  # why the image must not leave (never a value from it)
    checked: bool = False  # the pixels went through the detector: Clean Pixel Data applies
    changed: bool = False  # pixels were blanked and written back


class PixelCleaner:
    def __init__(self, policy: PixelPolicy, extra_filters: Sequence[Path] = ()) -> None:
        self.policy = policy
        self.screen = PixelScreen(extra_filters)
        self._detector: TextDetector | None = None

    @property
    def detector(self) -> TextDetector:
        if self._detector is None:  # loaded on first need: the withhold policy never does
            self._detector = TextDetector()
        return self._detector

    def apply(self, ds: Dataset) -> PixelOutcome:
        """Clean `ds` in place, or say why it is withheld."""
        verdict = self.screen.verdict(ds)
        if verdict.text_by_nature:
            return PixelOutcome(withheld=verdict.text_by_nature)
        try:
            if self.policy.policy != WITHHOLD:
                return self._clean(ds, verdict)
            if verdict.flagged:
                return PixelOutcome(withheld=verdict.flagged)
            strip_markers(ds)  # text inside compressed frames goes under either policy
            return PixelOutcome()
        except (CodecError, MarkerError, RegionError) as exc:
            return PixelOutcome(withheld=f"pixels not cleaned: {exc}")

    def _clean(self, ds: Dataset, verdict: Verdict) -> PixelOutcome:
        if PIXEL_DATA not in ds:
            if any(tag in ds for tag in FLOAT_PIXEL_DATA):
                return PixelOutcome(withheld="pixels not cleaned: float pixel data")
            return PixelOutcome()  # no pixels (a structured report, a plan): nothing burned in
        trusted = self.policy.trust_burned_in_annotation and verdict.says_no_text
        if trusted and not verdict.regions:
            strip_markers(ds)
            return PixelOutcome()
        stack = frames(ds)
        rows, columns = stack.shape[1:3]
        regions = blank_mask(verdict.regions, ds, rows, columns)
        blank: list[np.ndarray | None] = [regions] * len(stack)
        detected = False
        if not trusted:
            window = _window(ds)
            todo: list[int] = list(range(len(stack)))
            for check in range(ROUNDS):
                again = []
                for i in todo:
                    boxes = self.detector.boxes(views(stack[i], window), blank[i])
                    if not boxes:
                        continue
                    if check == ROUNDS - 1:  # the cleaned frame, checked: still text
                        return PixelOutcome(withheld="burned-in text remains after cleaning")
                    detected = True
                    found = mask_of(boxes, rows, columns)
                    if _document(stack[i], found, len(boxes)):
                        return PixelOutcome(withheld="text by nature: the pixels are a document")
                    blank[i] = found if blank[i] is None else found | blank[i]
                    again.append(i)
                todo = again  # only what changed is looked at again
                if not todo:
                    break
        if verdict.says_text and regions is None and not detected:
            return PixelOutcome(
                withheld="burned-in annotation: the header says YES and no text was found"
            )
        masks = [mask for mask in blank if mask is not None]
        if not masks:
            strip_markers(ds)
            return PixelOutcome(checked=not trusted)
        # Text found in one frame is blanked in every frame: burned-in text stays in place, and
        # where it crosses a frame's like-coloured background it is half seen and half missed.
        rewrite(ds, [np.logical_or.reduce(masks)] * len(stack))
        return PixelOutcome(checked=not trusted, changed=True)


def _document(frame: np.ndarray, text: np.ndarray, lines: int) -> bool:
    share = float(text.mean())
    if lines >= SCREEN_LINES and share > SCREEN_SHARE:
        return True
    if lines < DOCUMENT_LINES or share <= DOCUMENT_SHARE:
        return False
    low, high = float(frame.min()), float(frame.max())
    return high > low and (float(np.median(frame)) - low) / (high - low) > DOCUMENT_LIGHTNESS


def _window(ds: Dataset) -> tuple[float, float] | None:
    """The header's first VOI window, in stored pixel values; None when there is none."""
    try:
        center = _first(ds.get("WindowCenter"))
        width = _first(ds.get("WindowWidth"))
        if center is None or width is None or width <= 0:
            return None
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return None
    low, high = center - width / 2, center + width / 2
    ends = sorted(((low - intercept) / slope, (high - intercept) / slope))
    return ends[0], ends[1]


def _first(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or (
        hasattr(value, "__getitem__") and not isinstance(value, str | float | int)
    ):
        value = value[0]
    return float(value)

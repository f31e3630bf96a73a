"""The pixel policy, image by image: withhold, or clean and check again.

`clean` (the default): an image that is text by nature is withheld, and so is one declared to
show a face unless the batch retains recognizable visual features. The regions filter rules
name are blanked. Unless the batch trusts an exact BurnedInAnnotation=NO, every frame is
searched for text (`search`: the first look everywhere, the detector where it points) and
what is found is blanked, in every frame of the image (burned-in text stays in place, and over
a like-coloured background one frame shows it half). A cine whose frames share a still
background is searched as one: what stays, in its first frame; what moves, in the brightest
and darkest of every pixel over all frames (short lines in its moving picture looked at as
the detector sees them, not enlarged: speckle lines up there). Bits above BitsStored that
hold anything are cleared. Cleaned frames are checked again around what was blanked: text
still found there is blanked too, once; found after that, it withholds the image. A header
that says YES withholds the image unless text was proven (a detection on a line of glyphs).
An image that is mostly lines of text is a document: withheld.

Pixels that need no change pass through as they were; text segments of compressed frames are
stripped. `withhold`: what the rules flag is withheld, nothing is decoded (text segments of
compressed frames are stripped all the same).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import Dataset

from ..dicom import FLOAT_PIXEL_DATA, PIXEL_DATA
from .candidates import Region, moving_tiles
from .codec import LOSSLESS, CodecError, Frame, Layout, black, frames, rewrite
from .detect import TextDetector
from .markers import MarkerError, strip_markers
from .policy import WITHHOLD, PixelPolicy
from .read import TextReader
from .regions import RegionError, blank_mask
from .screen import PixelScreen, Verdict
from .search import Found, Search, mask_of
from .views import Display, darkest_index, display, views

ROUNDS = 2  # blanking rounds; what is found after the last is text that stays: withheld
# A cine: frames enough, and this share of the picture still in all of them (a scanner's
# screen around a moving image), searched as one.
CINE_FRAMES = 8
CINE_STILL = 0.2
STILL_LOSSY = 8  # of 255: how much a still pixel may vary between lossy-compressed frames
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
    checked: bool = False  # every frame was examined: Clean Pixel Data applies
    changed: bool = False  # pixels were blanked or cleared and written back
    digests: tuple[bytes, ...] = ()  # of each written frame, for verification to compare
    # What was blanked; for a withheld image, what was found (a reviewer's preview shows it).
    blanked: tuple[Region, ...] = field(default=(), compare=False)


class PixelCleaner:
    def __init__(self, policy: PixelPolicy, extra_filters: Sequence[Path] = ()) -> None:
        self.policy = policy
        self.screen = PixelScreen(extra_filters)
        self._detector: TextDetector | None = None
        self._reader: TextReader | None = None

    @property
    def detector(self) -> TextDetector:
        if self._detector is None:  # loaded on first need: the withhold policy never does
            self._detector = TextDetector()
        return self._detector

    @property
    def reader(self) -> TextReader:
        if self._reader is None:
            self._reader = TextReader()
        return self._reader

    def apply(self, ds: Dataset) -> PixelOutcome:
        """Clean `ds` in place, or say why it is withheld. Raises codec.TooLarge for pixels
        beyond what a pool process decodes."""
        verdict = self.screen.verdict(ds)
        if verdict.text_by_nature:
            return PixelOutcome(withheld=verdict.text_by_nature)
        if verdict.face and not self.policy.retain_recognizable_visual_features:
            return PixelOutcome(withheld=verdict.face)
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
        layout = Layout.of(ds)
        shown = display(ds, layout)
        ruled = blank_mask(verdict.regions, ds, layout.rows, layout.columns)
        image = _Image(ds, layout, shown)
        found = _Result() if trusted else self._search(image, ruled)
        if found.withheld:
            return PixelOutcome(withheld=found.withheld, blanked=tuple(found.regions))
        if verdict.says_text and ruled is None and not found.proven:
            return PixelOutcome(
                withheld="burned-in annotation: the header says YES and no text was proven",
                blanked=tuple(found.regions),
            )
        mask = mask_of(found.regions, layout.rows, layout.columns)
        if ruled is not None:
            mask |= ruled
        if not mask.any() and not image.overlay:
            strip_markers(ds)
            return PixelOutcome(checked=not trusted)
        fill = image.fill
        digests = rewrite(ds, layout, [mask if mask.any() else None] * layout.frames, fill)
        return PixelOutcome(
            checked=not trusted, changed=True, digests=tuple(digests), blanked=tuple(found.regions)
        )

    def _search(self, image: _Image, ruled: np.ndarray | None) -> _Result:
        """Every frame searched (a cine as one), then checked again around what was found.
        What the rules blank is blanked before the search: it never leaves, whatever it holds
        (a reviewer's release names the region where text stayed)."""
        search = Search(lambda: self.detector, lambda: self.reader)
        result = _Result()
        seen: set[bytes] = set()
        for frame_views, moving in image.searched(blank=ruled):
            if image.layout.frames > 1:  # a single frame has no twin: nothing to hash
                key = _digest(frame_views)
                if key in seen:
                    continue  # an identical frame: looked at once
                seen.add(key)
            result.add(search.views(frame_views, moving))
        for _ in range(ROUNDS):
            if not result.regions:
                return result
            mask = mask_of(result.regions, image.layout.rows, image.layout.columns)
            blanked = mask if ruled is None else mask | ruled
            again = Found()
            for frame_views, _ in image.searched(blank=blanked):
                again.add(search.again(frame_views, blanked, result.regions))
            if _document(image, mask, _rows(result.regions)):
                result.withheld = "text by nature: the pixels are a document"
                return result
            if not again.regions:
                return result
            result.add(again)
        result.withheld = "burned-in text remains after cleaning"
        return result


@dataclass
class _Result(Found):
    withheld: str = ""


class _Image:
    """One image's frames as the search sees them, decoded as it goes."""

    def __init__(self, ds: Dataset, layout: Layout, shown: Display) -> None:
        self.ds, self.layout, self.shown = ds, layout, shown
        self.overlay = False
        self._fill: object = None
        self._cine: list[Frame] | None = None
        self._moving: np.ndarray | None = None  # a cine's moving tiles
        self._decided = layout.frames < CINE_FRAMES

    @property
    def fill(self) -> object:
        """Black as the image shows it, over all its frames."""
        if self._fill is None:
            for _ in self._frames():
                pass
        return self._fill

    def searched(self, blank: np.ndarray | None = None):
        """Each searched frame's views (a cine: its first frame and its projections),
        blanked where `blank` says, with the tiles where it moves (in a cine's projections)."""
        cine = self._is_cine()
        for number, frame in enumerate(self._cine_frames() if cine else self._frames()):
            values = frame.values
            if blank is not None:
                # A frame is decoded afresh for each search: blanked in place (a radiograph's
                # copy was the largest thing the check after blanking held); a cine's are kept.
                values = values.copy() if cine else values
                values[blank] = self.fill
            shown = views(Frame(frame.index, values, frame.photometric, False), self.shown)
            yield shown, self._moving if cine and number > 0 else None

    def _frames(self):
        darkest = None
        for frame in frames(self.ds, self.layout):
            self.overlay |= frame.overlay
            here = black(frame.photometric, frame.values, self._palette_black())
            darkest = here if darkest is None else _darker(darkest, here, frame.photometric)
            yield frame
        self._fill = darkest

    def _palette_black(self) -> int | None:
        return None if self.shown.palette is None else darkest_index(self.shown.palette)

    def _is_cine(self) -> bool:
        if not self._decided:
            self._decided = True
            first = high = low = None
            for frame in self._frames():
                v = frame.values
                if first is None:
                    first, high, low = frame, v.copy(), v.copy()
                else:
                    np.maximum(high, v, out=high)
                    np.minimum(low, v, out=low)
            still = (high.astype(np.int64) - low) <= self._still_tolerance(high)
            still = still.all(axis=-1) if still.ndim == 3 else still
            if float(still.mean()) >= CINE_STILL:
                # What stays is looked at once, in the first frame; what moves, in the
                # brightest and darkest of each pixel (text on any frame shows in one of them).
                # Each with the other part black.
                fill = self.fill
                stays, moves = first.values.copy(), high
                stays[~still] = fill
                moves[still] = fill
                low[still] = fill
                self._cine = [
                    Frame(first.index, stays, first.photometric, False),
                    Frame(first.index, moves, first.photometric, False),
                    Frame(first.index, low, first.photometric, False),
                ]
                self._moving = moving_tiles(~still)
        return self._cine is not None

    def _still_tolerance(self, values: np.ndarray) -> int:
        if not self.layout.syntax.is_compressed or self.layout.syntax in LOSSLESS:
            return 0
        return max(1, int(values.max()) * STILL_LOSSY // 255)

    def _cine_frames(self):
        return iter(self._cine or ())


def _darker(a: object, b: object, photometric: str) -> object:
    if isinstance(b, tuple):  # YBR: luminance, no colour
        return (min(a[0], b[0]), *b[1:])  # type: ignore[index]
    if photometric == "MONOCHROME1":
        return np.maximum(a, b)
    return np.minimum(a, b)


def _digest(frame_views: list[np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for v in frame_views:
        h.update(v.tobytes())
    return h.digest()


def _rows(regions: list[Region]) -> int:
    """Rows of text: regions side by side (most of the lower one's height shared) are one."""
    rows: list[Region] = []
    for r in sorted(regions, key=lambda r: r.y0):
        last = rows[-1] if rows else None
        shared = min(last.y1, r.y1) - max(last.y0, r.y0) if last else 0
        if last and shared >= 0.5 * min(last.y1 - last.y0, r.y1 - r.y0):
            rows[-1] = last.joined(r)
        else:
            rows.append(r)
    return len(rows)


def _document(image: _Image, mask: np.ndarray, lines: int) -> bool:
    share = float(mask.mean())
    if lines >= SCREEN_LINES and share > SCREEN_SHARE:
        return True
    if lines < DOCUMENT_LINES or share <= DOCUMENT_SHARE:
        return False
    first = next(image.searched())[0][0]
    grey = first if first.ndim == 2 else first.mean(axis=2)
    low, high = float(grey.min()), float(grey.max())
    return high > low and (float(np.median(grey)) - low) / (high - low) > DOCUMENT_LIGHTNESS

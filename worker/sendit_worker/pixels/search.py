"""The search for text in one frame's views: the first look everywhere, the detector only
where the look points (its candidate lines and the tiles it cannot judge), and the check of a
cleaned frame only beside what was blanked.

A detection the first look's glyphs support (a line of them in the box's rows) is text. One
they do not support (the detector in a dense texture) is text only when the reader reads it.
What is blanked for text is the detector's box joined with the lines of glyphs on its row that
it touches or nearly touches (the glyphs themselves: a box that stops a letter short, or cuts a
line in two, leaves nothing legible), to the frame's edge when the line nearly reaches it, with
a margin of a fraction of the line's height. Nothing else of the picture is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .candidates import Region, first_look, in_tiles
from .detect import Box, TextDetector, enlarged, unenlarged
from .read import TextReader
from .views import planes

ASK_ACROSS, ASK_ALONG = 0.5, 2.0  # context the detector gets around a line (heights)
MARGIN_ACROSS, MARGIN_ALONG = 0.2, 0.4  # blanked around a line (heights)
MARGIN_LIMIT = 12  # pixels: large text needs no wider margin than small
JOIN_ALONG = 2.0  # lines of glyphs this many heights along a detection's row are joined to it
EDGE_ALONG, EDGE_ACROSS = 1.0, 0.5  # a line this near (box heights) the frame's edge runs off it
EDGE_LIMIT = 16  # pixels: a line further from the edge than this is not cut by it
AROUND_ALONG, AROUND_ACROSS = 1.0, 0.5  # a blanked line is checked again this near it
OUTSIDE = 0.25  # a box found again counts when this share of it lies outside what is blanked
SUPPORT_GLYPHS = 3  # a line of this many aligned glyphs in a box's rows supports it as text
ROW_HEIGHTS = 1.5  # a line in a box's rows is at most this many times the box's height
# Speckle in a cine's projections lines up like glyphs, three at most: a line of fewer than
# this many aligned glyphs in its moving picture is not enlarged (enlarging every such line
# cost more than all the rest of a cine's search).
MOVING_LINE_GLYPHS = 5


@dataclass
class Found:
    """What one frame's (or a cine's) views hold."""

    regions: list[Region] = field(default_factory=list)  # to blank, margins included
    proven: bool = False  # text beyond doubt: a line of several glyphs, or read

    def add(self, other: Found) -> None:
        self.regions.extend(other.regions)
        self.proven |= other.proven


class Search:
    """Detector and reader are loaded on first need: most frames need neither."""

    def __init__(
        self, detector: Callable[[], TextDetector], reader: Callable[[], TextReader]
    ) -> None:
        import cv2

        cv2.setNumThreads(1)  # the pool has a process per CPU already
        self.detector, self.reader = detector, reader

    def views(self, views: list[np.ndarray], moving: np.ndarray | None = None) -> Found:
        """Text in any of a frame's views. In the `moving` tiles (a cine's moving picture, in
        its projections) a short line is asked at native scale, as the shadow mode looks.
        What is looked at at native scale (those lines, crowded tiles as high as a line is
        read) shares crops where that costs the network less: a short line beside a crowded
        tile is looked at within it."""
        found = Found()
        for view in views:
            rows, columns = view.shape[:2]
            lines: list[Region] = []
            asked: list[Region] = []
            native: list[Region] = []
            for number, plane in enumerate(planes(view)):
                look = first_look(plane)
                if number == 0:  # colourfulness points the detector; only brightness vouches
                    lines.extend(look.lines)  # (Doppler colour lines up like glyphs there)
                for line in look.lines:
                    region = line.grown(ASK_ACROSS, ASK_ALONG, rows, columns)
                    short = line.glyphs < MOVING_LINE_GLYPHS
                    moves = short and moving is not None and in_tiles(line, moving)
                    (native if moves else asked).append(region)
                for tile in look.crowded:
                    (asked if enlarged(tile) else native).append(tile)
            found.add(self.text(view, asked + unenlarged(native), lines))
        return found

    def again(self, views: list[np.ndarray], mask: np.ndarray, blanked: list[Region]) -> Found:
        """Text still found beside what was blanked, along its line (the rest of a line whose
        box stopped short, the half of a line a box cut through), in the cleaned frame's views:
        blanked pixels filled from their surround first (a black rectangle's edges are no
        text); a box mostly inside what is blanked is no text left."""
        import cv2

        found = Found()
        for view in views:
            rows, columns = view.shape[:2]
            around = [r.grown(AROUND_ACROSS, AROUND_ALONG, rows, columns) for r in blanked]
            filled = view  # a cleaned frame's views are its own (see clean): filled in place
            for r in around:
                part = (slice(r.y0, r.y1), slice(r.x0, r.x1))
                hole = mask[part].view(np.uint8)
                if hole.any():
                    crop = np.ascontiguousarray(view[part])
                    filled[part] = cv2.inpaint(crop, hole, 3, cv2.INPAINT_TELEA)
            lines: list[Region] = []
            # The glyphs of the whole row, for a detection to take its line: each row looked
            # at once, however many regions lie on it.
            for y0, y1 in sorted({(r.y0, r.y1) for r in around}):
                brightness = planes(filled[y0:y1])[0]
                lines.extend(line.lowered(y0) for line in first_look(brightness).lines)
            left = self.text(filled, around, lines, outside=mask)
            found.add(left)
        return found

    def text(
        self,
        view: np.ndarray,
        asked: list[Region],
        lines: list[Region],
        outside: np.ndarray | None = None,
    ) -> Found:
        """The detector's boxes in the asked regions that are text, as regions to blank."""
        if not asked:
            return Found()
        boxes = self.detector().find(view, asked)
        if outside is not None:
            boxes = [
                b for b in boxes if 1.0 - float(outside[b.y0 : b.y1, b.x0 : b.x1].mean()) >= OUTSIDE
            ]
        support = [_support(b, lines) for b in boxes]
        supported = [b for b, n in zip(boxes, support, strict=True) if n >= SUPPORT_GLYPHS]
        doubtful = [b for b, n in zip(boxes, support, strict=True) if n < SUPPORT_GLYPHS]
        crops = [view[b.y0 : b.y1, b.x0 : b.x1] for b in doubtful]
        reads = self.reader().reads(crops) if crops else []
        read = [b for b, ok in zip(doubtful, reads, strict=True) if ok]
        rows, columns = view.shape[:2]
        found = Found(proven=bool(read))
        for box in supported + read:
            region, joined = _joined(box, lines, rows, columns)
            found.proven |= any(line.glyphs >= SUPPORT_GLYPHS for line in joined)
            found.regions.append(region)
        return found


def _support(box: Box, lines: list[Region]) -> int:
    """The glyphs of the largest line in the box's rows that it overlaps."""
    return max(
        (line.glyphs for line in lines if line.overlaps(box.region) and _row_of(line, box)),
        default=0,
    )


def _joined(box: Box, lines: list[Region], rows: int, columns: int) -> tuple[Region, list[Region]]:
    """The box joined with the lines of glyphs on its row that it touches or nearly touches,
    to the frame's edge when the line nearly reaches it, with margins."""
    region, joined = box.region, []
    while True:
        reach = region.grown(0, JOIN_ALONG, rows, columns)
        near = [
            line
            for line in lines
            if line not in joined and line.overlaps(reach) and _row_of(line, box)
        ]
        if not near:
            break
        joined.extend(near)
        for line in near:
            region = region.joined(line)
    # Margins by the glyphs' height where the first look saw them (the detector's box is
    # padded); the reach to the frame's edge by the box's (a line cut by the edge is partial).
    edged = _to_edges(Region(region.x0, region.y0, region.x1, region.y1, box.height), rows, columns)
    height = max(line.height for line in joined) if joined else box.height
    region = Region(edged.x0, edged.y0, edged.x1, edged.y1, height, region.glyphs)
    return region.grown(MARGIN_ACROSS, MARGIN_ALONG, rows, columns, MARGIN_LIMIT), joined


def _row_of(line: Region, box: Box) -> bool:
    """A line in the box's rows: most of its height within them, not much taller."""
    overlap = min(line.y1, box.y1) - max(line.y0, box.y0)
    return overlap >= 0.5 * line.height and line.height <= ROW_HEIGHTS * max(box.height, 1)


def _to_edges(region: Region, rows: int, columns: int) -> Region:
    """A line that nearly reaches the frame's edge runs off it: blanked to the edge."""
    along = min(int(EDGE_ALONG * region.height), EDGE_LIMIT)
    across = min(int(EDGE_ACROSS * region.height), EDGE_LIMIT)
    return Region(
        0 if region.x0 <= along else region.x0,
        0 if region.y0 <= across else region.y0,
        columns if region.x1 >= columns - along else region.x1,
        rows if region.y1 >= rows - across else region.y1,
        region.height,
        region.glyphs,
    )


def mask_of(regions: list[Region], rows: int, columns: int) -> np.ndarray:
    mask = np.zeros((rows, columns), dtype=bool)
    for r in regions:
        mask[r.y0 : r.y1, r.x0 : r.x1] = True
    return mask

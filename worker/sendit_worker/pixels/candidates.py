"""The first look: where in a grey plane text could be, cheaply and everywhere.

Text is thin strokes of steady contrast, in rows of glyphs of similar height. The plane's thin
bright and thin dark structures (top-hat and black-hat, each on its own: together they merge
neighbouring lines into blocks) are thresholded into components; those of a glyph's size are
linked into lines when they stand side by side, overlap vertically and are of similar height.
Each line is a candidate for the detector, at native resolution, never shrunk.

The look never decides that text is absent where it cannot judge: a tile crowded with strokes
(speckle, a dense texture, a page of text), or a textured tile whose short lines are as likely
texture as text, is handed to the detector whole. Its recall is measured against the detector
run on every pixel (bench/shadow.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

STROKE_KERNEL = 11  # wider than a stroke of text up to 40 px high, narrower than anatomy
STROKE_CONTRAST = 32  # of 255: a stroke this much brighter or darker than its surround
GLYPH_MIN, GLYPH_MAX = 3, 72  # glyph heights (8 to 40 px text, with ascenders and descenders)
LINE_MIN = 4
LINK_GAP = 1.2  # glyphs further apart than this many heights are not one line
LINK_HEIGHTS = 2.5  # nor glyphs whose heights differ more than this
ALIGNED = 0.35  # of a line's glyph height: how far a glyph's height and baseline may stray
# Strokes crossed along a row of a line, on average: two glyphs' worth at least. An edge of
# anatomy, a table, the field of view's rim is crossed once or twice.
LINE_STROKES = 2.0
TILE = 128
BAND = 1024  # rows of a frame whose components are labelled at once
CROWDED = 0.25  # share of a tile's pixels that are strokes: too many to judge
CROWDED_GLYPHS = 60  # glyph-sized components in one tile: likewise
TEXTURED_GLYPHS = 20  # glyph-sized components in one tile of a texture, or of text
TEXTURE_LINE_GLYPHS = 3  # aligned glyphs of a line that stands out of a texture
# A tile of a cine whose pixels change between frames this much is moving picture. Text that
# appears over a still background changes only along its strokes: less, even a dense page.
MOVING = 0.2


@dataclass(frozen=True)
class Region:
    """A rectangle of a frame, ends exclusive, with the height of what is in it (a line's
    glyphs; a tile's own height)."""

    x0: int
    y0: int
    x1: int
    y1: int
    height: int
    glyphs: int = 0  # glyphs of the line's size on its baseline (see _aligned)

    def grown(
        self, across: float, along: float, rows: int, columns: int, limit: int = 1 << 30
    ) -> Region:
        """Wider by `along` heights left and right and `across` heights up and down (each at
        most `limit` pixels)."""
        dx = min(int(along * self.height) + 2, limit)
        dy = min(int(across * self.height) + 2, limit)
        return Region(
            max(0, self.x0 - dx),
            max(0, self.y0 - dy),
            min(columns, self.x1 + dx),
            min(rows, self.y1 + dy),
            self.height,
            self.glyphs,
        )

    def overlaps(self, other: Region) -> bool:
        return (
            self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1
        )

    def lowered(self, rows: int) -> Region:
        """The same rectangle `rows` further down (a part's region, in its frame's rows)."""
        return dataclasses.replace(self, y0=self.y0 + rows, y1=self.y1 + rows)

    def joined(self, other: Region) -> Region:
        return Region(
            min(self.x0, other.x0),
            min(self.y0, other.y0),
            max(self.x1, other.x1),
            max(self.y1, other.y1),
            max(self.height, other.height),
            max(self.glyphs, other.glyphs),
        )


@dataclass(frozen=True)
class Look:
    lines: tuple[Region, ...]  # text-like lines, outside crowded tiles
    crowded: tuple[Region, ...]  # tiles the look cannot judge


def first_look(plane: np.ndarray) -> Look:
    """Candidate lines and crowded tiles of one 8-bit grey plane, looked at in bands of rows
    (what a band holds at once is a few MB, whatever the frame's size)."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (STROKE_KERNEL, STROKE_KERNEL))
    rows = plane.shape[0]
    lines: list[Region] = []
    crowded = np.zeros(_tiles(plane.shape), dtype=bool)
    textured = np.zeros(_tiles(plane.shape), dtype=bool)
    for start in range(0, rows, BAND):
        # Context above for the strokes; below, a glyph's height too: a glyph that starts in
        # the band is whole in what is looked at.
        top = max(0, start - STROKE_KERNEL)
        part = plane[top : min(rows, start + BAND + GLYPH_MAX + STROKE_KERNEL)]
        tiles = slice(start // TILE, (start + BAND) // TILE)
        for operation in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
            strokes = cv2.morphologyEx(part, operation, kernel) >= STROKE_CONTRAST
            own = strokes[start - top : start - top + BAND]
            crowded[tiles] |= _crowded_tiles(own)
            glyphs = _glyphs(_components(strokes, start - top))
            counted = _tile_counts(glyphs - np.array([0, start - top, 0, 0]), own.shape)
            crowded[tiles] |= counted > CROWDED_GLYPHS
            textured[tiles] |= counted > TEXTURED_GLYPHS
            # Glyphs in a crowded tile make no line that counts (below): not linked at all.
            band_crowded = crowded[tiles]
            in_crowd = band_crowded[
                (glyphs[:, 1] - (start - top)).clip(0, None) // TILE, glyphs[:, 0] // TILE
            ]
            glyphs = glyphs[~in_crowd]
            found = [r for r in _lines(glyphs) if _strokes_across(strokes, r) >= LINE_STROKES]
            lines.extend(r.lowered(top) for r in found)
    # A line in a crowded tile is texture as likely as text: the tile goes to the detector
    # whole, and what it finds there must read as text (search). In a textured one (speckle),
    # so is a short line: only lines of several aligned glyphs stand out of it.
    # A line cut by the frame's edge shows fewer glyphs than it holds: it is kept.
    clear, texture = [], []
    for r in lines:
        tile = ((r.y0 + r.y1) // 2 // TILE, (r.x0 + r.x1) // 2 // TILE)
        if crowded[tile]:
            continue
        cut = r.x0 == 0 or r.y0 == 0 or r.x1 == plane.shape[1] or r.y1 == plane.shape[0]
        if textured[tile] and r.glyphs < TEXTURE_LINE_GLYPHS and not cut:
            texture.append(tile)  # the tile goes to the detector whole instead
        else:
            clear.append(r)
    for tile in texture:
        crowded[tile] = True
    return Look(tuple(clear), _tile_regions(crowded, plane.shape))


def moving_tiles(moving: np.ndarray) -> np.ndarray:
    """The tiles of a cine's frame of which a MOVING share of pixels change between frames
    (`moving`): its moving picture."""
    grid = _tiles(moving.shape)
    starts = np.arange(0, moving.shape[1], TILE)
    widths = np.diff(starts, append=moving.shape[1])
    out = np.zeros(grid, dtype=bool)
    for ty in range(grid[0]):
        band = moving[ty * TILE : (ty + 1) * TILE]
        counts = np.add.reduceat(band.sum(axis=0, dtype=np.int32), starts)
        out[ty] = counts >= MOVING * widths * band.shape[0]
    return out


def in_tiles(region: Region, tiles: np.ndarray) -> bool:
    """The region's centre lies in one of the flagged tiles."""
    return bool(tiles[(region.y0 + region.y1) // 2 // TILE, (region.x0 + region.x1) // 2 // TILE])


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.view(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _components(strokes: np.ndarray, start: int) -> np.ndarray:
    """Connected components' x, y, w, h, area rows that begin in the band's own rows (from
    `start`, BAND of them); one that touches the top row of what is looked at began above."""
    import cv2

    _, labels, stats, _ = cv2.connectedComponentsWithStats(strokes.view(np.uint8), connectivity=8)
    stats = stats[1:]
    own = (stats[:, 1] >= start) & (stats[:, 1] < start + BAND)
    if start:
        own[np.unique(labels[0][labels[0] > 0]) - 1] = False
    return stats[own]


def _glyphs(stats: np.ndarray) -> np.ndarray:
    """Components of a glyph's size: x, y, w, h rows."""
    _, _, w, h, area = stats.T
    keep = (h >= GLYPH_MIN) & (h <= GLYPH_MAX) & (w <= 4 * GLYPH_MAX) & (area >= 3)
    return stats[keep, :4]


def _lines(glyphs: np.ndarray) -> list[Region]:
    """Glyphs linked side by side into lines: the connected groups of near neighbours."""
    if not len(glyphs):
        return []
    g = glyphs[np.argsort(glyphs[:, 0], kind="stable")]
    x, y, w, h = g[:, 0], g[:, 1], g[:, 2], g[:, 3]
    right, bottom = x + w, y + h
    labels = _linked(x, y, right, h)
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.diff(labels[order], prepend=-1))
    ends = np.append(starts[1:], len(order))
    x0, y0 = np.minimum.reduceat(x[order], starts), np.minimum.reduceat(y[order], starts)
    x1, y1 = np.maximum.reduceat(right[order], starts), np.maximum.reduceat(bottom[order], starts)
    height = y1 - y0
    wide = x1 - x0 >= np.where(ends - starts > 1, 1.0, 1.5) * height
    aligned = _aligned(h[order], bottom[order], starts, ends - starts)
    return [
        Region(int(x0[k]), int(y0[k]), int(x1[k]), int(y1[k]), int(height[k]), int(aligned[k]))
        for k in np.flatnonzero((height >= LINE_MIN) & (height <= GLYPH_MAX) & wide)
    ]


def _linked(x: np.ndarray, y: np.ndarray, right: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Each glyph's group (glyphs sorted by x): linked when the next stands within LINK_GAP
    heights to its right, the two overlap by half the lower one's height and their heights
    differ less than LINK_HEIGHTS times; groups are what links join, directly or not."""
    n = len(x)
    reach = right + (LINK_GAP * h).astype(np.int64) + 2
    counts = np.maximum(np.searchsorted(x, reach, side="right") - np.arange(1, n + 1), 0)
    i = np.repeat(np.arange(n), counts)
    j = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + i + 1
    lower = np.minimum(h[i], h[j])
    overlap = np.minimum(y[i] + h[i], y[j] + h[j]) - np.maximum(y[i], y[j])
    near = (overlap >= 0.5 * lower) & (np.maximum(h[i], h[j]) <= LINK_HEIGHTS * lower)
    i, j = i[near], j[near]
    labels = np.arange(n)
    while True:  # the smallest index of each group, spread along links, then by jumping
        joined = labels.copy()
        smaller = np.minimum(labels[i], labels[j])
        np.minimum.at(joined, i, smaller)
        np.minimum.at(joined, j, smaller)
        joined = joined[joined]
        if np.array_equal(joined, labels):
            return labels
        labels = joined


def _aligned(
    heights: np.ndarray, bottoms: np.ndarray, starts: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Each line's glyphs of its own size standing on its baseline (its median height and
    bottom): text's are, a texture's blobs (speckle, Doppler colour) are not. Glyphs come
    grouped by line, each group from `starts`, `counts` long."""
    line = np.repeat(np.arange(len(starts)), counts)
    size, base = _medians(heights, line, starts, counts), _medians(bottoms, line, starts, counts)
    size, base = np.repeat(size, counts), np.repeat(base, counts)
    same = np.abs(heights - size) <= ALIGNED * size
    level = np.abs(bottoms - base) <= ALIGNED * size
    return np.add.reduceat((same & level).astype(np.int64), starts)


def _medians(
    values: np.ndarray, group: np.ndarray, starts: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """The median of each group of `values` (grouped in order, `group` naming each one's)."""
    ordered = values[np.lexsort((values, group))]
    return (ordered[starts + (counts - 1) // 2] + ordered[starts + counts // 2]) / 2


def _strokes_across(strokes: np.ndarray, line: Region) -> float:
    """How many strokes a row of the line crosses, on average over its rows that cross any."""
    part = strokes[line.y0 : line.y1, line.x0 : line.x1]
    starts = part[:, 1:] & ~part[:, :-1]
    crossed = starts.sum(axis=1) + part[:, 0]
    rows = crossed > 0
    return float(crossed[rows].mean()) if rows.any() else 0.0


def _tiles(shape: tuple[int, ...]) -> tuple[int, int]:
    return -(-shape[0] // TILE), -(-shape[1] // TILE)


def _crowded_tiles(strokes: np.ndarray) -> np.ndarray:
    """The share of each tile's pixels that are strokes is over CROWDED (counted a row of
    tiles at a time: no frame-sized temporary)."""
    rows, columns = _tiles(strokes.shape)
    share = np.zeros((rows, columns))
    starts = np.arange(0, strokes.shape[1], TILE)
    for ty in range(rows):
        band = strokes[ty * TILE : (ty + 1) * TILE]
        counts = np.add.reduceat(band.sum(axis=0, dtype=np.int32), starts)
        share[ty] = counts / (TILE * TILE)
    return share > CROWDED


def _tile_counts(glyphs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    counts = np.zeros(_tiles(shape), dtype=np.int64)
    if len(glyphs):
        np.add.at(counts, (glyphs[:, 1] // TILE, glyphs[:, 0] // TILE), 1)
    return counts


def _tile_regions(crowded: np.ndarray, shape: tuple[int, ...]) -> tuple[Region, ...]:
    """Crowded tiles as few rectangles: each row's runs joined, and runs stacked while they
    line up (fewer, larger detector calls: each call's context and padding paid once, and a
    line on a tile's edge seen whole)."""
    rows, columns = shape[:2]
    runs: list[tuple[int, int, int, int]] = []  # x0, x1, first and last row of tiles + 1
    for ty in range(crowded.shape[0]):
        for start, end in _runs(crowded[ty]):
            above = next((r for r in runs if r[3] == ty and r[:2] == (start, end)), None)
            if above:
                runs.remove(above)
            runs.append((start, end, above[2] if above else ty, ty + 1))
    out = []
    for start, end, top, bottom in runs:
        y0, x0 = top * TILE, start * TILE
        y1, x1 = min(rows, bottom * TILE), min(columns, end * TILE)
        out.append(Region(x0, y0, x1, y1, y1 - y0))
    return tuple(out)

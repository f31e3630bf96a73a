"""The first look: candidate lines wherever text is, at every size the search must find, and
few elsewhere; what it cannot judge it hands over whole."""

from __future__ import annotations

import numpy as np
import pytest
from pixel_drawing import body, draw_text, speckle

from sendit_worker.pixels.candidates import TILE, Region, first_look, moving_tiles


def _covered(box: tuple[int, int, int, int], regions) -> bool:
    x0, y0, x1, y1 = box
    return any(
        r.x0 <= x0 + 2 and r.y0 <= y0 + 2 and r.x1 >= x1 - 2 and r.y1 >= y1 - 2 for r in regions
    )


@pytest.mark.parametrize("size", [8, 10, 12, 16, 24, 40])
@pytest.mark.parametrize("value", [255, 0, 170])  # bright, dark, mid-grey on the body
def test_a_line_of_text_is_a_candidate_at_every_size(size, value) -> None:
    image = body(512, 512)
    box = draw_text(image, "DOB 1961-04-12", 90, 170, size, value)  # over the body
    look = first_look(image)
    assert _covered(box, look.lines) or _covered(box, look.crowded), (size, value)


def test_a_text_free_slice_gives_few_candidates() -> None:
    """The body's rim, the table, the bone: edges, not lines of glyphs."""
    assert len(first_look(body(512, 512)).lines) <= 2


def test_speckle_is_handed_over_whole_not_taken_for_lines() -> None:
    look = first_look(speckle(256, 384))
    assert look.crowded and not look.lines


def test_lines_carry_their_aligned_glyphs() -> None:
    image = body(256, 512)
    draw_text(image, "ST ELSEWHERE", 40, 40, 20, 255)
    best = max(first_look(image).lines, key=lambda r: r.glyphs)
    assert best.glyphs >= 8 and 14 <= best.height <= 24


def test_a_thin_strip_is_looked_at() -> None:
    strip = np.full((24, 400), 30, dtype=np.uint8)
    box = draw_text(strip, "ZYXWVUTSON QUINTESSA", 10, 4, 14, 230)
    assert _covered(box, first_look(strip).lines)


def test_crowded_tiles_are_whole_tiles() -> None:
    look = first_look(speckle(300, 300))
    assert all((r.x0 % TILE, r.y0 % TILE) == (0, 0) for r in look.crowded)


def test_crowded_tiles_that_line_up_are_one_rectangle() -> None:
    """A frame of speckle is handed over as one region (the detector's context and padding
    paid once; a line on a tile's edge whole), not a region per row of tiles."""
    assert first_look(speckle(300, 300)).crowded == (Region(0, 0, 300, 300, 300),)


def test_a_cines_moving_picture_is_told_from_text_appearing_on_its_still_screen() -> None:
    """What changes between a cine's frames: a picture (every pixel), or text shown in some
    frames only (its strokes). Only the picture's tiles are moving picture, even beside a page
    of text that came and went."""
    moving = np.zeros((3 * TILE, 4 * TILE), dtype=bool)
    moving[TILE:, : 2 * TILE] = True  # the picture: two tiles wide, two high
    page = np.zeros((3 * TILE, 4 * TILE), dtype=np.uint8)
    for row in range(0, 3 * TILE - 14, 14):  # lines of 12 px text, packed, right of it
        draw_text(page, "ZYXWVUTSON QUINTESSA 1961-04-12", 2 * TILE + 2, row, 12, 255)
    moving |= page > 0
    expected = np.zeros((3, 4), dtype=bool)
    expected[1:, :2] = True
    assert np.array_equal(moving_tiles(moving), expected)

"""The search blanks text, all of it, and nothing else: the detector's box joined with its
line's glyphs, to the frame's edge when the line runs off it; speckle is not text."""

from __future__ import annotations

import numpy as np
import pytest
from pixel_drawing import body, draw_text, speckle

from sendit_worker.pixels.candidates import Region, first_look
from sendit_worker.pixels.detect import Box, TextDetector
from sendit_worker.pixels.read import TextReader
from sendit_worker.pixels.search import Search, mask_of
from sendit_worker.pixels.search import _joined as joined


@pytest.fixture(scope="module")
def search() -> Search:
    detector, reader = TextDetector(), TextReader()
    return Search(lambda: detector, lambda: reader)


def test_a_box_that_stops_short_takes_its_whole_line() -> None:
    """The detector's box covers half the line; the first look's glyphs on its row carry the
    blanking to the line's end (a name whose box started late, a date cut in two)."""
    image = body(256, 512)
    x0, y0, x1, y1 = draw_text(image, "ZYXWVUTSON QUINTESSA", 40, 60, 16, 255)
    lines = first_look(image).lines
    half = Box(x0 + (x1 - x0) // 2, y0, x1, y1)
    region, _ = joined(half, list(lines), 256, 512)
    assert region.x0 <= x0 and region.x1 >= x1 and region.y0 <= y0 and region.y1 >= y1


def test_a_line_running_off_the_frame_is_blanked_to_its_edge(search) -> None:
    image = body(128, 320)
    draw_text(image, "ACC 55X12 ST ELSEWHERE", 200, 40, 14, 255)  # runs off the right
    found = search.views([image])
    assert any(r.x1 == 320 and r.y0 <= 44 <= r.y1 for r in found.regions), found.regions


def test_text_is_found_and_blanked_with_a_small_margin_only(search) -> None:
    image = body(512, 512)
    boxes = [
        draw_text(image, "ZYXWVUTSON^QUINTESSA", 60, 40, 14, 255),
        draw_text(image, "DOB 1961-04-12", 300, 470, 10, 200),
    ]
    found = search.views([image])
    mask = mask_of(found.regions, 512, 512)
    for x0, y0, x1, y1 in boxes:
        assert mask[y0:y1, x0:x1].all()
    text = np.zeros_like(mask)
    for x0, y0, x1, y1 in boxes:
        text[max(0, y0 - 16) : y1 + 16, max(0, x0 - 16) : x1 + 16] = True
    assert (mask & ~text).sum() == 0  # nothing blanked beyond 16 px of the text
    assert found.proven  # lines of aligned glyphs: text beyond doubt


def test_speckle_is_not_blanked(search) -> None:
    found = search.views([speckle(480, 640)])
    assert mask_of(found.regions, 480, 640).mean() < 0.01


def test_the_check_after_blanking_finds_what_the_blanking_missed(search) -> None:
    image = body(256, 512)
    x0, y0, x1, y1 = draw_text(image, "ZYXWVUTSON QUINTESSA", 40, 100, 18, 255)
    partial = [Region(x0, y0, (x0 + x1) // 2, y1, y1 - y0)]  # half the line blanked
    mask = mask_of(partial, 256, 512)
    cleaned = image.copy()
    cleaned[mask] = 0
    left = search.again([cleaned], mask, partial)
    assert mask_of(left.regions, 256, 512)[y0:y1, (x0 + x1) // 2 + 4 : x1].all()


def test_a_short_moving_line_is_looked_at_within_the_crowded_tile_beside_it() -> None:
    """In a cine's projections, a short line next to a tile of speckle shares the tile's crop
    (one network pass, not two: a small crop is mostly padding), and is found there."""
    view = np.zeros((256, 384), dtype=np.uint8)
    view[:128, :128] = speckle(128, 128)  # a crowded tile
    x0, y0, x1, y1 = draw_text(view, "4 cm", 132, 50, 11, 200)  # a short line beside it
    detector = TextDetector()
    found = Search(lambda: detector, TextReader).views([view], np.ones((2, 3), dtype=bool))
    assert detector.runs == 1
    assert mask_of(found.regions, 256, 384)[y0:y1, x0:x1].all()

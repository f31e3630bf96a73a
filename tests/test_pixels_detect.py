"""The text detector looks where it is asked, at native resolution, and finds small text
there; large regions in tiles; identical crops once."""

from __future__ import annotations

import numpy as np
import pytest
from pixel_drawing import body, draw_text

from sendit_worker.pixels.candidates import Region
from sendit_worker.pixels.detect import READ_HEIGHT, TILE, TextDetector, merged, tiles, unenlarged


@pytest.fixture(scope="module")
def detector() -> TextDetector:
    return TextDetector()


def _region(box, pad=20) -> Region:
    x0, y0, x1, y1 = box
    return Region(max(0, x0 - pad), max(0, y0 - pad), x1 + pad, y1 + pad, y1 - y0)


@pytest.mark.parametrize("size", [8, 12, 24, 40])
def test_text_is_found_where_asked_at_native_size(detector, size) -> None:
    image = body(3000, 2400)  # a radiograph's size: nothing is shrunk
    box = draw_text(image, "ZYXWVUTSON QUINTESSA", 1700, 2600, size, 255)
    found = detector.find(image, [_region(box)])  # a wide line: in tiles, found piece by piece
    x0, y0, x1, y1 = box
    covered = np.zeros(x1 - x0, dtype=bool)
    for b in found:
        if b.y0 <= y0 + 4 and b.y1 >= y1 - 4:
            covered[max(0, b.x0 - x0) : max(0, b.x1 - x0)] = True
    assert covered.mean() > 0.97, found


def test_nothing_is_looked_at_outside_the_regions(detector) -> None:
    image = body(512, 512)
    draw_text(image, "ZYXWVUTSON", 40, 40, 20, 255)
    assert detector.find(image, [Region(300, 300, 400, 340, 20)]) == []


def test_a_crop_seen_before_is_not_looked_at_again(detector) -> None:
    image = body(256, 256)
    box = draw_text(image, "MRN 7734129", 30, 30, 16, 255)
    runs = detector.runs
    first = detector.find(image, [_region(box)])
    again = detector.find(image.copy(), [_region(box)])
    assert first == again and detector.runs == runs + 1


def test_a_large_region_is_looked_at_in_overlapping_tiles() -> None:
    parts = tiles(Region(0, 0, 1300, 700, 700))
    assert all(r.x1 - r.x0 <= TILE and r.y1 - r.y0 <= TILE for r in parts)
    covered = np.zeros((700, 1300), dtype=bool)
    for r in parts:
        covered[r.y0 : r.y1, r.x0 : r.x1] = True
    assert covered.all()


def test_tiles_are_of_even_sizes_overlapping_by_a_line() -> None:
    """A region a little wider than a tile is cut in two halves, not in two whole tiles that
    overlap by most of their width (each pixel would be looked at twice)."""
    parts = tiles(Region(0, 0, 640, 480, 480))
    assert [(r.x0, r.x1) for r in parts] == [(0, 352), (288, 640)]
    assert all((r.y0, r.y1) == (0, 480) for r in parts)


def test_regions_over_the_same_pixels_are_merged_touching_ones_are_not() -> None:
    a, b = Region(0, 0, 100, 20, 10), Region(5, 2, 98, 19, 8)
    assert merged([a, b]) == [Region(0, 0, 100, 20, 8)]  # the smaller text decides enlarging
    c = Region(90, 0, 200, 20, 10)
    assert len(merged([a, c])) == 2


def test_regions_looked_at_unenlarged_share_a_crop_while_it_costs_no_more() -> None:
    """Small crops are mostly the network's padding: neighbours go in one crop, far-apart
    regions stay apart, and none is enlarged."""
    near = [Region(100, 100, 140, 112, 6), Region(150, 104, 190, 114, 5)]
    far = [Region(0, 0, 40, 12, 6), Region(400, 300, 440, 312, 6)]
    assert unenlarged(near) == [Region(100, 100, 190, 114, READ_HEIGHT)]
    assert unenlarged(far) == [
        Region(0, 0, 40, 12, READ_HEIGHT),
        Region(400, 300, 440, 312, READ_HEIGHT),
    ]

"""A reviewer's preview of a withheld image: its first frame as a viewer opens it (through the
header's first window, if it gives one), with what was found outlined, as a PNG.

Red: the text the search found. Yellow: the regions the batch's filter rules name. Green: a
region a reviewer proposes. Coordinates are the frame's own pixels, at its native size, so a
reviewer reads a region to release with straight off the picture. The preview shows the
pixels: it stays in the quarantine, beside the original.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom import Dataset

from .codec import Layout, frames
from .regions import blank_mask
from .views import display, views

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the frame's pixels, ends exclusive
Rules = tuple[tuple[int, str], ...]  # (1 keep | 0 blank, deid coordinate), as pixels.screen
FOUND = (255, 40, 40)
RULED = (255, 210, 0)
PROPOSED = (40, 220, 40)


def preview(
    ds: Dataset, found: Sequence[Box] = (), rules: Rules = (), proposed: Rules = ()
) -> bytes:
    """The PNG. Raises codec.CodecError (or TooLarge, regions.RegionError) for pixels that do
    not decode or rules that do not say where."""
    import cv2

    layout = Layout.of(ds)
    looks = views(next(frames(ds, layout)), display(ds, layout))
    view = looks[1] if len(looks) > 1 else looks[0]
    rgb = np.ascontiguousarray(view if view.ndim == 3 else np.repeat(view[..., None], 3, axis=2))
    width = max(1, min(layout.rows, layout.columns) // 256)  # visible on a mammogram too
    for named, colour in ((rules, RULED), (proposed, PROPOSED)):
        mask = blank_mask(named, ds, layout.rows, layout.columns)
        if mask is not None:
            outlines, _ = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(rgb, outlines, -1, colour, width)
    for x0, y0, x1, y1 in found:
        cv2.rectangle(rgb, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), FOUND, width)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV writes BGR
    assert ok, "OpenCV encodes any 8-bit RGB picture as PNG"
    return png.tobytes()

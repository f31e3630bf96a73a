"""A frame as a viewer could show it: its stored range and every window the header gives (in
stored values), colour as RGB, palette colour through its table, never shrunk."""

from __future__ import annotations

import numpy as np
import pydicom
from dicomdata import bundled
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut
from pydicom.sequence import Sequence

from sendit_worker.pixels.codec import Frame, Layout, frames
from sendit_worker.pixels.views import darkest_index, display, planes, views


def _frame(values: np.ndarray, index: int = 0, photometric: str = "MONOCHROME2") -> Frame:
    return Frame(index, values, photometric, False)


def test_grey_is_shown_in_its_range_and_through_each_window_in_stored_values() -> None:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = [40, 400], [400, 2000]
    shown = display(ds, Layout.of(ds))
    assert shown.windows_of(0) == ((864.0, 1264.0), (424.0, 2424.0))  # (HU + 1024) / 1
    values = np.arange(0, 2048, dtype=np.int16).reshape(32, 64)
    out = views(_frame(values), shown)
    assert [v.shape for v in out] == [(32, 64)] * 3  # native size
    soft = out[1]
    assert soft[values < 864].max() == 0 and soft[values > 1264].min() == 255


def test_per_frame_windows_come_from_the_functional_groups() -> None:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.NumberOfFrames = 2
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    for keyword in ("WindowCenter", "WindowWidth"):
        ds.pop(keyword, None)
    groups = []
    for center in (100, 300):
        voi, item = Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 50
        item.FrameVOILUTSequence = Sequence([voi])
        groups.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    shown = display(ds, Layout.of(ds))
    # (value + 1000) / 2: each frame its own window, through the top level's rescale
    assert shown.windows_of(0) == ((537.5, 562.5),) and shown.windows_of(1) == ((637.5, 662.5),)


def test_palette_colour_is_shown_through_its_table() -> None:
    ds = pydicom.dcmread(bundled("examples_palette.dcm"))
    layout = Layout.of(ds)
    frame = next(frames(ds, layout))
    (view,) = views(frame, display(ds, layout))
    expected = apply_color_lut(ds.pixel_array, ds)
    expected = (expected >> 8).astype(np.uint8) if expected.dtype != np.uint8 else expected
    assert np.array_equal(view, expected)
    palette = display(ds, layout).palette
    assert palette[darkest_index(palette)].sum() == palette.sum(axis=1).min()


def test_colour_is_shown_as_rgb_and_searched_as_luminance_and_colourfulness() -> None:
    ds = pydicom.dcmread(bundled("SC_rgb_jpeg_dcmtk.dcm"))  # YBR_FULL JPEG
    layout = Layout.of(ds)
    (view,) = views(next(frames(ds, layout)), display(ds, layout))
    assert np.abs(view.astype(int) - ds.pixel_array.astype(int)).max() <= 3  # as pydicom shows it
    yellow = np.zeros((4, 4, 3), dtype=np.uint8)
    yellow[..., :2] = 255
    luminance, colourful = planes(yellow)
    assert luminance.min() > 200 and colourful.min() == 255

"""What a viewer could show of one frame, as 8-bit images for the text search.

A grey frame is shown in its stored range and through every window the header gives (the top
level's, and each frame's own in the functional groups, in stored values after the rescale);
faint text shows in one or the other. A colour frame is shown as RGB (YBR converted), a
palette frame through its lookup table. Each view is at the frame's native size: nothing is
shrunk. The search then looks at their grey planes: a grey view itself; for colour, luminance
and colourfulness (yellow text on a grey image is bright in the second).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, convert_color_space

from .codec import CodecError, Frame, Layout

MAX_WINDOWS = 4  # distinct windows looked through, per frame


@dataclass(frozen=True)
class Display:
    """How the header says frames are shown: per frame, the windows in stored values."""

    windows: tuple[tuple[tuple[float, float], ...], ...]  # per frame (or one for all)
    palette: np.ndarray | None = None  # index -> RGB (8-bit), for PALETTE COLOR

    def windows_of(self, index: int) -> tuple[tuple[float, float], ...]:
        if not self.windows:
            return ()
        return self.windows[index] if index < len(self.windows) else self.windows[-1]


def display(ds: Dataset, layout: Layout) -> Display:
    """Read once per image: windows (top level, shared and per-frame functional groups)."""
    palette = _palette(ds, layout) if layout.photometric == "PALETTE COLOR" else None
    if layout.colour or palette is not None:
        return Display((), palette)
    top = _windows(ds, _rescale(ds, (1.0, 0.0)))
    shared = _group(ds.get("SharedFunctionalGroupsSequence"), 0)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    common = _rescale(shared, _rescale(ds))
    if not per_frame:
        return Display((_merge(top, _group_windows(shared, common)),))
    frames = []
    for index in range(len(per_frame)):
        own = _group(per_frame, index)
        rescale = _rescale(own, common)
        windows = _group_windows(own, rescale) or _group_windows(shared, rescale)
        frames.append(_merge(top, windows))
    return Display(tuple(frames))


def views(frame: Frame, shown: Display) -> list[np.ndarray]:
    """The frame as a viewer could show it: 8-bit grey (rows x columns) or RGB."""
    values = frame.values
    if shown.palette is not None:
        return [shown.palette[np.clip(values, 0, len(shown.palette) - 1)]]
    if values.ndim == 3:
        if frame.photometric.startswith("YBR"):
            values = convert_color_space(values, "YBR_FULL", "RGB")
        return [to_uint8(values, float(values.min()), float(values.max()))]
    low, high = float(values.min()), float(values.max())
    out = [to_uint8(values, low, high)]
    for w_low, w_high in shown.windows_of(frame.index):
        if w_high > w_low and (w_low > low or w_high < high):  # else the same picture
            out.append(to_uint8(values, w_low, w_high))
    return out


def planes(view: np.ndarray) -> list[np.ndarray]:
    """Grey planes of one view: itself, or luminance and colourfulness."""
    if view.ndim == 2:
        return [view]
    import cv2

    red, green, blue = cv2.split(view)
    brightest = cv2.max(cv2.max(red, green), blue)
    darkest = cv2.min(cv2.min(red, green), blue)
    return [cv2.cvtColor(view, cv2.COLOR_RGB2GRAY), cv2.subtract(brightest, darkest)]


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values in [low, high] spread over 0..255 (clipped outside)."""
    if values.dtype == np.uint8 and low == 0 and high == 255:
        return values
    if values.dtype.itemsize <= 2 and values.dtype.kind in "iu":
        lut, offset = _lut(values.dtype.str, low, high)
        return lut[values.astype(np.int32) + offset] if offset else lut[values]
    span = max(high - low, 1e-6)
    scaled = (np.clip(values.astype(np.float32), low, high) - low) * (255.0 / span)
    return scaled.astype(np.uint8)


def darkest_index(palette: np.ndarray) -> int:
    """The palette entry a viewer shows darkest: what a blanked palette pixel becomes."""
    return int(np.argmin(palette.astype(np.int32).sum(axis=-1)))


@lru_cache(maxsize=64)
def _lut(dtype: str, low: float, high: float) -> tuple[np.ndarray, int]:
    """A lookup table over every value of an 8- or 16-bit type (cheaper than arithmetic on
    every pixel), and the offset that makes a signed value an index."""
    info = np.iinfo(np.dtype(dtype))
    values = np.arange(int(info.min), int(info.max) + 1, dtype=np.float32)
    span = max(high - low, 1e-6)
    lut = ((np.clip(values, low, high) - low) * (255.0 / span)).astype(np.uint8)
    return lut, -int(info.min)


def _palette(ds: Dataset, layout: Layout) -> np.ndarray:
    """Each possible index through the palette, as 8-bit RGB."""
    dtype = np.uint8 if layout.bits_allocated == 8 else np.uint16
    entries = np.arange(1 << min(layout.bits_stored, 16), dtype=np.uint32).astype(dtype)
    try:
        rgb = apply_color_lut(entries, ds)
    except Exception as exc:
        raise CodecError(f"a palette that does not apply ({type(exc).__name__})") from None
    return (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb.astype(np.uint8)


def _rescale(ds: Dataset | None, default: tuple[float, float] = (1.0, 0.0)) -> tuple[float, float]:
    """(slope, intercept) of a dataset or a functional group's Pixel Value Transformation."""
    if ds is None:
        return default
    item = _group(ds.get("PixelValueTransformationSequence"), 0) or ds
    try:
        slope = float(item.get("RescaleSlope", default[0]) or default[0])
        intercept = float(item.get("RescaleIntercept", default[1]) or 0)
    except (TypeError, ValueError):
        return default
    return (slope, intercept) if slope else default


def _windows(ds: Dataset | None, rescale: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    """The windows of a dataset or a Frame VOI LUT item, as stored-value ranges."""
    if ds is None:
        return ()
    centers, widths = _numbers(ds.get("WindowCenter")), _numbers(ds.get("WindowWidth"))
    slope, intercept = rescale
    out = []
    for center, width in zip(centers, widths, strict=False):
        if width > 0:
            low, high = center - width / 2, center + width / 2
            ends = sorted(((low - intercept) / slope, (high - intercept) / slope))
            out.append((ends[0], ends[1]))
    return tuple(out)


def _group_windows(
    group: Dataset | None, rescale: tuple[float, float]
) -> tuple[tuple[float, float], ...]:
    if group is None:
        return ()
    return _windows(_group(group.get("FrameVOILUTSequence"), 0), rescale)


def _group(sequence: object, index: int) -> Dataset | None:
    try:
        item = sequence[index]  # type: ignore[index]
    except (TypeError, IndexError, KeyError):
        return None
    return item if isinstance(item, Dataset) else None


def _merge(*groups: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    out: list[tuple[float, float]] = []
    for group in groups:
        for window in group:
            if window not in out and len(out) < MAX_WINDOWS:
                out.append(window)
    return tuple(out)


def _numbers(value: object) -> list[float]:
    if value is None or value == "":
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    out = []
    for item in items:
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            continue
    return out

"""Text in pixels: PP-OCRv4's text detector (DB), from the rapidocr-onnxruntime wheel.

Only the detection model runs (where text is, not what it says), on onnxruntime, one thread:
the pool already has a process per CPU. Nothing is fetched: the model ships in the wheel.

Each frame is looked at as a radiologist might see it: grey images in their stored range and,
when the header has one, through their VOI window (faint text shows in one or the other),
contrast-equalised (CLAHE) so low-contrast text stands out; colour images as they are; and,
for both, as their thin strokes alone (text across a changing background). Frames
larger than MAX_SIDE are downscaled first (text that would fall below the detector's reach at
that size is rare in images that large); tiny frames are upscaled by the detector. Identical
frames (a cine loop's repeats, a series' identical overlays) are detected once, by hash.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_SIDE = 1024
MIN_SIDE = 512  # smaller frames are upscaled to this: the detector misses text in tiny ones
# Frames narrower than this hold no legible line of text (an RT dose grid of 10 x 10): upscaled
# that far, the detector sees text in noise.
MIN_FRAME = 32
CACHE_SIZE = 256
PAD = 16
STROKE_KERNEL = 9  # wider than a stroke of text, narrower than anatomy
MARGIN = 0.25  # of a line's height, above and below it
MARGIN_ALONG = 0.75  # before and after it
CLAHE_CLIP = 4.0
# A tall blob that is not a line of text (the detector's false positive on smooth anatomy):
# text taller than this is kept only when at least LINE_ASPECT times as wide as high.
TALL = 24
LINE_ASPECT = 2.0


@dataclass(frozen=True)
class Box:
    """Where text is, in frame pixels, with a margin; ends exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def area(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


class TextDetector:
    def __init__(self) -> None:
        import cv2
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector as DBDetector

        model = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
        cv2.setNumThreads(1)  # the pool has a process per CPU already
        self._cv2 = cv2
        self._db = DBDetector(
            {
                "model_path": str(model),
                "intra_op_num_threads": 1,
                "inter_op_num_threads": 1,
                "use_cuda": False,
                "use_dml": False,
                "limit_type": "min",
                "limit_side_len": MIN_SIDE,
                "mean": [0.5, 0.5, 0.5],
                "std": [0.5, 0.5, 0.5],
                # rapidocr's defaults; lower ones found no more text in the corpus here.
                "thresh": 0.3,
                "box_thresh": 0.5,
                "max_candidates": 1000,
                "unclip_ratio": 1.6,
                "use_dilation": True,
                "score_mode": "fast",
            }
        )
        self._clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(8, 8))
        self._cache: OrderedDict[bytes, tuple[Box, ...]] = OrderedDict()
        self.runs = 0  # detector passes (not cache hits): for the bench

    def boxes(self, views: list[np.ndarray], blanked: np.ndarray | None = None) -> tuple[Box, ...]:
        """Text boxes found in any of one frame's views (8-bit grey or RGB, same shape).

        `blanked`: pixels already blanked, seen inpainted from their surroundings: a black
        rectangle's edges look like text to the detector, and what is checked is whether text
        remains outside them (inside, the output is black).
        """
        found: list[Box] = []
        if min(views[0].shape[:2]) < MIN_FRAME:
            return ()
        for view in views:
            if blanked is not None:
                view = self._cv2.inpaint(view, blanked.astype(np.uint8), 3, self._cv2.INPAINT_TELEA)
            key = hashlib.blake2b(view.tobytes(), digest_size=16).digest()
            key += repr(view.shape).encode()
            if key not in self._cache:
                self._cache[key] = self._detect(view)
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            found.extend(self._cache[key])
        return tuple(found)

    def _detect(self, view: np.ndarray) -> tuple[Box, ...]:
        self.runs += 1
        cv2 = self._cv2
        rows, columns = view.shape[:2]
        if view.ndim == 2:
            view = cv2.cvtColor(self._clahe.apply(view), cv2.COLOR_GRAY2RGB)
        scale = min(1.0, MAX_SIDE / max(rows, columns))
        if scale < 1.0:
            size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
            view = cv2.resize(view, size, interpolation=cv2.INTER_AREA)
        # A border: the detector misses text that touches the frame's edge.
        pad = max(PAD, view.shape[0] // 16)
        view = cv2.copyMakeBorder(view, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        quads, _ = self._db(np.ascontiguousarray(view))
        boxes = []
        for quad in quads if quads is not None else ():
            xs, ys = (quad[:, 0] - pad) / scale, (quad[:, 1] - pad) / scale
            height, width = ys.max() - ys.min(), xs.max() - xs.min()
            if height > TALL and width < LINE_ASPECT * height:
                continue
            # Wider along the line: the detector's box often stops a letter short of its end.
            across, along = 2 + MARGIN * height, 2 + MARGIN_ALONG * height
            x0, y0 = int(xs.min() - along), int(ys.min() - across)
            x1, y1 = int(np.ceil(xs.max() + along)) + 1, int(np.ceil(ys.max() + across)) + 1
            # A line that nearly reaches the frame's edge runs off it: blanked to the edge.
            reach = height + along
            boxes.append(
                Box(
                    0 if x0 < reach else x0,
                    0 if y0 < across else y0,
                    columns if x1 > columns - reach else x1,
                    rows if y1 > rows - across else y1,
                )
            )
        return tuple(boxes)


def views(frame: np.ndarray, window: tuple[float, float] | None) -> list[np.ndarray]:
    """What the detector looks at for one decoded frame (rows x columns [x 3])."""
    lowest, highest = float(frame.min()), float(frame.max())
    full = _to_uint8(frame, lowest, highest)
    if frame.ndim == 3:
        return [full, strokes(full)]
    out = [full, strokes(full)]
    if window is not None:
        low, high = window
        if high > low and (low > lowest or high < highest):  # else the same picture
            out.append(_to_uint8(frame, low, high))
    return out


def strokes(view: np.ndarray) -> np.ndarray:
    """Thin bright and dark structures only (top-hat plus black-hat): text whose line crosses
    backgrounds of different brightness is one line here, where the detector otherwise stops
    at the first change of background."""
    import cv2

    grey = cv2.cvtColor(view, cv2.COLOR_RGB2GRAY) if view.ndim == 3 else view
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (STROKE_KERNEL, STROKE_KERNEL))
    thin = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel).astype(np.int32)
    thin += cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel)
    top = int(thin.max())
    return (thin * (255.0 / top)).clip(0, 255).astype(np.uint8) if top else grey * 0


def _to_uint8(frame: np.ndarray, low: float, high: float) -> np.ndarray:
    if frame.dtype == np.uint8 and low == 0 and high == 255:
        return frame
    span = max(high - low, 1e-6)
    scaled = (np.clip(frame.astype(np.float32), low, high) - low) * (255.0 / span)
    return scaled.astype(np.uint8)


def mask_of(boxes: tuple[Box, ...], rows: int, columns: int) -> np.ndarray:
    mask = np.zeros((rows, columns), dtype=bool)
    for b in boxes:
        mask[b.y0 : b.y1, b.x0 : b.x1] = True
    return mask

"""The text detector: PP-OCRv4's detection model (DB), from the rapidocr-onnxruntime wheel.

Only detection runs (where text is, not what it says), on onnxruntime, one thread: the pool has
a process per CPU already. Nothing is fetched: the model ships in the wheel. This is the one
interface to it, so another execution provider (a GPU) can be put behind it.

It looks only where it is asked (`find`: the first look's candidate lines and crowded tiles, or
a whole frame in tiles for the shadow mode), always at native resolution: each region is cut
out with a margin, stretched to its own contrast (faint text stands out), padded with its own
background to a multiple of 32 (the network's stride; black makes it see text where speckle
ends, repeated edges smear a line the frame's edge cuts), and enlarged when its text is smaller
than the network reads well (a small crop: cheap). Identical crops (an overlay repeated on every
frame of a cine, on every slice of a series) are looked at once.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .candidates import Region

STRIDE = 32
CONTEXT = 8  # pixels of surround on every side of a region
READ_HEIGHT = 28  # lines lower than this are read enlarged towards it (up to MAX_SCALE times)
MAX_SCALE = 4
FLAT = 12  # a crop whose contrast is below this (of 255) holds no legible text
TILE = 512  # a region's side looked at at once (its memory grows with it), overlapping by a line
SCALED_TILE = 1024  # an enlarged region's side
TILE_OVERLAP = 64
CACHE_SIZE = 512
SAME_PIXELS = 0.7  # regions sharing this much of the smaller one are looked at as one
# A tall blob that is not a line of text (the detector's false positive on smooth anatomy):
# text taller than this is kept only when at least LINE_ASPECT times as wide as high; and no
# line of the text sizes looked for is taller than LINE_MAX.
TALL = 48
LINE_ASPECT = 1.5
LINE_MAX = 96


@dataclass(frozen=True)
class Box:
    """Where text is, in frame pixels; ends exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def region(self) -> Region:
        return Region(self.x0, self.y0, self.x1, self.y1, self.height)


class TextDetector:
    def __init__(self) -> None:
        import cv2

        self._cv2 = cv2
        self._session = session(rapidocr() / "models" / "ch_PP-OCRv4_det_infer.onnx")
        self._input = self._session.get_inputs()[0].name
        # rapidocr's defaults; lower ones found no more text in the corpus here.
        self._post = _db_postprocess()(
            thresh=0.3,
            box_thresh=0.5,
            max_candidates=1000,
            unclip_ratio=1.6,
            use_dilation=True,
            score_mode="fast",
        )
        self._cache: OrderedDict[bytes, tuple[Box, ...]] = OrderedDict()
        self.runs = 0  # network passes (not cache hits): for the bench
        self.pixels = 0  # pixels those passes looked at

    def find(self, image: np.ndarray, regions: list[Region]) -> list[Box]:
        """Text boxes in the regions of one 8-bit view (grey or RGB), in frame pixels; a
        region larger than a tile is looked at tile by tile."""
        found: list[Box] = []
        for region in merged(regions):
            scale = _scale(region)
            for part in tiles(region, min(TILE, SCALED_TILE // scale), TILE // scale):
                found.extend(self._region(image, part))
        return found

    def whole(self, image: np.ndarray) -> list[Box]:
        """Every pixel of a view, in tiles (the shadow mode's reference)."""
        rows, columns = image.shape[:2]
        return self.find(image, [Region(0, 0, columns, rows, rows)])

    def _region(self, image: np.ndarray, region: Region) -> list[Box]:
        rows, columns = image.shape[:2]
        x0, y0 = max(0, region.x0 - CONTEXT), max(0, region.y0 - CONTEXT)
        x1, y1 = min(columns, region.x1 + CONTEXT), min(rows, region.y1 + CONTEXT)
        crop = image[y0:y1, x0:x1]
        counts = sum(_cumulative(crop))
        low, high = _quantile(counts, 0.005), _quantile(counts, 0.995)
        if high - low < FLAT:
            return []
        scale = _scale(region)
        key = hashlib.blake2b(crop.tobytes(), digest_size=16).digest()
        key += f"{crop.shape}{scale}".encode()
        if key in self._cache:
            self._cache.move_to_end(key)
        else:
            self._cache[key] = self._detect(crop, low, high, scale)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return [Box(b.x0 + x0, b.y0 + y0, b.x1 + x0, b.y1 + y0) for b in self._cache[key]]

    def _detect(self, crop: np.ndarray, low: int, high: int, scale: int) -> tuple[Box, ...]:
        cv2 = self._cv2
        stretched = cv2.convertScaleAbs(
            crop, alpha=255.0 / (high - low), beta=-low * 255.0 / (high - low)
        )
        if stretched.ndim == 2:
            stretched = cv2.cvtColor(stretched, cv2.COLOR_GRAY2RGB)
        if scale > 1:
            stretched = cv2.resize(
                stretched, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC
            )
        rows, columns = stretched.shape[:2]
        pad = STRIDE // 2
        bottom, right = _network_side(rows) - rows - pad, _network_side(columns) - columns - pad
        # Padded with its background: repeated edges would smear a line cut by the frame's edge
        # into streaks the network does not read as text.
        background = [_quantile(counts, 0.5) for counts in _cumulative(stretched)]
        padded = cv2.copyMakeBorder(
            stretched, pad, bottom, pad, right, cv2.BORDER_CONSTANT, value=background
        )
        blob = (padded.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)[np.newaxis]
        self.runs += 1
        self.pixels += blob.shape[2] * blob.shape[3]
        prediction = self._session.run(None, {self._input: blob})[0]
        quads, _ = self._post(prediction, padded.shape[:2])
        boxes = []
        for quad in quads if quads is not None else ():
            xs = (quad[:, 0] - STRIDE // 2) / scale
            ys = (quad[:, 1] - STRIDE // 2) / scale
            height, width = ys.max() - ys.min(), xs.max() - xs.min()
            if height > LINE_MAX or (height > TALL and width < LINE_ASPECT * height):
                continue
            boxes.append(
                Box(
                    max(0, int(np.floor(xs.min()))),
                    max(0, int(np.floor(ys.min()))),
                    min(crop.shape[1], int(np.ceil(xs.max())) + 1),
                    min(crop.shape[0], int(np.ceil(ys.max())) + 1),
                )
            )
        return tuple(b for b in boxes if b.x1 > b.x0 and b.y1 > b.y0)


@cache
def rapidocr() -> Path:
    """The rapidocr-onnxruntime wheel's folder (its models and modules), found without
    importing the package."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("rapidocr-onnxruntime is not installed")
    return Path(spec.submodule_search_locations[0])


@cache
def _db_postprocess() -> Any:
    """rapidocr's DB post-processing (boxes from the network's map), its module loaded once on
    its own: importing the package runs its whole OCR pipeline's imports (requests among them),
    80 ms a pool process for nothing the detector uses."""
    path = rapidocr() / "ch_ppocr_det" / "utils.py"
    spec = importlib.util.spec_from_file_location("sendit_rapidocr_det_utils", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"rapidocr-onnxruntime without {path.name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DBPostProcess


def _cumulative(image: np.ndarray) -> list[np.ndarray]:
    """Each channel's cumulative histogram of an 8-bit image: its quantiles without sorting
    it (a crop's sort cost a tenth of the network's pass on it)."""
    import cv2

    channels = 1 if image.ndim == 2 else image.shape[2]
    return [
        np.cumsum(cv2.calcHist([image], [c], None, [256], (0, 256)).ravel().astype(np.int64))
        for c in range(channels)
    ]


def _quantile(cumulative: np.ndarray, q: float) -> int:
    """The q quantile of the values counted, between ranks as numpy's percentile and median
    interpolate, truncated."""
    position = q * (int(cumulative[-1]) - 1)
    rank = int(position)
    low = int(np.searchsorted(cumulative, rank, side="right"))
    high = int(np.searchsorted(cumulative, rank + 1, side="right")) if position > rank else low
    return int(low + (high - low) * (position - rank))


def session(model: Path) -> Any:
    """An onnxruntime session on one thread (the pool has a process per CPU already), its
    memory planned for crops of any size."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    # Crops differ in size: memory patterns planned per input shape only pile up (measured:
    # +95 MB at 384 px tiles with them, +39 without).
    options.enable_mem_pattern = False
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def merged(regions: list[Region]) -> list[Region]:
    """Regions of text of a like size mostly over the same pixels as one (each looked at
    once); regions that only touch stay apart (one large crop would show the detector a
    texture, not a line), and so do a line and a tile (the tile would be enlarged)."""
    out: list[Region] = []
    for region in sorted(regions, key=lambda r: (r.y0, r.x0)):
        for i, other in enumerate(out):
            alike = max(region.height, other.height) <= 2 * min(region.height, other.height)
            if alike and _shared(region, other) >= SAME_PIXELS:
                # the smaller text decides whether the crop is read enlarged
                out[i] = replace(region.joined(other), height=min(region.height, other.height))
                break
        else:
            out.append(region)
    return out if len(out) == len(regions) else merged(out)


def _shared(a: Region, b: Region) -> float:
    """The share of the smaller region that the larger covers."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a.x1 - a.x0) * (a.y1 - a.y0), (b.x1 - b.x0) * (b.y1 - b.y0))
    return width * height / max(smaller, 1)


def tiles(region: Region, width: int = TILE, height: int = TILE) -> list[Region]:
    """A region in tiles of at most `width` x `height` pixels (what the network sees, enlarged,
    stays within SCALED_TILE x TILE: its memory is bounded), of even sizes, overlapping by a
    line (a line cut by one tile's edge is whole in the next)."""
    if region.x1 - region.x0 <= width and region.y1 - region.y0 <= height:
        return [region]
    return [
        Region(x0, y0, x1, y1, region.height)
        for y0, y1 in _spans(region.y0, region.y1, height, min(TILE_OVERLAP, height // 2))
        for x0, x1 in _spans(region.x0, region.x1, width, min(TILE_OVERLAP, width // 2))
    ]


def _spans(start: int, end: int, side: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) as the fewest spans of at most `side`, overlapping by `overlap`, of even
    sizes (640 in 512s: 352 and 352, not 512 and 512)."""
    if end - start <= side:
        return [(start, end)]
    count = -(-(end - start - overlap) // (side - overlap))
    size = -(-(end - start + (count - 1) * overlap) // count)
    starts = [start + i * (size - overlap) for i in range(count - 1)] + [end - size]
    return [(a, a + size) for a in starts]


def unenlarged(regions: list[Region]) -> list[Region]:
    """The regions, to be looked at at native scale whatever the height of their text; joined
    while one crop of two costs the network no more than two crops (a small crop is mostly
    its padding)."""
    out = [replace(r, height=max(r.height, READ_HEIGHT)) for r in regions]
    joined = True
    while joined:
        joined = False
        for i, a in enumerate(out):
            for j in range(i + 1, len(out)):
                both = a.joined(out[j])
                if _network_pixels(both) <= _network_pixels(a) + _network_pixels(out[j]):
                    out[i], joined = both, True
                    del out[j]
                    break
            if joined:
                break
    return out


def _network_pixels(region: Region) -> int:
    """What the network looks at for a region at native scale: with its context and padding."""
    width, height = region.x1 - region.x0 + 2 * CONTEXT, region.y1 - region.y0 + 2 * CONTEXT
    return _network_side(width) * _network_side(height)


def enlarged(region: Region) -> bool:
    """The region's text is lower than the network reads well: its crop is enlarged."""
    return _scale(region) > 1


def _scale(region: Region) -> int:
    """How much a region's crop is enlarged: towards READ_HEIGHT, at most MAX_SCALE times."""
    return min(MAX_SCALE, max(1, -(-READ_HEIGHT // max(region.height, 1))))


def _network_side(size: int) -> int:
    """A crop's side as the network sees it: a multiple of its stride, half a stride of
    background more on either side."""
    return -(-size // STRIDE) * STRIDE + STRIDE


def mask_of(boxes: list[Box], rows: int, columns: int) -> np.ndarray:
    mask = np.zeros((rows, columns), dtype=bool)
    for b in boxes:
        mask[b.y0 : b.y1, b.x0 : b.x1] = True
    return mask

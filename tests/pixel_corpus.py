"""A burned-in text corpus: Pillow draws names, IDs, dates and institutions into pydicom's
bundled images (never a download), at different sizes, positions and contrasts, with truthful
and lying headers; plus text-free originals and derived images, and scanned documents.

Each case keeps the text-free pixels it was drawn on and the boxes drawn, so a test (or
bench/pixels.py) can tell whether any drawn text survived in an output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pydicom
import pydicom.uid as uids
from dicomdata import bundled
from PIL import Image, ImageDraw, ImageFont

MIN_FONT = 12  # text smaller than this is not always found (see the report of issue 12)
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = ["ZYXWVUTSON^QUINTESSA", "MRN 7734129", "DOB 1961-04-12", "ST ELSEWHERE INFIRMARY",
         "ACC 55X12", "DR FEELGOOD", "12/03/2024 14:22"]  # fmt: skip
# (bundled file, kind, modality label); "has text": a real capture with text of its own, so
# never a text-free case.
SOURCES = [
    ("CT_small.dcm", "original", "CT"),
    ("MR_small.dcm", "derived", "MR"),
    ("MR_small_RLE.dcm", "derived", "MR"),
    ("MR_small_jpeg_ls_lossless.dcm", "derived", "MR"),
    ("MR_small_jp2klossless.dcm", "derived", "MR"),
    ("examples_ybr_color.dcm", "has text", "US"),  # 30 frames, JPEG baseline, its own text
    ("SC_rgb_rle_2frame.dcm", "derived", "SC"),
    ("SC_rgb_rle.dcm", "derived", "SC"),
    ("image_dfl.dcm", "derived", "SC"),
]


@dataclass
class Case:
    name: str
    modality: str
    kind: str  # text | text_free | document
    ds: pydicom.Dataset
    clean: np.ndarray  # frames x rows x columns [x 3]: the pixels before any text was drawn
    boxes: list[tuple[int, int, int, int, int]] = field(default_factory=list)  # frame, x0..y1


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(FONT, size)
    except OSError:
        return ImageFont.load_default(size=size)


def _frames(ds: pydicom.Dataset) -> np.ndarray:
    ds.pixel_array_options(as_rgb=False)
    arr = np.array(ds.pixel_array)
    return arr if int(ds.get("NumberOfFrames") or 1) > 1 else arr[np.newaxis]


def _store(ds: pydicom.Dataset, stack: np.ndarray, syntax: str) -> None:
    arr = stack if int(ds.get("NumberOfFrames") or 1) > 1 else stack[0]
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    if syntax in (uids.RLELossless, uids.JPEGLSLossless, uids.JPEG2000Lossless):
        ds.compress(syntax, generate_instance_uid=False)


def _native(name: str) -> tuple[pydicom.Dataset, str]:
    ds = pydicom.dcmread(bundled(name))
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_compressed:
        ds.decompress(generate_instance_uid=False)
    ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    return ds, syntax


def draw(stack: np.ndarray, rng: random.Random, lines: int, contrast: float) -> list[tuple]:
    """Draw `lines` of text into every frame at one place (as a scanner burns it in)."""
    rows, columns = stack.shape[1:3]
    low, high = float(stack.min()), float(stack.max())
    boxes = []
    for _ in range(lines):
        size = max(MIN_FONT, min(rows, columns) // rng.choice([8, 12, 16]))
        text = rng.choice(WORDS)
        f = font(size)
        x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=f)
        x = rng.randint(0, max(0, columns - (x1 - x0) - 1))
        y = rng.randint(0, max(0, rows - (y1 - y0) - 1))
        mask = Image.new("L", (columns, rows))
        ImageDraw.Draw(mask).text((x - x0, y - y0), text, fill=255, font=f)
        on = np.array(mask) > 127
        if not on.any():
            continue
        value = low + contrast * (high - low)
        for frame in stack:
            frame[on] = value
        ys, xs = np.nonzero(on)
        for i in range(len(stack)):
            boxes.append((i, int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return boxes


def document(rng: random.Random, dark: bool = False) -> pydicom.Dataset:
    """A scanned letter (a light page of lines of text) or a report's screen save (light text
    on a dark screen), as a Secondary Capture."""
    page = Image.new("L", (400, 520), 20 if dark else 235)
    d = ImageDraw.Draw(page)
    for i in range(16):
        text = " ".join(rng.sample(WORDS, 2))
        d.text((30, 30 + i * 28), text, fill=235 if dark else 20, font=font(16))
    ds, _ = _native("image_dfl.dcm")
    ds.Rows, ds.Columns = 520, 400
    ds.PixelData = np.array(page, dtype=np.uint8).tobytes()
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"  # a lying header
    return ds


def corpus(seed: int = 12, sources: list[tuple[str, str, str]] = SOURCES) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []
    for name, kind, modality in sources:
        for variant in ("free", "bright", "faint"):
            ds, syntax = _native(name)
            stack = _frames(ds)
            clean = stack.copy()
            boxes: list[tuple] = []
            if variant != "free":
                contrast = 1.0 if variant == "bright" else 0.55
                boxes = draw(stack, rng, lines=rng.choice([1, 2, 3]), contrast=contrast)
            _store(ds, stack, syntax)
            ds.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID or syntax
            ds.SOPInstanceUID = uids.generate_uid()
            if kind == "original":
                ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.BurnedInAnnotation = rng.choice(["NO", "UNKNOWN", None])  # lying or absent
            if ds.BurnedInAnnotation is None:
                del ds.BurnedInAnnotation
            label = "text_free" if variant == "free" and kind != "has text" else "text"
            cases.append(Case(f"{name}:{variant}:{seed}", modality, label, ds, clean, boxes))
    for i in range(3):
        ds = document(rng, dark=i == 2)
        ds.SOPInstanceUID = uids.generate_uid()
        cases.append(Case(f"document:{i}:{seed}", "DOC", "document", ds, _frames(ds)))
    return cases


def surviving(case: Case, output: pydicom.Dataset) -> list[tuple]:
    """The drawn boxes in which an output still differs from the clean original in the way the
    text did: more than a few of the text's pixels are still there."""
    out = _frames(output)
    if out.shape != case.clean.shape:
        out = out.reshape(case.clean.shape)
    drawn = _frames(case.ds)
    left = []
    for i, x0, y0, x1, y1 in case.boxes:
        text = drawn[i, y0:y1, x0:x1] != case.clean[i, y0:y1, x0:x1]
        kept = text & (out[i, y0:y1, x0:x1] == drawn[i, y0:y1, x0:x1])
        if text.any() and kept.sum() > max(3, 0.05 * text.sum()):
            left.append((i, x0, y0, x1, y1))
    return left

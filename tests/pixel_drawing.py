"""Small drawn images for the pixel search's unit tests: text in a given size and font on a
background, and the box it occupies."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(FONT, size)
    except OSError:
        return ImageFont.load_default(size=size)


def draw_text(
    image: np.ndarray, text: str, x: int, y: int, size: int, value: int
) -> tuple[int, int, int, int]:
    """Draw `text` into an 8-bit grey image in place; the box its pixels occupy (ends
    exclusive)."""
    mask = Image.new("L", (image.shape[1], image.shape[0]))
    ImageDraw.Draw(mask).text((x, y), text, fill=255, font=font(size))
    on = np.array(mask) > 127
    image[on] = value
    ys, xs = np.nonzero(on)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def body(rows: int, columns: int, seed: int = 0) -> np.ndarray:
    """A CT-like slice in 8 bits: air, a noisy body, bright bone, a table."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:rows, :columns]
    cy, cx = rows / 2, columns / 2
    image = np.full((rows, columns), 10.0)
    inside = ((xx - cx) / (0.4 * columns)) ** 2 + ((yy - cy) / (0.3 * rows)) ** 2 < 1
    image[inside] = 100
    image[((xx - cx) / (0.1 * columns)) ** 2 + ((yy - cy) / (0.08 * rows)) ** 2 < 1] = 230
    image[int(0.85 * rows) : int(0.88 * rows), int(0.1 * columns) : int(0.9 * columns)] = 180
    image += rng.normal(0, 6, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def speckle(rows: int, columns: int, seed: int = 0) -> np.ndarray:
    """Ultrasound-like speckle: Rayleigh noise, slightly blurred."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.rayleigh(45, (rows, columns)).astype(np.float32)
    return cv2.GaussianBlur(noise, (3, 3), 0).clip(0, 255).astype(np.uint8)

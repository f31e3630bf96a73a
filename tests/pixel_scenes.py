"""Synthetic pixels for the pixel corpus: what medical images look like without text
(radiographs, CT and MR slices, ultrasound sectors and cines, screen captures, a face photo)
and burned-in text drawn into them, each line's box kept.

Everything is numpy and Pillow, deterministic by the generator it is given, and built at the
frame's own size without copies of the whole frame beyond a few float32 planes (a 4000 x 3328
frame is 53 MB a plane). Grey scenes are display brightness in [0, 1] (1 white) or Hounsfield
units; colour scenes are RGB uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype")
# Debian's fonts-dejavu-core and fonts-liberation (scripts/test.sh installs them).
FONTS = (
    "dejavu/DejaVuSans.ttf",
    "liberation/LiberationSans-Regular.ttf",
    "dejavu/DejaVuSansMono.ttf",
    "liberation/LiberationSerif-Regular.ttf",
    "dejavu/DejaVuSans-Bold.ttf",
    "liberation/LiberationMono-Regular.ttf",
    "dejavu/DejaVuSerif.ttf",
    "liberation/LiberationSansNarrow-Regular.ttf",
    "liberation/LiberationSans-Bold.ttf",
    "dejavu/DejaVuSansMono-Bold.ttf",
)
IDENTIFYING = (
    "ZYXWVUTSON^QUINTESSA",
    "DOE, JANE MARGARET",
    "MRN 7734129",
    "DOB 12/04/1961",
    "ST ELSEWHERE INFIRMARY",
    "ACC 55X12-0048",
    "12-MAR-2024 14:22:05",
    "ID: 0048213377",
    "DR N FEELGOOD",
    "HACKENBUSH Q 61Y F",
)
NOT_IDENTIFYING = ("L", "R", "AP ERECT", "PORTABLE", "kVp 80 mAs 3.2", "CHEST PA", "RMLO", "SUPINE")


@cache
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONT_DIR / name
    assert path.exists(), (
        f"{path} is missing: scripts/test.sh installs fonts-dejavu-core and fonts-liberation"
    )
    return ImageFont.truetype(str(path), size)


@dataclass(frozen=True)
class Line:
    """One line of text to burn in: where its top-left ink pixel goes, and what it says."""

    text: str
    x: int
    y: int
    size: int  # font size in pixels
    font: str = FONTS[0]

    @property
    def identifying(self) -> bool:
        return self.text not in NOT_IDENTIFYING


def ink(line: Line) -> np.ndarray:
    """The line's glyph pixels, cropped to their ink: a bool array (rows, columns)."""
    f = font(line.font, line.size)
    x0, y0, x1, y1 = f.getbbox(line.text)
    mask = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2))
    ImageDraw.Draw(mask).text((1 - x0, 1 - y0), line.text, fill=255, font=f)
    on = np.asarray(mask) > 127  # crisp, as modalities burn text
    ys, xs = np.nonzero(on)
    return on[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def extent(line: Line) -> tuple[int, int]:
    """The line's ink (width, height)."""
    rows, columns = ink(line).shape
    return columns, rows


def burn(frame: np.ndarray, line: Line, value: object) -> tuple[int, int, int, int]:
    """Set the line's ink pixels of `frame` (2-D, or 3-D with samples last) to `value`, in
    place; returns its box (x0, y0, x1, y1), clipped to the frame."""
    on = ink(line)
    rows, columns = frame.shape[:2]
    y1, x1 = min(rows, line.y + on.shape[0]), min(columns, line.x + on.shape[1])
    on = on[: y1 - line.y, : x1 - line.x]
    frame[line.y : y1, line.x : x1][on] = value
    ys, xs = np.nonzero(on)
    return (
        line.x + int(xs.min()),
        line.y + int(ys.min()),
        line.x + int(xs.max()) + 1,
        line.y + int(ys.max()) + 1,
    )


def block(
    texts: list[str],
    sizes: list[int],
    font_name: str,
    where: str,
    rows: int,
    columns: int,
    margin: int,
) -> list[Line]:
    """Lines stacked as a modality stacks them (each its own size), placed at a corner, an
    edge or mid-image (`where`: tl tr bl br t b l r mid), `margin` pixels in from the border."""
    lines = [Line(t, 0, 0, size, font_name) for t, size in zip(texts, sizes, strict=True)]
    extents = [extent(line) for line in lines]
    pitches = [h + max(2, line.size // 4) for line, (_, h) in zip(lines, extents, strict=True)]
    width, height = max(w for w, _ in extents), sum(pitches)
    x = {"l": margin, "r": columns - margin - width}.get(where[-1], (columns - width) // 2)
    y = {"t": margin, "b": rows - margin - height}.get(where[0], (rows - height) // 2)
    if where == "mid":
        x, y = (columns - width) // 3, (rows - height) // 2
    right = where[-1] == "r"
    tops = np.cumsum([0, *pitches[:-1]])
    return [
        Line(
            line.text,
            max(0, x + (width - w if right else 0)),
            max(0, y + int(top)),
            line.size,
            font_name,
        )
        for line, (w, _), top in zip(lines, extents, tops, strict=True)
    ]


def blur(a: np.ndarray, radius: int, passes: int = 3) -> np.ndarray:
    """A box blur repeated (close to a Gaussian), along both axes, in float32."""
    out = a.astype(np.float32)
    for axis in (0, 1):
        for _ in range(passes):
            pad = [(0, 0)] * out.ndim
            pad[axis] = (radius + 1, radius)
            c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float32)
            hi = np.take(c, range(2 * radius + 1, c.shape[axis]), axis=axis)
            lo = np.take(c, range(0, c.shape[axis] - 2 * radius - 1), axis=axis)
            out = (hi - lo) / (2 * radius + 1)
    return out


def _upsampled(small: Image.Image, rows: int, columns: int) -> np.ndarray:
    return np.array(small.resize((columns, rows), Image.BILINEAR), dtype=np.float32)


def radiograph(rng: np.random.Generator, rows: int, columns: int) -> tuple[np.ndarray, tuple]:
    """A projection radiograph in display brightness (float32, 0 black .. 1 white): a body
    with lungs, spine and ribs (smooth, soft edges), a sharp-edged metal marker, quantum noise,
    and a light collimation border. Returns the frame and the collimated field (x0, y0, x1,
    y1) inside the border."""
    scale = 8
    h, w = rows // scale, columns // scale
    small = Image.new("F", (w, h), 0.08)  # direct exposure: dark
    d = ImageDraw.Draw(small)
    cx, cy = w * rng.uniform(0.45, 0.55), h * rng.uniform(0.48, 0.55)
    bw, bh = w * rng.uniform(0.33, 0.42), h * rng.uniform(0.40, 0.47)
    d.ellipse((cx - bw, cy - bh, cx + bw, cy + bh), fill=0.5)
    for side in (-1, 1):  # lungs
        lx = cx + side * bw * 0.45
        d.ellipse((lx - bw * 0.33, cy - bh * 0.75, lx + bw * 0.33, cy + bh * 0.35), fill=0.22)
    for k in range(9):  # ribs
        y = cy - bh * 0.7 + k * bh * 0.12
        for side in (-1, 1):
            box = (
                cx + side * bw * 0.05 - bw * 0.7,
                y,
                cx + side * bw * 0.05 + bw * 0.7,
                y + bh * 0.4,
            )
            d.arc(box, 200 if side < 0 else 270, 270 if side < 0 else 340, fill=0.62, width=2)
    d.rectangle((cx - bw * 0.07, cy - bh, cx + bw * 0.07, cy + bh), fill=0.72)  # spine
    frame = blur(_upsampled(small, rows, columns), max(2, scale // 2), passes=2)
    texture = rng.standard_normal((h // 2 + 1, w // 2 + 1)).astype(np.float32)
    frame += 0.04 * _upsampled(Image.fromarray(texture, "F"), rows, columns)
    # A lead marker: sharp edges at full resolution.
    mx, my = int(columns * rng.uniform(0.6, 0.75)), int(rows * rng.uniform(0.7, 0.8))
    size = max(8, min(rows, columns) // 60)
    frame[my : my + size, mx : mx + 3 * size] = 0.97
    frame += rng.standard_normal((rows, columns), dtype=np.float32) * np.float32(0.012)
    inset = rng.uniform(0.03, 0.07, size=4)
    field = (
        int(columns * inset[0]),
        int(rows * inset[1]),
        int(columns * (1 - inset[2])),
        int(rows * (1 - inset[3])),
    )
    outside = np.ones((rows, columns), bool)
    outside[field[1] : field[3], field[0] : field[2]] = False
    frame[outside] = np.float32(0.9) + frame[outside] * np.float32(0.05)  # unexposed: light
    np.clip(frame, 0, 1, out=frame)
    return frame, field


def ct_slice(rng: np.random.Generator, z: float, size: int = 512) -> np.ndarray:
    """An axial body CT slice in HU (int16) at position z in [0, 1] (chest to pelvis): air,
    a curved table, body, fat, lungs while z is in the chest, liver, spine, noise. Outside the
    circular field of view it is -2000 (a padding value, as scanners write it)."""
    s = size / 512
    img = Image.new("F", (size, size), -1000.0)
    d = ImageDraw.Draw(img)
    d.rectangle((40 * s, 438 * s, 472 * s, 452 * s), fill=150.0)  # table
    d.rectangle((60 * s, 452 * s, 452 * s, 470 * s), fill=-400.0)
    bw, bh = (185 + 20 * np.sin(3 * z)) * s, (135 + 10 * np.cos(2 * z)) * s
    cx, cy = 256 * s, 268 * s
    d.ellipse((cx - bw, cy - bh, cx + bw, cy + bh), fill=-90.0)  # fat
    d.ellipse((cx - bw + 14 * s, cy - bh + 12 * s, cx + bw - 14 * s, cy + bh - 12 * s), fill=40.0)
    if z < 0.45:  # lungs, shrinking toward the diaphragm
        r = (1 - z / 0.45) ** 0.5
        for side in (-1, 1):
            lx = cx + side * 80 * s
            d.ellipse(
                (lx - 60 * r * s, cy - 95 * r * s, lx + 60 * r * s, cy + 70 * r * s), fill=-840.0
            )
        d.ellipse((cx - 40 * s, cy - 40 * s, cx + 40 * s, cy + 30 * s), fill=45.0)  # heart
    else:
        d.ellipse((cx - 150 * s, cy - 90 * s, cx + 10 * s, cy + 60 * s), fill=62.0)  # liver
        d.ellipse((cx + 40 * s, cy - 30 * s, cx + 120 * s, cy + 40 * s), fill=-20.0)  # bowel
    d.ellipse((cx - 22 * s, cy + 62 * s, cx + 22 * s, cy + 106 * s), fill=1100.0)  # vertebra
    d.ellipse((cx - 15 * s, cy + 69 * s, cx + 15 * s, cy + 99 * s), fill=300.0)
    d.ellipse((cx - 8 * s, cy + 40 * s, cx + 8 * s, cy + 58 * s), fill=180.0)  # aorta, contrast
    hu = blur(np.array(img, np.float32), max(1, round(s)), passes=1)
    hu += rng.standard_normal((size, size), dtype=np.float32) * np.float32(12)
    yy, xx = np.ogrid[:size, :size]
    hu[(yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 > (size / 2) ** 2] = -2000
    return np.clip(hu, -2000, 3000).astype(np.int16)


def mr_slice(rng: np.random.Generator, z: float, size: int = 512) -> np.ndarray:
    """An axial head MR slice (uint16, 12-bit range): scalp, skull (dark), grey and white matter
    with folded texture, ventricles, Rician-like background noise."""
    s = size / 512
    img = Image.new("F", (size, size), 0.0)
    d = ImageDraw.Draw(img)
    rx, ry = (170 - 30 * abs(z - 0.5)) * s, (210 - 40 * abs(z - 0.5)) * s
    c = size / 2
    d.ellipse((c - rx, c - ry, c + rx, c + ry), fill=900.0)  # scalp
    d.ellipse((c - rx + 8 * s, c - ry + 8 * s, c + rx - 8 * s, c + ry - 8 * s), fill=120.0)
    d.ellipse((c - rx + 16 * s, c - ry + 16 * s, c + rx - 16 * s, c + ry - 16 * s), fill=1500.0)
    d.ellipse((c - rx + 40 * s, c - ry + 40 * s, c + rx - 40 * s, c + ry - 40 * s), fill=1100.0)
    vw = (25 + 15 * np.sin(6 * z)) * s
    for side in (-1, 1):
        d.ellipse(
            (c + side * 18 * s - vw / 2, c - 50 * s, c + side * 18 * s + vw / 2, c + 40 * s),
            fill=2600.0,
        )
    brain = np.array(img, np.float32)
    folds = blur(rng.standard_normal((size, size)).astype(np.float32), max(2, round(4 * s)))
    brain += (brain > 1000) * folds * np.float32(900)
    brain = blur(brain, 1, passes=1)
    noise = rng.standard_normal((2, size, size), dtype=np.float32) * np.float32(25)
    mag = np.hypot(brain + noise[0], noise[1])
    return np.clip(mag, 0, 4095).astype(np.uint16)


def sector_mask(
    rows: int, columns: int, apex: tuple[float, float], r0: float, r1: float, half_angle: float
) -> np.ndarray:
    yy, xx = np.mgrid[:rows, :columns].astype(np.float32)
    dy, dx = yy - apex[1], xx - apex[0]
    r = np.hypot(dx, dy)
    return (r >= r0) & (r <= r1) & (np.abs(np.arctan2(dx, dy)) <= half_angle)


def speckle(
    rng: np.random.Generator,
    rows: int,
    columns: int,
    t: float = 0.0,
    base: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An ultrasound sector's echo brightness (float32 0..1): tissue bands and a chamber that
    moves with t, speckle (blurred Rayleigh noise, correlated with `base` when given: a cine's
    speckle decorrelates slowly), attenuation with depth; and the noise, the next `base`."""
    apex = (columns / 2, rows * 0.08)
    r1 = rows * 0.88
    yy, xx = np.mgrid[:rows, :columns].astype(np.float32)
    r = np.hypot(xx - apex[0], yy - apex[1])
    tissue = 0.55 + 0.25 * np.sin(r / (rows * 0.05) + 0.3 * np.sin(t))
    cx, cy = columns / 2 + 20 * np.sin(t), rows * 0.5
    ax, ay = columns * (0.12 + 0.02 * np.sin(t)), rows * (0.18 + 0.03 * np.sin(t))
    chamber = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 < 1
    tissue[chamber] = 0.06
    fresh = np.abs(rng.standard_normal((2, rows, columns), dtype=np.float32)).sum(0)
    noise = fresh if base is None else np.float32(0.75) * base + np.float32(0.25) * fresh
    echo = tissue * blur(noise, 1, passes=1) * np.exp(-r / (rows * 1.6)).astype(np.float32)
    inside = sector_mask(rows, columns, apex, rows * 0.04, r1, np.deg2rad(38))
    return np.clip(echo * inside * np.float32(0.7), 0, 1).astype(np.float32), noise


def ultrasound_ui(rows: int, columns: int) -> np.ndarray:
    """A scanner's screen furniture without any text: a banner with a logo shape and buttons,
    a grey bar, depth ticks, a focus marker and an ECG trace (RGB uint8, black elsewhere)."""
    ui = Image.new("RGB", (columns, rows))
    d = ImageDraw.Draw(ui)
    band = max(16, rows // 12)
    d.rectangle((0, 0, columns - 1, band), fill=(28, 44, 70))
    d.ellipse((6, 3, 6 + band - 6, band - 3), fill=(90, 130, 190))
    for k in range(4):
        x = columns // 3 + k * (band + 12)
        d.rounded_rectangle((x, 4, x + band, band - 4), radius=3, outline=(150, 160, 180))
    for i in range(rows // 3):  # grey bar
        v = 255 - int(255 * i / (rows // 3))
        d.line((columns - 18, band + 10 + i, columns - 8, band + 10 + i), fill=(v, v, v))
    for k in range(1, 12):  # depth ticks
        y = band + k * (rows - band) // 12
        d.line((columns - 40, y, columns - 32 + (k % 2) * 4, y), fill=(200, 200, 200))
    d.polygon(
        [(columns - 46, rows // 2), (columns - 40, rows // 2 - 4), (columns - 40, rows // 2 + 4)],
        fill=(255, 220, 0),
    )
    ecg = [
        (x, rows - 14 - (8 if x % 97 in range(40, 44) else 0) - int(2 * np.sin(x / 9)))
        for x in range(20, columns - 60, 2)
    ]
    d.line(ecg, fill=(0, 220, 90), width=1)
    return np.array(ui)


def ultrasound(
    rng: np.random.Generator,
    rows: int,
    columns: int,
    t: float = 0.0,
    base: np.ndarray | None = None,
    ui: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One ultrasound frame (RGB uint8): the moving sector over the static screen furniture,
    and the speckle state for the next frame."""
    echo, noise = speckle(rng, rows, columns, t, base)
    grey = (echo * 255).astype(np.uint8)
    frame = np.repeat(grey[..., np.newaxis], 3, axis=2)
    if ui is not None:
        drawn = ui.any(axis=2)
        frame[drawn] = ui[drawn]
    return frame, noise


def rendering(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """A secondary capture of a 3D rendering: lit ellipsoids on black (RGB uint8)."""
    yy, xx = np.mgrid[:rows, :columns].astype(np.float32)
    out = np.zeros((rows, columns, 3), np.float32)
    for _ in range(5):
        cx, cy = rng.uniform(0.2, 0.8) * columns, rng.uniform(0.2, 0.8) * rows
        a, b = rng.uniform(0.08, 0.2) * columns, rng.uniform(0.08, 0.2) * rows
        u, v = (xx - cx) / a, (yy - cy) / b
        inside = u * u + v * v < 1
        shade = np.sqrt(np.clip(1 - u * u - v * v, 0, 1)) * (0.6 + 0.4 * np.clip(-u - v, -1, 1))
        colour = rng.uniform(0.4, 1.0, size=3).astype(np.float32)
        out[inside] = np.maximum(out[inside], shade[inside, np.newaxis] * colour)
    out += rng.standard_normal((rows, columns, 1), dtype=np.float32) * np.float32(0.01)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def face(rng: np.random.Generator, rows: int = 480, columns: int = 640) -> np.ndarray:
    """A photograph of a face (RGB uint8): a wall, shoulders, hair, skin with eyes, brows,
    nose and mouth, softened and with sensor noise."""
    img = Image.new("RGB", (columns, rows), (170, 180, 190))
    d = ImageDraw.Draw(img)
    cx, cy = columns / 2 + rng.uniform(-20, 20), rows * 0.45
    fw, fh = rows * 0.2, rows * 0.27
    d.ellipse((cx - 3 * fw, cy + fh * 0.9, cx + 3 * fw, cy + fh * 3.5), fill=(40, 70, 120))
    d.rectangle((cx - fw * 0.4, cy + fh * 0.6, cx + fw * 0.4, cy + fh * 1.2), fill=(214, 170, 140))
    d.ellipse((cx - fw * 1.1, cy - fh * 1.15, cx + fw * 1.1, cy + fh * 0.4), fill=(60, 40, 25))
    d.ellipse((cx - fw * 1.1, cy - fh * 0.25, cx - fw * 0.9, cy + fh * 0.2), fill=(205, 160, 130))
    d.ellipse((cx + fw * 0.9, cy - fh * 0.25, cx + fw * 1.1, cy + fh * 0.2), fill=(205, 160, 130))
    d.ellipse((cx - fw, cy - fh * 0.9, cx + fw, cy + fh), fill=(224, 180, 150))
    for side in (-1, 1):
        ex = cx + side * fw * 0.4
        d.ellipse(
            (ex - fw * 0.2, cy - fh * 0.2, ex + fw * 0.2, cy - fh * 0.02), fill=(245, 245, 245)
        )
        d.ellipse(
            (ex - fw * 0.08, cy - fh * 0.18, ex + fw * 0.08, cy - fh * 0.04), fill=(70, 50, 30)
        )
        d.line(
            (ex - fw * 0.25, cy - fh * 0.35, ex + fw * 0.25, cy - fh * 0.3),
            fill=(60, 40, 25),
            width=5,
        )
    d.line((cx, cy - fh * 0.05, cx - fw * 0.1, cy + fh * 0.3), fill=(180, 130, 110), width=4)
    d.arc(
        (cx - fw * 0.4, cy + fh * 0.25, cx + fw * 0.4, cy + fh * 0.6),
        20,
        160,
        fill=(170, 60, 60),
        width=6,
    )
    out = blur(np.array(img, np.float32), 2, passes=2)
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(3)
    return np.clip(out, 0, 255).astype(np.uint8)

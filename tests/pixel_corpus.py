"""The pixel corpus: images with and without burned-in text, each a `Case` that keeps the
pixels it would show without its text, its text boxes (identifying or not) and the outcome
`sendit run` should reach with its defaults; and the measures that read an output against it.

Families (`family(name, seed, quick)`; `FAMILY_NAMES`):
- burned: Pillow draws names, IDs, dates and institutions into pydicom's bundled images (up
  to 640 px), with truthful and lying headers; text-free originals and derived images;
  scanned documents. `corpus(seed)` is this family, in memory.
- large, layouts, faces, header, timing, vendor: tests/pixel_families.py says what each
  holds. They are made once per seed and kept on disk (SENDIT_PIXEL_CORPUS or
  ~/.cache/sendit/pixel-corpus, keyed by a hash of the code that makes them); their cases
  load their file when first used and `release()` it.

Measures (an output is the de-identified dataset, or None when the image was withheld):
`surviving` (text boxes still legible), `changed_outside` (the share of the picture outside
the text that changed), `corrupted` (an output that does not show the input's picture).

    python tests/pixel_corpus.py [FAMILY...] [--seed N] [--quick] [--check]  # make, say where
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pydicom
import pydicom.uid as uids
from dicomdata import bundled, dciodvfy_errors
from PIL import Image, ImageDraw, ImageFont
from pixel_cases import (
    CLEANED,
    DOCUMENT,
    FACE,
    HEADER_SAYS_TEXT,
    UNCHANGED,
    WITHHELD,
    Box,
    Case,
    Expected,
    displayed,
)
from pixel_families import FAMILIES

__all__ = [
    "CLEANED",
    "DOCUMENT",
    "FACE",
    "FAMILY_NAMES",
    "HEADER_SAYS_TEXT",
    "UNCHANGED",
    "WITHHELD",
    "Box",
    "Case",
    "Expected",
    "Reading",
    "changed_outside",
    "corpus",
    "corrupted",
    "displayed",
    "families",
    "family",
    "new_dciodvfy_errors",
    "read",
    "surviving",
]

FAMILY_NAMES = ("burned", *FAMILIES)
CACHE = Path(os.environ.get("SENDIT_PIXEL_CORPUS") or Path.home() / ".cache/sendit/pixel-corpus")
MARGIN = 16  # pixels around a text box that cleaning may touch without harming the picture

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


# --- the families --------------------------------------------------------------------------


def family(name: str, seed: int = 0, quick: bool = False) -> list[Case]:
    """One family's cases (`quick`: the few a fast run needs), made on first use."""
    if name == "burned":
        return corpus(12 + seed)
    folder = CACHE / _code_version() / f"{name}-{seed}{'-quick' if quick else ''}"
    listing = folder / "cases.json"
    if not listing.exists():
        _make(folder, FAMILIES[name](seed, quick))
    return [_listed(folder, item) for item in json.loads(listing.read_text())]


def families(names: Iterable[str] = FAMILY_NAMES, seed: int = 0, quick: bool = False) -> list[Case]:
    return [case for name in names for case in family(name, seed, quick)]


def _make(folder: Path, cases: Iterable[Case]) -> None:
    """Write each case as it is made (one in memory at a time), then move the whole family
    into place: a family on disk is always complete."""
    work = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    listing = []
    for i, case in enumerate(cases):
        path = work / f"{i:04d}.dcm"
        case.ds.save_as(path, enforce_file_format=True)
        if case.boxes:  # a text-free case shows its own clean pixels
            np.save(path.with_suffix(".npy"), np.ascontiguousarray(case.clean))
        listing.append(
            {
                "name": case.name,
                "modality": case.modality,
                "kind": case.kind,
                "expected": [case.expected.outcome, case.expected.reason],
                "boxes": [list(b) for b in case.boxes],
                "family": case.family,
                "source": case.source,
                "file": path.name,
            }
        )
    (work / "cases.json").write_text(json.dumps(listing, indent=1))
    try:
        work.rename(folder)
    except OSError:  # made meanwhile by another process: theirs is as good
        shutil.rmtree(work)
    _prune(folder.parent.parent)


def _prune(cache: Path, keep: int = 3) -> None:
    """Corpora made by older code go, but for the few most recent (other checkouts' code)."""
    versions = sorted(cache.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in versions[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


def _listed(folder: Path, item: dict) -> Case:
    return Case(
        item["name"],
        item["modality"],
        item["kind"],
        Expected(*item["expected"]),
        [Box(*b) for b in item["boxes"]],
        item["family"],
        item["source"],
        folder / item["file"],
    )


def _code_version() -> str:
    """A family on disk is remade when the code or the libraries that make it change."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for module in ("pixel_cases", "pixel_families", "pixel_layouts", "pixel_scenes"):
        digest.update((here / f"{module}.py").read_bytes())
    for package in ("pydicom", "numpy", "pillow", "pylibjpeg-openjpeg", "pyjpegls"):
        digest.update(version(package).encode())
    return digest.hexdigest()[:12]


# --- burned: text drawn into pydicom's bundled images ---------------------------------------


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


def draw(stack: np.ndarray, rng: random.Random, lines: int, contrast: float) -> list[Box]:
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
            boxes.append(Box(i, int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
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
    """The burned family, in memory."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for name, kind, modality in sources:
        for variant in ("free", "bright", "faint"):
            ds, syntax = _native(name)
            stack = _frames(ds)
            clean = stack.copy()
            boxes: list[Box] = []
            if variant != "free":
                contrast = 1.0 if variant == "bright" else 0.55
                boxes = draw(stack, rng, lines=rng.choice([1, 2, 3]), contrast=contrast)
            _store(ds, stack, syntax)
            ds.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID or syntax
            ds.SOPInstanceUID = uids.generate_uid(entropy_srcs=["burned", str(seed), name, variant])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            if kind == "original":
                ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.BurnedInAnnotation = rng.choice(["NO", "UNKNOWN", None])  # lying or absent
            if ds.BurnedInAnnotation is None:
                del ds.BurnedInAnnotation
            label = "text_free" if variant == "free" and kind != "has text" else "text"
            expected = Expected(UNCHANGED if label == "text_free" else CLEANED)
            cases.append(
                Case(
                    f"{name}:{variant}:{seed}",
                    modality,
                    label,
                    expected,
                    boxes,
                    source=name,
                    _ds=ds,
                    _clean=clean,
                )
            )
    for i in range(3):
        ds = document(rng, dark=i == 2)
        ds.SOPInstanceUID = uids.generate_uid(
            entropy_srcs=["burned", str(seed), "document", str(i)]
        )
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        cases.append(
            Case(
                f"document:{i}:{seed}",
                "DOC",
                "document",
                Expected(WITHHELD, DOCUMENT),
                source="image_dfl.dcm",
                _ds=ds,
                _clean=_frames(ds),
            )
        )
    return cases


# --- measures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """An output read against its case (one decode of each)."""

    legible: list[Box]  # the boxes whose text the output still shows
    changed_outside: float  # the share of the picture outside the text shown differently
    corrupted: str  # why the output does not show the input's picture ("" when it does)


def read(case: Case, output: pydicom.Dataset) -> Reading:
    """Text still legible: more than a few of a box's text pixels keep the value the text gave
    them and still stand out from the pixels around them in the box (a box blanked to one
    value, the text's own included, shows nothing). Changed outside: the share of the pixels
    outside the boxes (each grown by MARGIN) that differ from the clean picture (colour by
    more than 2 levels: conversions round). Corrupted: the output does not decode, has
    another shape or colour layout (then every box counts as legible and all as changed), or
    over a quarter of the picture outside the text changed to other values than the one most
    changed pixels got (scrambled, not blanked)."""
    try:
        out = displayed(output)
    except Exception as exc:
        return Reading(list(case.boxes), 1.0, f"does not decode ({type(exc).__name__})")
    if out.shape != case.clean.shape:
        why = f"shows {out.shape} where the input shows {case.clean.shape}"
        return Reading(list(case.boxes), 1.0, why)
    drawn = displayed(case.ds) if case.boxes else out
    legible = [box for box in case.boxes if _shows(box, drawn, case.clean, out)]
    outside = np.ones(out.shape[:3], bool)
    for i, x0, y0, x1, y1, _ in case.boxes:
        outside[i, max(0, y0 - MARGIN) : y1 + MARGIN, max(0, x0 - MARGIN) : x1 + MARGIN] = False
    tolerance = 2 if out.ndim == 4 else 0
    changed = np.stack(
        [  # frame by frame: a cine's differences stay small
            (_distance(_signal(o), _signal(c)) > tolerance) & keep
            for o, c, keep in zip(out, case.clean, outside, strict=True)
        ]
    )
    share = float(changed.sum() / max(1, outside.sum()))
    values = out[changed].reshape(int(changed.sum()), out[0, 0, 0].size).astype(np.int64)
    packed = (values << (np.arange(values.shape[1]) * 21)).sum(axis=1)  # one int per colour
    counts = np.unique(packed, return_counts=True)[1] if packed.size else [0]
    scrambled = int(packed.size - max(counts))
    why = ""
    if scrambled > 0.25 * outside.sum():
        why = (
            f"{scrambled / outside.sum():.0%} of the picture outside the text changed (not blanked)"
        )
    return Reading(legible, share, why)


def surviving(case: Case, output: pydicom.Dataset | None) -> list[Box]:
    """The boxes whose text an output still shows (`read`); a withheld image shows none."""
    return read(case, output).legible if output is not None and case.boxes else []


def changed_outside(case: Case, output: pydicom.Dataset) -> float:
    return read(case, output).changed_outside


def corrupted(case: Case, output: pydicom.Dataset) -> str:
    return read(case, output).corrupted


def _shows(box: Box, drawn: np.ndarray, clean: np.ndarray, out: np.ndarray) -> bool:
    i, x0, y0, x1, y1 = box[:5]
    d, c, o = (_signal(v[i, y0:y1, x0:x1]) for v in (drawn, clean, out))
    contrast = _distance(d, c)
    text = contrast > 0
    radius = max(2, (y1 - y0) // 2)
    still = _distance(o, d) <= 0.25 * contrast
    stands = _distance(o, _ground(o, ~text, radius)) >= 0.5 * _distance(
        d, _ground(c, ~text, radius)
    )
    return int((text & still & stands).sum()) > max(3, 0.05 * text.sum())


def _ground(values: np.ndarray, around: np.ndarray, radius: int) -> np.ndarray:
    """Per pixel, what surrounds it: the mean of `values` over the `around` pixels within
    `radius` (over all of them where none is that near; the pixel itself where none is)."""
    if not around.any():
        return values
    v = values if values.ndim == 3 else values[..., np.newaxis]
    weights = around[..., np.newaxis].astype(np.float64)
    sums, counts = _window_sum(v * weights, radius), _window_sum(weights, radius)
    overall = (v * weights).sum(axis=(0, 1)) / weights.sum()
    ground = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
    return ground if values.ndim == 3 else ground[..., 0]


def _window_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sums over (2r + 1)^2 windows (zero beyond the edges), by summed-area table."""
    c = np.pad(a, ((r + 1, r), (r + 1, r), (0, 0))).cumsum(0).cumsum(1)
    n = 2 * r + 1
    return c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n]


def _signal(a: np.ndarray) -> np.ndarray:
    """Values to subtract: 32-bit for up to 16-bit samples (a 4000 x 3328 frame stays small)."""
    small = a.dtype.kind in "ui" and a.dtype.itemsize <= 2
    return np.asarray(a, dtype=np.int32 if small else np.float64)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel: the largest difference over the samples (colour) or the difference (grey)."""
    d = np.abs(a - b)
    return d.max(axis=-1) if d.ndim == 3 else d


def new_dciodvfy_errors(case: Case) -> set[str]:
    """What dciodvfy finds in the case's file beyond what it finds in the bundled file the case
    was made from (made from nothing: beyond no error at all)."""
    if case.path is None:
        raise ValueError(f"{case.name} is in memory only")
    baseline = dciodvfy_errors(bundled(case.source)) if case.source else set()
    return dciodvfy_errors(case.path) - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(FAMILY_NAMES[1:]), metavar="FAMILY")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", action="store_true", help="dciodvfy each file (slow)")
    args = parser.parse_args()
    for name in args.names:
        cases = family(name, args.seed, args.quick)
        where = cases[0].path.parent if cases and cases[0].path else "memory"
        print(f"{name}: {len(cases)} cases in {where}")
        checked = [c for c in cases if c.path] if args.check else []  # burned: in memory
        for case in checked:
            for error in sorted(new_dciodvfy_errors(case)):
                print(f"  {case.name}: {error}")


if __name__ == "__main__":
    main()

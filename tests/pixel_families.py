"""The pixel corpus's generated families (tests/pixel_corpus.py caches and serves them).

- large: CR, DX and MG frames of 3000 x 2400 and 4000 x 3328, MONOCHROME1 and 2, 12 bits in
  16 and 16 bits, radiograph-like backgrounds, text 8 to 40 px in ten fonts, bright, faint and
  dark on a light label, at corners, edges and mid-image;
- layouts: each way of storing pixels the pixel issue names, with text and without;
- faces: photographs of a face (VL Photographic, XC), withheld;
- header: BurnedInAnnotation YES over real text (cleaned), and over speckle alone (withheld);
- timing: text-free series at real sizes (CT and MR 512, CR 3000 x 2400, US cines, SC);
- vendor: pydicom's bundled captures with real burned-in text, hand-labelled, and bundled
  text-free images from real devices.

Each family is a generator of in-memory cases, deterministic by its seed; `quick` makes the
few cases a fast run needs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import pydicom
import pydicom.uid as uids
from dicomdata import bundled
from pixel_cases import (
    CLEANED,
    FACE,
    HEADER_SAYS_TEXT,
    UNCHANGED,
    WITHHELD,
    Box,
    Case,
    Expected,
    displayed,
)
from pixel_layouts import Layout, clear_pixels, encode
from pixel_scenes import (
    FONTS,
    IDENTIFYING,
    NOT_IDENTIFYING,
    Line,
    block,
    burn,
    ct_slice,
    extent,
    face,
    mr_slice,
    radiograph,
    rendering,
    ultrasound,
    ultrasound_ui,
)
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset

SOP = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # For Presentation
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",  # For Presentation
    "VL": "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
}


@dataclass
class Maker:
    """What every case of one family shares: its name, its seed, its random streams."""

    family: str
    seed: int

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng([self.seed, *self.family.encode()])

    def uid(self, *parts: object) -> str:
        return uids.generate_uid(entropy_srcs=[self.family, str(self.seed), *map(str, parts)])

    def header(self, source: str | None, name: str, modality: str, series: str = "") -> Dataset:
        """A bundled file's header (no pixels, no device that deid's rules know, no private
        data), or a new one for an IOD pydicom bundles none of; new UIDs either way."""
        if source is None:
            ds = _new_header(SOP[modality], modality)
        else:
            ds = pydicom.dcmread(bundled(source))
            ds.remove_private_tags()
            for keyword in (
                "DataSetTrailingPadding",
                "SequenceOfUltrasoundRegions",
                "ManufacturerModelName",
                "DeviceSerialNumber",
                "SoftwareVersions",
                "DerivationDescription",
                "InstanceCreatorUID",
                "TransducerData",
            ):
                if keyword in ds:
                    delattr(ds, keyword)
            ds.Manufacturer = "Sendit Corpus"
            clear_pixels(ds)
        ds.StudyInstanceUID = self.uid("study", modality)
        ds.SeriesInstanceUID = self.uid("series", series or name)
        ds.SOPInstanceUID = self.uid("instance", name)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "ImageType" in ds:  # an original, whatever the bundled file was
            ds.ImageType = ["ORIGINAL", "PRIMARY", *list(ds.ImageType)[2:]]
        elif source is None:
            ds.ImageType = ["ORIGINAL", "PRIMARY"]
        return ds

    def claim(self, ds: Dataset) -> None:
        """BurnedInAnnotation as headers say it: NO (a lie when there is text) or absent."""
        if self.rng.random() < 0.5:
            ds.BurnedInAnnotation = "NO"
        elif "BurnedInAnnotation" in ds:
            del ds.BurnedInAnnotation

    def case(
        self,
        name: str,
        modality: str,
        ds: Dataset,
        clean: np.ndarray,
        boxes: list[Box],
        expected: Expected,
        kind: str = "",
        source: str | None = None,
    ) -> Case:
        kind = kind or ("text" if boxes else "text_free")
        return Case(
            f"{self.family}:{name}:{self.seed}",
            modality,
            kind,
            expected,
            boxes,
            self.family,
            source,
            _ds=ds,
            _clean=clean,
        )

    def texts(self, count: int, identifying: float = 0.8) -> list[str]:
        """Lines of text, each identifying with the given chance, no two alike."""
        ident, other = (list(self.rng.permutation(p)) for p in (IDENTIFYING, NOT_IDENTIFYING))
        return [
            str((ident if self.rng.random() < identifying else other).pop()) for _ in range(count)
        ]


def _new_header(sop_class: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240312"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "142205"
    ds.AccessionNumber = "ACC55X12"
    ds.Modality = modality
    ds.Manufacturer = "Sendit Corpus"
    ds.InstitutionName = "St Elsewhere Infirmary"
    ds.ReferringPhysicianName = "Feelgood^Nicholas"
    ds.PatientName = "Zyxwvutson^Quintessa"
    ds.PatientID = "7734129"
    ds.PatientBirthDate = "19610412"
    ds.PatientSex = "F"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    return ds


def _text_lines(
    m: Maker, frame_shape: tuple[int, int], blocks, margin: int, identifying: float = 0.9
) -> list[list[Line]]:
    """Each block's lines (block: where, line sizes, contrast), in a font of the list; a
    single large line is as often a marker (L, R, a view) as a name."""
    rows, columns = frame_shape
    out = []
    for where, sizes, _ in blocks:
        font = FONTS[int(m.rng.integers(len(FONTS)))]
        chance = 0.5 if len(sizes) == 1 and sizes[0] >= 32 else identifying
        out.append(
            block(m.texts(len(sizes), chance), list(sizes), font, where, rows, columns, margin)
        )
    return out


# --- large: real radiograph sizes --------------------------------------------------------

# modality, rows, columns, photometric, bits stored, text blocks (where, line sizes, contrast)
# fmt: off
LARGE = (
    ("CR", 3000, 2400, "MONOCHROME1", 12, (("tl", (12, 12, 12), "bright"), ("l", (40,), "dark"))),
    ("CR", 3000, 2400, "MONOCHROME2", 16, (("br", (10, 10), "faint"), ("t", (8,), "bright"))),
    ("DX", 3000, 2400, "MONOCHROME2", 12, (("t", (8, 14), "dark"), ("mid", (24,), "bright"))),
    ("DX", 3000, 2400, "MONOCHROME1", 16, (("bl", (16,) * 4, "bright"), ("r", (20,), "faint"))),
    ("MG", 4000, 3328, "MONOCHROME2", 12, (("tr", (20,) * 4, "bright"), ("b", (40,), "faint"))),
    ("MG", 4000, 3328, "MONOCHROME1", 16, (("tl", (8, 8), "faint"), ("mid", (32,), "bright"))),
    ("CR", 4000, 3328, "MONOCHROME2", 16, (("bl", (14, 14, 14), "dark"), ("tr", (12,), "faint"))),
    ("DX", 4000, 3328, "MONOCHROME1", 12, (("r", (10, 10), "bright"), ("tl", (40, 24), "dark"))),
    ("CR", 3000, 2400, "MONOCHROME1", 12, ()),
    ("MG", 4000, 3328, "MONOCHROME2", 16, ()),
)
# fmt: on
LARGE_QUICK = (0, 2, 3, 8)  # 3000 x 2400 only


def large(seed: int, quick: bool) -> Iterator[Case]:
    m = Maker("large", seed)
    for i, (modality, rows, columns, photometric, bits, blocks) in enumerate(LARGE):
        if quick and i not in LARGE_QUICK:
            continue
        name = f"{modality}-{rows}x{columns}-{photometric[-1]}-{bits}bit-{i}"
        light, _ = radiograph(m.rng, rows, columns)  # display brightness, 0..1
        lines = _text_lines(m, (rows, columns), blocks, margin=max(12, rows // 50))
        values = [
            _label(light, block_lines, contrast)
            for block_lines, (_, _, contrast) in zip(lines, blocks, strict=True)
        ]
        maximum = (1 << bits) - 1
        clean_stored = _stored(light, photometric, maximum)
        boxes = [
            Box(0, *burn(light, line, np.float32(value)), line.identifying)
            for block_lines, value in zip(lines, values, strict=True)
            for line in block_lines
        ]
        stored = _stored(light, photometric, maximum)
        del light
        ds = m.header(None, name, modality)
        _radiograph_header(ds, modality, photometric, clean_stored)
        m.claim(ds)
        if modality in ("DX", "MG"):
            ds.BurnedInAnnotation = "NO"  # Type 1 in their IODs: a lie when there is text
        layout = Layout(photometric, 16, bits)
        encode(ds, clean_stored[np.newaxis], layout)
        clean = displayed(ds)
        del clean_stored
        encode(ds, stored[np.newaxis], layout)
        yield m.case(name, modality, ds, clean, boxes, Expected(CLEANED if boxes else UNCHANGED))


def _stored(light: np.ndarray, photometric: str, maximum: int) -> np.ndarray:
    v = light if photometric == "MONOCHROME2" else np.float32(1) - light
    return np.rint(v * np.float32(maximum)).astype(np.uint16)


def _label(light: np.ndarray, lines: list[Line], contrast: str) -> float:
    """Where a block of text goes, and the brightness it is drawn in. Bright text is white,
    on a dark label where the picture is light (as modalities print it); dark text is on a
    light label; faint text is a small step from what is under it. A label is part of the
    picture (drawn into `light` before the text)."""
    pad = lines[0].size // 2
    x0, y0 = max(0, min(ln.x for ln in lines) - pad), max(0, min(ln.y for ln in lines) - pad)
    x1 = max(ln.x + extent(ln)[0] for ln in lines) + pad
    y1 = max(ln.y + extent(ln)[1] for ln in lines) + pad
    under = float(np.median(light[y0:y1, x0:x1]))
    if contrast == "dark":
        light[y0:y1, x0:x1] = np.float32(0.9)
        return 0.08
    if contrast == "bright":
        if under > 0.5:
            light[y0:y1, x0:x1] = np.float32(0.05)
        return 1.0
    return under + 0.15 if under < 0.8 else under - 0.15


def _radiograph_header(ds: Dataset, modality: str, photometric: str, stored: np.ndarray) -> None:
    """What CR, DX and MG (For Presentation) IODs require beyond the common header."""
    low, high = (float(v) for v in np.percentile(stored[::7, ::7], (1, 99)))
    ds.WindowCenter = f"{(low + high) / 2:.0f}"
    ds.WindowWidth = f"{max(high - low, 1):.0f}"
    mg = modality == "MG"
    ds.BodyPartExamined = "BREAST" if mg else "CHEST"
    if not mg:
        ds.ViewPosition = "PA"
    if modality == "CR":
        return
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", ""]
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.AcquisitionContextSequence = []
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = [0.1, 0.1] if mg else [0.15, 0.15]
    ds.ImageLaterality = "L" if mg else "U"
    ds.PositionerType = "MAMMOGRAPHIC" if mg else "NONE"
    ds.PatientOrientation = ["A", "R"] if mg else ["L", "F"]
    ds.AnatomicRegionSequence = [_code("76752008", "Breast") if mg else _code("51185008", "Chest")]
    view = (
        _code("399368009", "medio-lateral oblique")
        if mg
        else _code("399348003", "postero-anterior")
    )
    ds.ViewCodeSequence = [view]
    if mg:
        view.ViewModifierCodeSequence = []
        ds.DistanceSourceToDetector, ds.DistanceSourceToPatient = "660", "620"
        ds.EstimatedRadiographicMagnificationFactor = "1.064516"  # 660 / 620
        ds.OrganExposed, ds.BreastImplantPresent, ds.PartialView = "BREAST", "NO", "NO"
        ds.BodyPartThickness, ds.CompressionForce, ds.PositionerPrimaryAngle = "45", "100", "45"


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "SCT", meaning
    return item


# --- layouts: every way of storing pixels -------------------------------------------------

SIGNED_16 = Layout(bits_allocated=16, bits_stored=16, signed=True)
MR_12 = Layout(bits_allocated=16, bits_stored=12)


def layouts(seed: int, quick: bool) -> Iterator[Case]:
    m = Maker("layouts", seed)
    ui = ultrasound_ui(240, 320)
    us = ultrasound(m.rng, 240, 320, 0.0, None, ui)[0][np.newaxis]
    grey_us = us[..., 0].copy()
    ct = ct_slice(m.rng, 0.3, 256)[np.newaxis]
    mr = mr_slice(m.rng, 0.5, 256)[np.newaxis]
    for name, layout, source, stack in (
        ("rgb-planar", Layout("RGB", planar=1), "examples_rgb_color.dcm", us),
        ("ybr-full-422", Layout("YBR_FULL_422"), "SC_ybr_full_422_uncompressed.dcm", us),
        ("ybr-full", Layout("YBR_FULL"), "SC_ybr_full_422_uncompressed.dcm", us),
        ("signed-16", SIGNED_16, "CT_small.dcm", ct),
        ("jpeg-rgb", Layout("RGB", syntax=uids.JPEGBaseline8Bit), "examples_rgb_color.dcm", us),
        ("jpeg-grey", Layout(syntax=uids.JPEGBaseline8Bit), "examples_rgb_color.dcm", grey_us),
        ("rle", replace(SIGNED_16, syntax=uids.RLELossless), "CT_small.dcm", ct),
        ("jpeg-ls", replace(MR_12, syntax=uids.JPEGLSLossless), "MR_small.dcm", mr),
        ("j2k", replace(SIGNED_16, syntax=uids.JPEG2000Lossless), "CT_small.dcm", ct),
        (
            "big-endian",
            replace(MR_12, syntax=uids.ExplicitVRBigEndian),
            "MR_small_bigendian.dcm",
            mr,
        ),
        ("implicit", replace(SIGNED_16, syntax=uids.ImplicitVRLittleEndian), "CT_small.dcm", ct),
    ):
        yield from _with_and_without(m, name, source, stack, layout)
    lut = _palette_lut()
    indices = (grey_us.astype(np.uint16) * 199 // 255).astype(np.uint8)
    indices[:, 100:140, 120:200] = 200 + (np.arange(80) * 54 // 80).astype(np.uint8)  # flow
    for bits, source in ((8, "SC_rgb_rle.dcm"), (16, "examples_palette.dcm")):  # US: 16 only
        layout = Layout("PALETTE COLOR", lut_bits=bits)
        yield from _with_and_without(
            m,
            f"palette-{bits}",
            source,
            indices,
            layout,
            lut=lut if bits == 8 else lut * 257,
            text_value=255,
        )
    # Many frames, text on one: a 12-frame grey cine.
    cine = np.stack(
        [ultrasound(m.rng, 240, 320, t, None, ui)[0][..., 0] for t in np.linspace(0, 3, 12)]
    )
    yield from _with_and_without(
        m,
        "multiframe-text-on-frame-7",
        "examples_ybr_color.dcm",
        cine,
        Layout(),
        text_frames=(7,),
        variants=("text",),
    )
    # Text in bit 15 of a 12-bit CT (an overlay kept in the pixel data, as old scanners did):
    # a decoder masks it, a viewer of the overlay shows it.
    ct12 = np.clip(ct.astype(np.int32) + 1024, 0, 4095).astype(np.uint16)
    yield from _with_and_without(
        m,
        "high-bits-12-in-16",
        "CT_small.dcm",
        ct12,
        Layout(bits_allocated=16, bits_stored=12),
        high_bit=15,
        identifying=1.0,
    )
    # A strip 24 px high with a clear line of text.
    strip = np.tile(np.linspace(30, 90, 400, dtype=np.float32), (24, 1))
    strip = (strip + m.rng.normal(0, 3, strip.shape)).astype(np.uint8)[np.newaxis]
    yield from _with_and_without(
        m,
        "thin-strip-24x400",
        "SC_rgb_small_odd.dcm",
        strip,
        Layout(),
        sizes=(16,),
        where="l",
        variants=("text",),
        identifying=1.0,
    )
    # RT dose grids of 10 x 10, text-free, as pydicom bundles them.
    for source in ("rtdose.dcm", "rtdose_1frame.dcm"):
        yield _bundled(m, f"tiny-{source.removesuffix('.dcm')}", "RTDOSE", source)


def _with_and_without(
    m: Maker,
    name: str,
    source: str,
    stack: np.ndarray,
    layout: Layout,
    *,
    lut: np.ndarray | None = None,
    text_value: object = None,
    text_frames: tuple[int, ...] = (0,),
    high_bit: int = 0,
    variants: tuple[str, ...] = ("free", "text"),
    sizes: tuple[int, ...] = (),
    where: str = "",
    identifying: float = 0.9,
) -> Iterator[Case]:
    """The layout without text (released unchanged) and with burned-in text (released
    cleaned), as `variants` asks. `high_bit`: the text is that bit set, the picture kept."""
    modality = _modality(source)
    ds = m.header(source, name, modality)
    if source.startswith("CT") and layout.signed and layout.syntax != uids.ImplicitVRLittleEndian:
        ds.RescaleIntercept = "0"  # stored values are HU: negative ones included
    if layout.syntax == uids.ImplicitVRLittleEndian:  # elements whose VR is "US or SS"
        ds.PixelPaddingValue = -2000
        ds.SmallestImagePixelValue, ds.LargestImagePixelValue = int(stack.min()), int(stack.max())
    m.claim(ds)
    encode(ds, stack, layout, lut=lut)
    clean = displayed(ds)
    if "free" in variants:
        plain = copy.deepcopy(ds)
        plain.SOPInstanceUID = m.uid("instance", f"{name}-text-free")
        plain.file_meta.MediaStorageSOPInstanceUID = plain.SOPInstanceUID
        yield m.case(
            f"{name}-text-free", modality, plain, clean, [], Expected(UNCHANGED), source=source
        )
    if "text" not in variants:
        return
    text = stack.copy()
    rows, columns = stack.shape[1:3]
    count = len(sizes) or int(m.rng.integers(1, 4))
    line_sizes = sizes or tuple(int(m.rng.choice((12, 14, 16, 20))) for _ in range(count))
    place = where or str(m.rng.choice(["tl", "tr", "bl", "br", "t", "b"]))
    margin = 2 if rows < 64 else 6
    lines = _text_lines(m, (rows, columns), [(place, line_sizes, "")], margin, identifying)[0]
    boxes = []
    for i in text_frames:
        for line in lines:
            if high_bit:
                on = np.zeros((rows, columns), bool)
                box = burn(on, line, True)
                text[i][on] |= np.uint16(1 << high_bit)
            else:
                box = burn(text[i], line, _text_value(text[i], text_value))
            boxes.append(Box(i, *box, line.identifying))
    encode(ds, text, layout, lut=lut)
    yield m.case(name, modality, ds, clean, boxes, Expected(CLEANED), source=source)


def _text_value(frame: np.ndarray, given: object) -> object:
    """What text is drawn in: the value given, else white (the brightest value the frame's
    type holds, within its data for 16 bits)."""
    if given is not None:
        return given
    if frame.ndim == 3:
        return (255, 255, 255)
    return np.iinfo(frame.dtype).max if frame.dtype.itemsize == 1 else frame.max()


def _palette_lut() -> np.ndarray:
    """256 entries (8 bits each): a grey ramp, a red-to-yellow flow map, white last."""
    lut = np.zeros((256, 3), np.uint16)
    lut[:200] = (np.arange(200) * 255 // 199)[:, np.newaxis]
    ramp = np.arange(55) * 255 // 54
    lut[200:255, 0], lut[200:255, 1] = 255, ramp
    lut[255] = 255
    return lut


def _modality(source: str) -> str:
    prefix = source.split("_")[0]
    return {"examples": "US", "SC": "SC", "rtdose": "RTDOSE"}.get(prefix, prefix)


def _bundled(
    m: Maker,
    name: str,
    modality: str,
    source: str,
    boxes: list[Box] | None = None,
    clean: np.ndarray | None = None,
    expected: Expected | None = None,
) -> Case:
    """A bundled file as its device wrote it: only its UIDs new (so a run holds each once)."""
    ds = pydicom.dcmread(bundled(source))
    ds.SOPInstanceUID = m.uid("instance", name)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    shown = displayed(ds)
    return m.case(
        name,
        modality,
        ds,
        shown if clean is None else clean,
        boxes or [],
        expected or Expected(CLEANED if boxes else UNCHANGED),
        source=source,
    )


# --- faces and header claims ----------------------------------------------------------------


def faces(seed: int, quick: bool) -> Iterator[Case]:
    m = Maker("faces", seed)
    for name, claim, layout in (
        ("vl-photo-recognizable-yes", "YES", Layout("RGB")),
        ("xc-photo-no-claim-jpeg", None, Layout("RGB", syntax=uids.JPEGBaseline8Bit)),
    ):
        ds = m.header(None, name, "VL")
        ds.Modality = "XC"
        ds.Laterality = ""  # dciodvfy asks for it in a VL image (Type 2C)
        ds.AcquisitionContextSequence = []
        ds.LossyImageCompression = "00"
        if claim:
            ds.RecognizableVisualFeatures = claim
        encode(ds, face(m.rng)[np.newaxis], layout)
        yield m.case(name, "XC", ds, displayed(ds), [], Expected(WITHHELD, FACE), kind="face")


def header(seed: int, quick: bool) -> Iterator[Case]:
    """BurnedInAnnotation YES: over text (found and cleaned), and over speckle alone (nothing
    to find: withheld, the header is believed)."""
    m = Maker("header", seed)
    ui = ultrasound_ui(480, 640)
    for name, colour, text in (
        ("yes-text-rgb", True, True),
        ("yes-speckle-rgb", True, False),
        ("yes-speckle-grey", False, False),
    ):
        frame = ultrasound(m.rng, 480, 640, 0.0, None, ui if text else None)[0]
        stack = (frame if colour else frame[..., 0].copy())[np.newaxis]
        layout = Layout("RGB") if colour else Layout()
        (case,) = _with_and_without(
            m,
            name,
            "examples_rgb_color.dcm",
            stack,
            layout,
            variants=("text",) if text else ("free",),
            sizes=(14, 14, 14),
            where="tl",
        )
        case.ds.BurnedInAnnotation = "YES"
        if not text:
            case.expected = Expected(WITHHELD, HEADER_SAYS_TEXT)
        yield case
    ct = ct_slice(m.rng, 0.2)[np.newaxis]
    (case,) = _with_and_without(m, "yes-text-ct", "CT_small.dcm", ct, SIGNED_16, variants=("text",))
    case.ds.BurnedInAnnotation = "YES"
    yield case


# --- timing: text-free series at real sizes --------------------------------------------------

TIMING = {"CT": 200, "MR": 60, "CR": 3, "US": 4, "SC": 6}  # images (US: cines of 30 frames)
TIMING_QUICK = {"CT": 20, "MR": 10, "CR": 1, "US": 1, "SC": 2}


def timing(seed: int, quick: bool) -> Iterator[Case]:
    m = Maker("timing", seed)
    counts = TIMING_QUICK if quick else TIMING
    for modality, source, layout, make in (
        ("CT", "CT_small.dcm", SIGNED_16, lambda z: ct_slice(m.rng, z)),
        ("MR", "MR_small.dcm", MR_12, lambda z: mr_slice(m.rng, z)),
    ):
        n = counts[modality]
        for k in range(n):
            series = f"{modality}-series-{2 * k // n}"  # two series, as a study has them
            name = f"{modality}-{k:03d}"
            ds = m.header(source, name, modality, series)
            if modality == "CT":
                ds.PixelPaddingValue = -2000
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [-256.0, -256.0, -2.5 * k]
            ds.SliceLocation = -2.5 * k
            ds.PixelSpacing = [1.0, 1.0]
            pixels = make(k / n)
            if modality == "CT":  # stored = HU + 1024, as the header's intercept says
                pixels = np.where(pixels == -2000, -2000, pixels + 1024).astype(np.int16)
            m.claim(ds)
            encode(ds, pixels[np.newaxis], layout)
            yield m.case(name, modality, ds, displayed(ds), [], Expected(UNCHANGED), source=source)
    for k in range(counts["CR"]):
        light, _ = radiograph(m.rng, 3000, 2400)
        ds = m.header(None, f"CR-{k}", "CR")
        stored = _stored(light, "MONOCHROME1", 4095)
        del light
        _radiograph_header(ds, "CR", "MONOCHROME1", stored)
        m.claim(ds)
        encode(ds, stored[np.newaxis], Layout("MONOCHROME1", 16, 12))
        yield m.case(f"CR-{k}", "CR", ds, displayed(ds), [], Expected(UNCHANGED))
    ui = ultrasound_ui(480, 640)
    for k in range(counts["US"]):
        frames, noise = [], None
        for t in np.linspace(0, 2 * np.pi, 30, endpoint=False):
            frame, noise = ultrasound(m.rng, 480, 640, t + k, noise, ui)
            frames.append(frame)
        ds = m.header("examples_ybr_color.dcm", f"US-cine-{k}", "US")
        m.claim(ds)
        encode(ds, np.stack(frames), Layout("RGB", syntax=uids.JPEGBaseline8Bit), multiframe=True)
        yield m.case(
            f"US-cine-{k}",
            "US",
            ds,
            displayed(ds),
            [],
            Expected(UNCHANGED),
            source="examples_ybr_color.dcm",
        )
    for k in range(counts["SC"]):
        ds = m.header("SC_rgb_rle.dcm", f"SC-{k}", "SC")
        m.claim(ds)
        encode(ds, rendering(m.rng, 768, 1024)[np.newaxis], Layout("RGB"))
        yield m.case(
            f"SC-{k}", "SC", ds, displayed(ds), [], Expected(UNCHANGED), source="SC_rgb_rle.dcm"
        )


# --- vendor: real devices' captures from pydicom's bundled files ----------------------------

# Text regions labelled by hand on renderings of each file (x0, y0, x1, y1, identifying), the
# same on every frame, and how far (in 8-bit levels) a text pixel stands from its box's
# surroundings. Identifying: an institution, dates and times; the rest are scanner settings,
# labels and words.
# fmt: off
VENDOR_TEXT = {
    "examples_rgb_color.dcm": ("US", 30, (
        (9, 12, 85, 20, True), (9, 20, 45, 28, False), (9, 28, 35, 36, False),
        (9, 36, 40, 44, False), (10, 44, 30, 52, False), (154, 13, 165, 21, False),
        (140, 20, 180, 28, True), (249, 12, 310, 21, False), (274, 20, 310, 28, False),
        (264, 28, 310, 36, False), (284, 36, 310, 44, False), (279, 44, 310, 52, False),
        (4, 68, 20, 80, False), (299, 68, 317, 80, False), (1, 108, 20, 116, False),
        (296, 108, 315, 116, False), (124, 180, 180, 188, False), (199, 228, 310, 236, False),
    )),
    "examples_jpeg2k.dcm": ("US", 30, (
        (19, 25, 169, 39, True), (19, 41, 89, 55, False), (19, 57, 69, 71, False),
        (19, 73, 79, 87, False), (11, 89, 59, 105, False), (306, 25, 332, 41, False),
        (279, 41, 359, 55, True), (499, 24, 619, 41, False), (549, 39, 619, 55, False),
        (529, 57, 619, 71, False), (569, 73, 619, 87, False), (559, 89, 625, 105, False),
        (9, 137, 39, 151, False), (599, 137, 629, 151, False), (4, 217, 39, 231, False),
        (594, 216, 629, 231, False), (249, 361, 359, 375, False), (399, 457, 619, 471, False),
    )),
    "examples_palette.dcm": ("US", 30, (
        (10, 8, 75, 23, False), (94, 9, 120, 23, False), (96, 36, 264, 50, True),
        (327, 35, 510, 53, False), (574, 9, 635, 23, False), (669, 8, 773, 26, True),
        (574, 36, 646, 50, False), (669, 36, 780, 50, True), (3, 67, 74, 81, False),
        (3, 86, 47, 100, False), (3, 105, 51, 119, False), (5, 124, 53, 138, False),
        (3, 162, 31, 180, False), (11, 184, 62, 198, False), (11, 203, 67, 217, False),
        (11, 222, 53, 236, False), (11, 240, 77, 258, False), (126, 87, 214, 104, False),
        (241, 87, 303, 101, False),
    )),
    "examples_ybr_color.dcm": ("US", 25, (  # 30 frames, faint text, JPEG baseline
        (12, 3, 29, 11, False), (2, 13, 37, 22, False), (2, 22, 9, 30, False),
        (301, 14, 317, 22, False), (297, 23, 316, 33, False), (305, 62, 315, 71, False),
        (303, 70, 317, 79, False), (303, 81, 317, 89, False), (303, 89, 317, 97, False),
        (297, 117, 306, 126, False), (297, 133, 306, 140, False), (287, 198, 297, 207, False),
        (59, 230, 74, 238, False), (104, 230, 110, 238, False), (132, 230, 158, 238, False),
        (176, 229, 202, 238, False), (223, 230, 234, 238, False), (246, 230, 276, 239, False),
    )),
    "GDCMJ2K_TextGBR.dcm": ("OT", 30, (
        (30, 44, 154, 102, False), (27, 158, 253, 216, False), (30, 244, 197, 302, False),
    )),
}
# fmt: on
VENDOR_FREE = (
    ("693_J2KI.dcm", "CT"),
    ("J2K_pixelrep_mismatch.dcm", "CT"),
    ("JPEG2000.dcm", "NM"),
    ("JPGExtended.dcm", "NM"),
    ("examples_overlay.dcm", "MR"),  # its overlay plane (group 6000) holds text; its pixels none
)


def vendor(seed: int, quick: bool) -> Iterator[Case]:
    m = Maker("vendor", seed)
    for source, (modality, levels, labels) in VENDOR_TEXT.items():
        ds = pydicom.dcmread(bundled(source))
        shown = displayed(ds)
        clean = _text_removed(shown, labels, levels)
        boxes = [Box(i, *label) for i in range(len(shown)) for label in labels]
        yield _bundled(m, source.removesuffix(".dcm"), modality, source, boxes, clean)
    for source, modality in VENDOR_FREE:
        yield _bundled(m, source.removesuffix(".dcm"), modality, source)


def _text_removed(shown: np.ndarray, labels, levels: int) -> np.ndarray:
    """The capture without its text: in each labelled box, the pixels standing more than
    `levels` (8-bit) from the box's surroundings get the surroundings' median."""
    clean = np.array(shown)
    scale = 257 if shown.dtype.itemsize > 1 and shown.max() > 255 else 1
    rows, columns = shown.shape[1:3]
    for frame in clean:
        for x0, y0, x1, y1, _ in labels:
            ring = np.zeros((rows, columns), bool)
            ring[max(0, y0 - 3) : y1 + 3, max(0, x0 - 3) : x1 + 3] = True
            ring[y0:y1, x0:x1] = False
            ground = np.median(frame[ring], axis=0).astype(frame.dtype)
            region = frame[y0:y1, x0:x1]
            far = np.abs(region.astype(np.int64) - ground.astype(np.int64))
            text = (far.max(axis=-1) if far.ndim == 3 else far) > levels * scale
            region[text] = ground
    return clean


FAMILIES: dict[str, Callable[[int, bool], Iterator[Case]]] = {
    "large": large,
    "layouts": layouts,
    "faces": faces,
    "header": header,
    "timing": timing,
    "vendor": vendor,
}

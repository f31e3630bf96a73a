"""A pixel corpus case: one DICOM image, the pixels it would show without its text, where the
text is, and what Sendit should do with it. Kept in memory (small corpora) or on disk (the
generated families: loaded when first used, `release()` drops them again)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.pixels import apply_color_lut, pixel_array

# Expected outcomes of `sendit run` with its defaults.
CLEANED = "released-cleaned"  # released, the text gone, the rest of the picture kept
UNCHANGED = "released-unchanged"  # released with its pixel data byte for byte
WITHHELD = "withheld"
# Withheld reason classes: sendit_api.status.WITHHELD_REASONS, and one the pixel issue adds.
FACE = "face"  # a photograph that shows (or may show) a face
HEADER_SAYS_TEXT = "burned-in-header"  # BurnedInAnnotation YES and no text proven found
DOCUMENT = "document"


class Box(NamedTuple):
    """A line of text: its frame and pixel box (x1, y1 exclusive), and whether it identifies
    someone (a name, an ID, a date, an institution) or not (a side marker, a setting)."""

    frame: int
    x0: int
    y0: int
    x1: int
    y1: int
    identifying: bool = True


@dataclass(frozen=True)
class Expected:
    outcome: str  # CLEANED | UNCHANGED | WITHHELD
    reason: str = ""  # WITHHELD: the reason class


@dataclass(eq=False)
class Case:
    name: str
    modality: str  # the modality the bench times it under (CT, MR, CR, DX, MG, US, SC, XC, ...)
    kind: str  # text | text_free | document | face: what the pixels hold
    expected: Expected
    boxes: list[Box] = field(default_factory=list)
    family: str = "burned"
    source: str | None = None  # the bundled file it was made from (its header, or all of it)
    path: Path | None = None  # the file on disk; None: in memory only
    _ds: Dataset | None = field(default=None, repr=False)
    _clean: np.ndarray | None = field(default=None, repr=False)

    @property
    def ds(self) -> Dataset:
        """The image (read once, then kept until `release`: changes to it stay)."""
        if self._ds is None:
            assert self.path is not None, f"{self.name} has neither a dataset nor a file"
            self._ds = pydicom.dcmread(self.path)
        return self._ds

    @property
    def clean(self) -> np.ndarray:
        """What the image shows without its text (`displayed` of the text-free version):
        frames x rows x columns [x 3]."""
        if self._clean is None:
            stored = self.path.with_suffix(".npy") if self.path else None
            if stored is not None and stored.exists():
                self._clean = np.load(stored, mmap_mode="r")
            else:  # text-free: the image itself
                self._clean = displayed(self.ds)
        return self._clean

    def write(self, path: Path) -> None:
        if self.path is not None and self._ds is None:
            path.write_bytes(self.path.read_bytes())
        else:
            self.ds.save_as(path, enforce_file_format=True)

    def release(self) -> None:
        """Drop what was loaded (the file stays): corpora of large images stay bounded."""
        if self.path is not None:
            self._ds = self._clean = None


def displayed(ds: Dataset) -> np.ndarray:
    """What a viewer can show of every frame, frames first: colour as RGB (palette through its
    LUT, YBR converted); grey as the stored values, and where unsigned pixels leave bits
    above BitsStored (the legacy overlay in pixel data), all the bits, since pydicom's decoding
    masks them and a viewer may show them."""
    frames = int(ds.get("NumberOfFrames") or 1)
    if _high_bits_possible(ds):
        order = ">" if ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRBigEndian else "<"
        dtype = np.dtype(f"{order}u{int(ds.BitsAllocated) // 8}")
        count = frames * int(ds.Rows) * int(ds.Columns)
        raw = np.frombuffer(ds.PixelData, dtype, count=count)
        return raw.reshape(frames, int(ds.Rows), int(ds.Columns)).astype(dtype.newbyteorder("="))
    arr = pixel_array(ds, raw=ds.PhotometricInterpretation == "PALETTE COLOR")
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    return arr if frames > 1 else arr[np.newaxis]


def _high_bits_possible(ds: Dataset) -> bool:
    return (
        not ds.file_meta.TransferSyntaxUID.is_compressed
        and str(ds.PhotometricInterpretation).startswith("MONOCHROME")
        and int(ds.get("PixelRepresentation", 0)) == 0
        and int(ds.BitsAllocated) in (8, 16, 32)
        and int(ds.BitsStored) < int(ds.BitsAllocated)
    )

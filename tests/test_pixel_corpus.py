"""The pixel corpus says what it claims: each generated file is valid DICOM that decodes to the
picture it describes, stored the way its name says (bits above BitsStored that decoding hides,
4:2:2 stored subsampled, planar RGB plane by plane), with text exactly where its boxes are;
and the measures read outputs as they should (a test of the measuring stick, not of Sendit).

The families made here are the small ones and the quick large one; made once per code
version and then read from the cache (tests/pixel_corpus.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pixel_corpus import (
    CLEANED,
    FACE,
    MARGIN,
    UNCHANGED,
    WITHHELD,
    changed_outside,
    corrupted,
    displayed,
    family,
    new_dciodvfy_errors,
    surviving,
)
from pixel_families import FAMILIES

from sendit_api.status import WITHHELD_REASONS

SMALL = ("layouts", "faces", "header", "vendor")


@pytest.fixture(scope="module")
def cases() -> dict[str, object]:
    made = {c.name: c for name in SMALL for c in family(name)}
    made.update({c.name: c for c in family("large", quick=True)})
    return made


def named(cases: dict, name: str):
    return cases[name if ":" in name else f"layouts:{name}:0"]


def test_every_file_decodes_and_adds_no_dciodvfy_errors(cases) -> None:
    """Against the bundled file each was made from (its header or all of it); made from
    nothing, against no errors at all."""
    for case in cases.values():
        assert displayed(case.ds).size, case.name
        assert new_dciodvfy_errors(case) == set(), case.name
        case.release()


def test_text_lies_exactly_in_the_boxes_and_nowhere_else(cases) -> None:
    """Where the image differs from its clean picture there is a box, and every box holds
    such pixels; lossy layouts (JPEG baseline blocks, 4:2:2 chroma) spill a little around."""
    for case in cases.values():
        if not case.boxes:
            continue
        differs = displayed(case.ds) != case.clean
        differs = differs.any(axis=-1) if differs.ndim == 4 else differs
        inside = np.zeros(differs.shape, bool)
        spill = MARGIN if case.ds.file_meta.TransferSyntaxUID.is_compressed else 1
        for i, x0, y0, x1, y1, _ in case.boxes:
            assert differs[i, y0:y1, x0:x1].any(), (case.name, (i, x0, y0, x1, y1))
            inside[i, max(0, y0 - spill) : y1 + spill, max(0, x0 - spill) : x1 + spill] = True
        assert not (differs & ~inside).any(), case.name
        case.release()


def test_outcomes_are_stated_and_boxes_fit_their_frames(cases) -> None:
    for case in cases.values():
        frames, rows, columns = case.clean.shape[:3]
        assert case.expected.outcome in (CLEANED, UNCHANGED, WITHHELD), case.name
        if case.expected.outcome == WITHHELD:
            assert case.expected.reason in (*WITHHELD_REASONS, FACE), case.name
        assert (case.kind == "text") == bool(case.boxes) == (case.expected.outcome == CLEANED)
        for i, x0, y0, x1, y1, identifying in case.boxes:
            assert 0 <= i < frames and 0 <= x0 < x1 <= columns and 0 <= y0 < y1 <= rows
            assert isinstance(identifying, bool)
        case.release()


def test_the_high_bit_case_hides_its_text_from_decoding(cases) -> None:
    case = named(cases, "high-bits-12-in-16")
    ds = case.ds
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 12, 0)
    raw = np.frombuffer(ds.PixelData, "<u2").reshape(ds.Rows, ds.Columns)
    assert (raw >> 15).any() and not (raw & 0x7000).any()  # bit 15 holds the text
    assert not (ds.pixel_array >> 12).any()  # pydicom masks it: a detector never sees it
    (box,) = case.boxes
    outside = np.ones(raw.shape, bool)
    outside[box.y0 : box.y1, box.x0 : box.x1] = False
    assert not (raw[outside] >> 15).any()


def test_the_422_case_is_stored_subsampled_and_the_planar_one_plane_by_plane(cases) -> None:
    ybr = named(cases, "ybr-full-422").ds
    assert ybr.PhotometricInterpretation == "YBR_FULL_422"
    assert len(ybr.PixelData) == ybr.Rows * ybr.Columns * 2  # Y Y Cb Cr per pair of pixels
    assert displayed(ybr).shape == (1, ybr.Rows, ybr.Columns, 3)
    planar = named(cases, "rgb-planar").ds
    rgb = displayed(planar)[0]
    plane = planar.Rows * planar.Columns
    assert planar.PlanarConfiguration == 1
    assert planar.PixelData[:plane] == rgb[..., 0].tobytes()  # all of red first
    assert planar.PixelData[plane : 2 * plane] == rgb[..., 1].tobytes()


def test_the_layouts_are_what_their_names_say(cases) -> None:
    def ds(name: str) -> pydicom.Dataset:
        return named(cases, name).ds

    assert ds("palette-8").RedPaletteColorLookupTableDescriptor[2] == 8
    assert ds("palette-16").RedPaletteColorLookupTableDescriptor[2] == 16
    assert (ds("signed-16").pixel_array < 0).any() and ds("signed-16").PixelRepresentation == 1
    assert ds("big-endian").file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRBigEndian
    assert ds("implicit").file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert ds("jpeg-rgb").PhotometricInterpretation == "YBR_FULL_422"
    assert (ds("thin-strip-24x400").Rows, ds("thin-strip-24x400").Columns) == (24, 400)
    multiframe = named(cases, "multiframe-text-on-frame-7")
    assert multiframe.ds.NumberOfFrames >= 10 and {b.frame for b in multiframe.boxes} == {7}
    large = [c for c in cases.values() if c.family == "large"]
    assert {(c.ds.Rows, c.ds.Columns) for c in large} == {(3000, 2400)}  # quick: one size
    assert {c.ds.PhotometricInterpretation for c in large} == {"MONOCHROME1", "MONOCHROME2"}


def test_a_family_is_the_same_every_time_it_is_made() -> None:
    first, second = (list(FAMILIES["header"](3, False)) for _ in range(2))
    assert [c.ds.PixelData for c in first] == [c.ds.PixelData for c in second]
    assert [c.boxes for c in first] == [c.boxes for c in second]
    assert [c.ds.SOPInstanceUID for c in first] == [c.ds.SOPInstanceUID for c in second]


# --- the measures ---------------------------------------------------------------------------


def _with_pixels(case, frames: np.ndarray) -> pydicom.Dataset:
    """The case's dataset with other native RGB or grey pixels (what an output might hold)."""
    ds = copy.deepcopy(case.ds)
    ds.PixelData = np.ascontiguousarray(frames[0] if len(frames) == 1 else frames).tobytes()
    if ds.SamplesPerPixel == 3:
        ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    return ds


def test_text_left_as_it_was_survives_and_text_blanked_or_restored_does_not(cases) -> None:
    case = named(cases, "rgb-planar")
    shown = displayed(case.ds)
    assert surviving(case, case.ds) == case.boxes
    assert surviving(case, None) == []  # withheld
    assert surviving(case, _with_pixels(case, np.array(case.clean))) == []
    blanked = shown.copy()
    for i, x0, y0, x1, y1, _ in case.boxes:  # the text's own white over the whole box
        blanked[i, y0:y1, x0:x1] = 255
    assert surviving(case, _with_pixels(case, blanked)) == []


def test_changes_outside_the_text_are_measured_and_scrambling_is_corruption(cases) -> None:
    case = named(cases, "rgb-planar")
    clean = np.array(case.clean)
    assert changed_outside(case, case.ds) == 0 and corrupted(case, case.ds) == ""
    half = clean.copy()
    half[:, : half.shape[1] // 2] = 128  # the top half greyed out: damage, not corruption
    assert 0.4 < changed_outside(case, _with_pixels(case, half)) < 0.6
    assert corrupted(case, _with_pixels(case, half)) == ""
    # Planar bytes read as interleaved: issue 26's scrambled write-back.
    scrambled = np.frombuffer(case.ds.PixelData, np.uint8).reshape(clean.shape)
    assert "changed" in corrupted(case, _with_pixels(case, scrambled))
    grey = _with_pixels(case, clean[..., 0].copy())
    grey.SamplesPerPixel, grey.PhotometricInterpretation = 1, "MONOCHROME2"
    del grey.PlanarConfiguration
    assert "shows" in corrupted(case, grey)


def test_the_cache_serves_what_it_made(tmp_path: Path, monkeypatch) -> None:
    import pixel_corpus

    monkeypatch.setattr(pixel_corpus, "CACHE", tmp_path)
    made = family("faces", seed=5)
    written = [c.path.stat().st_mtime_ns for c in made]
    again = family("faces", seed=5)
    assert [c.path for c in again] == [c.path for c in made]
    assert [c.path.stat().st_mtime_ns for c in again] == written  # read, not made again
    assert [c.expected for c in again] == [c.expected for c in made]

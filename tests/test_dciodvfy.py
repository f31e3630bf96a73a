"""Outputs stay valid DICOM: dciodvfy (dicom3tools) finds no new errors compared to inputs."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from dicomdata import KEY, KINDS, bundled, dciodvfy_errors, make_clean_image, plant_phi

from sendit_worker.run.shard import ShardOptions, run_shard


@pytest.mark.parametrize("kind", ["ct", "mr", "us_big_endian", "nm_jpeg2000", "mr_rle"])
def test_no_new_dciodvfy_errors(kind: str, tmp_path: Path) -> None:
    source = tmp_path / "in" / "a.dcm"
    source.parent.mkdir()
    plant_phi(make_clean_image(pydicom.dcmread(bundled(KINDS[kind])))).save_as(
        source, enforce_file_format=True
    )
    report = run_shard(
        ShardOptions(folders=[source.parent], output=tmp_path / "out", key=KEY, workers=1)
    )
    assert report.anonymized == 1, report.errors
    output = next((tmp_path / "out").rglob("*.dcm"))
    assert dciodvfy_errors(output) - dciodvfy_errors(source) == set()


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle.dcm"]
)
def test_cleaned_pixels_add_no_dciodvfy_errors(name: str, tmp_path: Path) -> None:
    """Burned-in text drawn, found and blanked: the rewritten pixel data and the Clean Pixel
    Data record are valid DICOM."""
    from pixel_corpus import corpus

    case = next(c for c in corpus() if c.name == f"{name}:bright:12")
    source = tmp_path / "in" / "a.dcm"
    source.parent.mkdir()
    case.ds.Manufacturer = "Test Maker"  # as make_clean_image: the header profile's own matter
    case.ds.save_as(source, enforce_file_format=True)
    report = run_shard(
        ShardOptions(folders=[source.parent], output=tmp_path / "out", key=KEY, workers=1)
    )
    assert report.anonymized == 1, report.errors
    output = next((tmp_path / "out").rglob("*.dcm"))
    cleaned = pydicom.dcmread(output)
    assert cleaned.PixelData != pydicom.dcmread(source).PixelData  # the text was blanked
    assert dciodvfy_errors(output) - dciodvfy_errors(source) == set()

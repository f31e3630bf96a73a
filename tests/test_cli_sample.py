"""`sendit sample`: made-up identified folders to try Sendit on, with the pixel stage's two
cases (burned-in text to blank, a scanned letter to withhold) unless asked for none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomdata import KEY

from sendit_api.names import PSEUDONYM_KEY_ENV
from sendit_worker.cli.main import main
from sendit_worker.cli.sample import Sample, make_sample


def test_the_sample_says_what_it_made(tmp_path: Path, capsys) -> None:
    """More patients than files: as many patients as files, and the message says so."""
    assert main(["sample", str(tmp_path / "s"), "--patients", "5", "--files", "2"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "sendit: wrote 2 sample files for 2 patients",
        "  1 image with the patient's name burned into the pixels, 1 scanned letter",
    ]
    assert len(list((tmp_path / "s").rglob("*.dcm"))) == 2
    assert main(["sample", str(tmp_path / "t"), "--files", "1", "--no-burned-in"]) == 0
    assert capsys.readouterr().err.splitlines() == ["sendit: wrote 1 sample file for 1 patient"]


def test_a_run_of_the_sample_blanks_the_text_and_withholds_the_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, KEY.decode())
    made = make_sample(tmp_path / "in", patients=2, files=4, burned_in=True)
    assert made == Sample(files=4, patients=2, burned_in=2, documents=1)
    inputs = [pydicom.dcmread(p) for p in sorted((tmp_path / "in").rglob("*.dcm"))]
    assert sorted(ds.BurnedInAnnotation for ds in inputs) == ["NO", "YES", "YES", "YES"]
    assert [ds.get("ConversionType") for ds in inputs].count("SD") == 1
    report = tmp_path / "report.json"
    args = ["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--report", str(report)]
    assert main([*args, "--workers", "1"]) == 0
    counts = json.loads(report.read_text())
    assert (counts["anonymized"], counts["pixels_cleaned"], counts["withheld"]) == (3, 2, 1)
    assert counts["withheld_by"] == {"document": 1}
    assert counts["withheld_files"][0]["reason"].startswith("text by nature")
    cleaned = [
        ds.pixel_array
        for p in (tmp_path / "out").rglob("*.dcm")
        if (ds := pydicom.dcmread(p)).Rows == 512
    ]
    assert len(cleaned) == 2
    for pixels in cleaned:  # the margins held only text, on a black field: now only black
        assert len(np.unique(pixels[:60])) == len(np.unique(pixels[-40:])) == 1


def test_without_burned_in_text_the_sample_is_as_before(tmp_path: Path) -> None:
    """Tests and benchmarks make text-free samples (the default of make_sample)."""
    made = make_sample(tmp_path, patients=2, files=3)
    assert made == Sample(files=3, patients=2)
    assert {pydicom.dcmread(p).BurnedInAnnotation for p in tmp_path.rglob("*.dcm")} == {"NO"}

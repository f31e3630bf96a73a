"""The clean policy against the pixel corpus (tests/pixel_corpus.py), as `sendit run` runs it
with its defaults: every size, colour layout and bit layout, faces, headers that claim text,
real vendor captures. No identifying text stays legible, no face is released, text-free
images come out with their pixel data as it was, nothing is corrupted, and a cleaned image
keeps the picture outside its text (at most 5% of it changed)."""

from __future__ import annotations

import pydicom
import pytest
from dicomdata import KEY
from pixel_corpus import CLEANED, UNCHANGED, WITHHELD, family, read

from sendit_worker.identifiers.pseudonyms import Pseudonymizer
from sendit_worker.report import WITHHELD_CLASSES, reason_class
from sendit_worker.run.shard import ShardOptions, run_shard

OUTSIDE_CHANGED = 0.05  # the bound on a cleaned image's picture outside its text
# Cases whose text is no one's: a single side marker ("R") the search does not look for (a
# letter alone identifies no one) and a 4:2:2 case's lone glyph.
NOT_LOOKED_FOR = {"layouts:signed-16:0", "layouts:ybr-full-422:0"}
# deid's own filter rule for this device (Philips CX50, 800 x 350) blanks its whole top banner,
# text and background alike: a region a rule names, not the search's doing.
BLANKED_BY_A_RULE = {"vendor:examples_palette:0"}


@pytest.fixture(scope="module", params=["layouts", "faces", "header", "vendor", "large"])
def outcomes(request, tmp_path_factory):
    """One family through run_shard with the defaults: each case and its output (None when
    withheld) and withheld reason class."""
    cases = family(request.param, quick=True)
    root = tmp_path_factory.mktemp(request.param)
    (root / "in").mkdir()
    for number, case in enumerate(cases):
        case.write(root / "in" / f"{number:04d}.dcm")
    report = run_shard(ShardOptions(folders=[root / "in"], output=root / "out", key=KEY))
    assert report.failed == 0, report.errors
    pseudonyms = Pseudonymizer(KEY)
    written = {pydicom.dcmread(p).SOPInstanceUID: p for p in (root / "out").rglob("*.dcm")}
    reasons = {f.ref: f.reason for f in report.withheld_files}
    return [
        (
            case,
            written.get(pseudonyms.uid(case.ds.SOPInstanceUID)),
            reason_class(
                WITHHELD_CLASSES,
                reasons.get(f"0:{pseudonyms.token('file', f'{number:04d}.dcm', 10)}", ""),
            ),
        )
        for number, case in enumerate(cases)
    ]


def test_no_identifying_text_stays_legible_and_nothing_is_corrupted(outcomes):
    for case, path, _ in outcomes:
        if path is None:
            continue
        reading = read(case, pydicom.dcmread(path))
        assert not reading.corrupted, (case.name, reading.corrupted)
        left = [b for b in reading.legible if b.identifying]
        assert left == [], case.name


def test_each_image_gets_the_outcome_it_should(outcomes):
    for case, path, reason in outcomes:
        if case.expected.outcome == WITHHELD:
            assert path is None and reason == case.expected.reason, (case.name, reason)
        elif case.name not in NOT_LOOKED_FOR:
            assert path is not None, (case.name, reason)


def test_text_free_images_keep_their_pixel_data(outcomes):
    for case, path, _ in outcomes:
        if case.expected.outcome == UNCHANGED:
            output = pydicom.dcmread(path)
            # Text segments of compressed frames (a JPEG 2000 comment) are stripped: the pixels
            # must be those that came in, and native pixel data byte for byte.
            if not case.ds.file_meta.TransferSyntaxUID.is_compressed:
                assert output.PixelData == case.ds.PixelData, case.name
            assert read(case, output).changed_outside == 0.0, case.name


def test_cleaned_images_keep_the_picture_outside_their_text(outcomes):
    for case, path, _ in outcomes:
        if case.expected.outcome == CLEANED and path and case.name not in BLANKED_BY_A_RULE:
            changed = read(case, pydicom.dcmread(path)).changed_outside
            assert changed <= OUTSIDE_CHANGED, (case.name, changed)


def test_a_cleaned_image_says_so(outcomes):
    for case, path, _ in outcomes:
        if path is not None and case.expected.outcome != WITHHELD:
            output = pydicom.dcmread(path)
            codes = [item.CodeValue for item in output.DeidentificationMethodCodeSequence]
            assert output.BurnedInAnnotation == "NO" and "113101" in codes, case.name

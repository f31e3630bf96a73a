"""The clean policy end to end, on the burned-in corpus (pixel_corpus) through `pipeline.run`
with the defaults `sendit run` uses: drawn text never survives, text-free images are released,
documents are withheld, outputs decode and say what was done."""

from __future__ import annotations

from collections import Counter

import pydicom
import pytest
from dicomdata import KEY, bundled, make_clean_image
from pixel_corpus import corpus, surviving

from sendit_worker.identifiers.pseudonyms import Pseudonymizer
from sendit_worker.pixels import PixelCleaner, PixelOutcome, PixelPolicy
from sendit_worker.pixels.policy import WITHHOLD
from sendit_worker.run.shard import ShardOptions, run_shard


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, dict, object]:
    root = tmp_path_factory.mktemp("pixels")
    cases = corpus()
    (root / "in").mkdir()
    for i, case in enumerate(cases):
        case.ds.save_as(root / "in" / f"{i}.dcm", enforce_file_format=True)
    report = run_shard(ShardOptions(folders=[root / "in"], output=root / "out", key=KEY, workers=1))
    uid = Pseudonymizer(KEY).uid
    outputs = {}
    for path in (root / "out").rglob("*.dcm"):
        outputs[pydicom.dcmread(path).SOPInstanceUID] = path
    by_case = {c.name: outputs.get(uid(c.ds.SOPInstanceUID)) for c in cases}
    return cases, by_case, report


def test_no_drawn_text_survives_in_any_output(cleaned) -> None:
    cases, outputs, report = cleaned
    assert report.failed == 0, report.errors
    for case in cases:
        if case.kind == "text" and outputs[case.name] is not None:
            assert surviving(case, pydicom.dcmread(outputs[case.name])) == [], case.name


def test_images_with_text_are_cleaned_and_released_not_withheld_wholesale(cleaned) -> None:
    """Withholding is for what cleaning cannot vouch for: a policy that withheld every image
    with text would pass the test above, and fail this one."""
    cases, outputs, report = cleaned
    text = [c for c in cases if c.kind == "text"]
    released = [c for c in text if outputs[c.name] is not None]
    assert len(released) >= 0.7 * len(text), [c.name for c in text if c not in released]
    kinds = {f.reason for f in report.withheld_files}
    assert kinds <= {
        "burned-in text remains after cleaning",
        "text by nature: the pixels are a document",
    }


def test_text_free_images_are_released(cleaned) -> None:
    cases, outputs, _ = cleaned
    free = [c for c in cases if c.kind == "text_free"]
    released = Counter(c.modality for c in free if outputs[c.name] is not None)
    assert released["CT"] == sum(c.modality == "CT" for c in free)  # every original
    assert sum(released.values()) >= 0.8 * len(free)  # most derived


def test_documents_are_withheld(cleaned) -> None:
    cases, outputs, report = cleaned
    documents = [c for c in cases if c.kind == "document"]
    assert documents and all(outputs[c.name] is None for c in documents)
    reasons = [f.reason for f in report.withheld_files]
    assert sum(r.startswith("text by nature") for r in reasons) >= len(documents)


def test_outputs_decode_and_say_their_pixels_were_checked(cleaned) -> None:
    cases, outputs, _ = cleaned
    for case in cases:
        path = outputs[case.name]
        if path is None:
            continue
        ds = pydicom.dcmread(path)
        assert ds.pixel_array.size, case.name
        assert ds.BurnedInAnnotation == "NO"
        codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        assert "113101" in codes  # Clean Pixel Data Option
        if case.kind == "text" and case.ds.file_meta.TransferSyntaxUID.is_compressed:
            # RLE, JPEG-LS and JPEG 2000 lossless go back in their own syntax.
            assert ds.file_meta.TransferSyntaxUID == case.ds.file_meta.TransferSyntaxUID


def test_objects_without_pixels_pass_and_float_pixels_are_withheld() -> None:
    cleaner = PixelCleaner(PixelPolicy())
    assert cleaner.apply(pydicom.dcmread(bundled("rtplan.dcm"))) == PixelOutcome()
    ds = pydicom.dcmread(bundled("rtplan.dcm"))
    ds.FloatPixelData = b"\0" * 16
    assert cleaner.apply(ds).withheld


def test_a_header_that_says_yes_withholds_when_nothing_is_found() -> None:
    ds = make_clean_image(pydicom.dcmread(bundled("CT_small.dcm")))  # text-free pixels
    ds.BurnedInAnnotation = "YES"
    assert "says YES" in PixelCleaner(PixelPolicy()).apply(ds).withheld


def test_trusted_no_skips_the_detector_and_leaves_pixels_as_they_were() -> None:
    case = next(c for c in corpus() if c.name == "CT_small.dcm:bright:12")
    case.ds.BurnedInAnnotation = "NO"
    before = case.ds.PixelData
    cleaner = PixelCleaner(PixelPolicy(trust_burned_in_annotation=True))
    assert cleaner.apply(case.ds) == PixelOutcome()  # the risk the option documents
    assert case.ds.PixelData == before and cleaner._detector is None


def test_the_withhold_policy_strips_text_segments_of_frames_it_releases() -> None:
    ds = make_clean_image(pydicom.dcmread(bundled("JPEG2000.dcm")))
    assert b"\xff\x64" in ds.PixelData[:200]  # a J2K comment marker: free text
    cleaner = PixelCleaner(PixelPolicy(policy=WITHHOLD))
    assert cleaner.apply(ds) == PixelOutcome()
    assert b"\xff\x64" not in ds.PixelData[:200] and cleaner._detector is None

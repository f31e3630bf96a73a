"""End to end: `pipeline.run` over folders of identified files, as `sendit run` uses it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pydicom
import pytest
from dicomdata import (
    BUNDLED,
    DISTINCT,
    KEY,
    KINDS,
    copy_bundled,
    identified_file,
    leaks,
    planted_tokens,
)

from sendit_api.errors import Permanent
from sendit_worker.intake.planner import make
from sendit_worker.pixels import PixelPolicy
from sendit_worker.pixels.policy import WITHHOLD
from sendit_worker.pool import InlineExecutor
from sendit_worker.run.shard import ShardOptions, run_shard


def _run(folders: list[Path], out: Path, key: bytes = KEY, **kw) -> object:
    return run_shard(ShardOptions(folders=folders, output=out, key=key, workers=1, **kw))


def _outputs(out: Path) -> list[Path]:
    return sorted(out.rglob("*.dcm"))


def test_every_bundled_kind_is_anonymized_withheld_or_reported(tmp_path: Path) -> None:
    src = tmp_path / "in"
    copy_bundled(src, [KINDS[k] for k in DISTINCT])
    report = _run([src], tmp_path / "out")
    assert report.discovered == len(DISTINCT)
    assert report.anonymized + report.withheld + report.failed == report.discovered
    assert report.failed == 0, report.errors
    # Derived, secondary and ImageType-less images go to the text detector now, not away.
    assert report.withheld == 0, report.withheld_files
    outputs = _outputs(tmp_path / "out")
    assert len(outputs) == report.anonymized
    for path in outputs:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert path.name == f"{ds.SOPInstanceUID}.dcm"
        assert path.parent.name == ds.SeriesInstanceUID
        assert path.parent.parent.name == ds.StudyInstanceUID


def test_the_withhold_policy_withholds_what_deids_filters_flag(tmp_path: Path) -> None:
    src = tmp_path / "in"
    copy_bundled(src, [KINDS[k] for k in DISTINCT])
    report = _run([src], tmp_path / "out", pixels=PixelPolicy(WITHHOLD))
    # deid's default filters flag derived/secondary images and objects without ImageType.
    assert report.withheld >= 1
    assert report.anonymized + report.withheld == report.discovered


def test_compressed_pixel_data_passes_through_byte_for_byte(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for name in ("JPEG2000.dcm", "CT_small.dcm"):
        identified_file(src / name, source=name)
    _run([src], tmp_path / "out")
    outputs = {pydicom.dcmread(p).Modality: pydicom.dcmread(p) for p in _outputs(tmp_path / "out")}
    originals = {pydicom.dcmread(p).Modality: pydicom.dcmread(p) for p in src.iterdir()}
    assert set(outputs) == {"NM", "CT"}
    for modality, ds in outputs.items():
        assert ds.file_meta.TransferSyntaxUID == originals[modality].file_meta.TransferSyntaxUID
    assert outputs["CT"].PixelData == originals["CT"].PixelData
    # The JPEG 2000 codestream loses its comment marker (free text), not a pixel.
    assert b"\xff\x64" in originals["NM"].PixelData[:200]
    assert b"\xff\x64" not in outputs["NM"].PixelData[:200]
    assert (outputs["NM"].pixel_array == originals["NM"].pixel_array).all()


def test_planted_identifiers_do_not_reach_outputs_or_paths(tmp_path: Path) -> None:
    name_folder = tmp_path / "in" / "Zyxwvutson_Quintessa" / "PID-7734129"
    identified_file(name_folder / "Zyxwvutson_1.dcm")
    identified_file(name_folder / "Zyxwvutson_2.dcm", source="MR_small.dcm")
    report = _run([tmp_path / "in"], tmp_path / "out")
    assert report.anonymized == 2
    tokens = [*planted_tokens(), "Zyxwvutson_Quintessa", "Zyxwvutson_1"]
    for path in _outputs(tmp_path / "out"):
        assert not leaks(path.read_bytes(), tokens)
        assert not leaks(str(path.relative_to(tmp_path)).encode(), tokens)


def test_same_key_gives_same_pseudonyms_and_uids_different_key_differs(tmp_path: Path) -> None:
    identified_file(tmp_path / "in" / "a.dcm")
    _run([tmp_path / "in"], tmp_path / "one")
    _run([tmp_path / "in"], tmp_path / "two")
    _run([tmp_path / "in"], tmp_path / "other", key=b"another-key-0123456789abcdef")
    one, two, other = (
        [pydicom.dcmread(p) for p in _outputs(tmp_path / d)] for d in ("one", "two", "other")
    )
    assert [p.relative_to(tmp_path / "one") for p in _outputs(tmp_path / "one")] == [
        p.relative_to(tmp_path / "two") for p in _outputs(tmp_path / "two")
    ]
    for a, b, c in zip(one, two, other, strict=True):
        assert (a.PatientID, a.SOPInstanceUID, a.StudyDate) == (
            b.PatientID,
            b.SOPInstanceUID,
            b.StudyDate,
        )
        assert a.PatientID != c.PatientID
        assert a.SOPInstanceUID != c.SOPInstanceUID


def test_series_stay_together_and_references_follow(tmp_path: Path) -> None:
    src = tmp_path / "in"
    first = identified_file(src / "1.dcm")
    ds = pydicom.dcmread(first)
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = pydicom.dcmread(first).SOPInstanceUID
    ds.ReferencedImageSequence = pydicom.Sequence([ref])
    ds.save_as(src / "2.dcm")
    report = _run([src], tmp_path / "out")
    assert (report.studies, report.series, report.anonymized) == (1, 1, 2)
    outs = {
        pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in _outputs(tmp_path / "out")
    }
    second = next(
        d
        for d in outs.values()
        if "ReferencedImageSequence" in d
        and d.ReferencedImageSequence[0].ReferencedSOPInstanceUID in outs
        and d.ReferencedImageSequence[0].ReferencedSOPInstanceUID != d.SOPInstanceUID
    )
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID in outs


def test_files_cut_off_in_the_header_fail_and_are_not_written(tmp_path: Path) -> None:
    """pydicom reads a cut-off file without complaint; such a file must not pass as complete."""
    src = tmp_path / "in"
    whole = identified_file(tmp_path / "whole.dcm").read_bytes()
    ds = pydicom.dcmread(tmp_path / "whole.dcm")
    comments = ds.get_item("ImageComments")  # after what discovery reads
    cuts = {
        "inside a value": comments.value_tell + 3,
        "inside the next tag": comments.value_tell + comments.length + 3,
    }
    for n, cut in enumerate(cuts.values()):
        identified_file(tmp_path / f"{n}.dcm", SOPInstanceUID=f"1.2.826.0.1.3680043.9.{n}")
        (src / f"{n}.dcm").parent.mkdir(parents=True, exist_ok=True)
        (src / f"{n}.dcm").write_bytes((tmp_path / f"{n}.dcm").read_bytes()[:cut])
    assert len(whole) > max(cuts.values())
    report = _run([src], tmp_path / "out")
    assert report.failed == len(cuts) and report.anonymized == 0
    assert {e.reason for e in report.errors} == {"truncated: the file ends inside an element"}
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_bad_inputs_are_reported_per_file_and_the_batch_goes_on(tmp_path: Path) -> None:
    src = tmp_path / "in"
    identified_file(src / "good.dcm")
    (src / "notes.txt").write_text("not dicom")
    (src / "empty.dcm").write_bytes(b"")
    data = (src / "good.dcm").read_bytes()
    truncated = identified_file(tmp_path / "t.dcm", source="MR_small.dcm").read_bytes()
    (src / "truncated.dcm").write_bytes(truncated[: len(truncated) - 2000])
    copy_bundled(src / "dicomdir", [])
    (src / "dicomdir" / "DICOMDIR").write_bytes(
        (
            Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / "DICOMDIR"
        ).read_bytes()
    )
    (src / "ST-000001.tmp2343").mkdir()
    (src / "ST-000001.tmp2343" / "x.dcm").write_bytes(data)
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(data)
    (src / "link.dcm").symlink_to(outside)
    report = _run([src], tmp_path / "out")
    reasons = sorted(e.reason for e in report.errors)
    assert report.anonymized == 1
    assert report.failed == 1  # the truncated image
    assert report.failed_by == {"unreadable": 1} and report.withheld_by == {}
    assert any("truncated" in r for r in reasons)
    assert any(r == "empty file" for r in reasons)
    assert any(r.startswith("not a DICOM file") for r in reasons)
    assert any(r.startswith("DICOMDIR") for r in reasons)
    assert any(r.startswith("unfinished folder") for r in reasons)
    assert any(r.startswith("symlink points outside") for r in reasons)
    # The source is never modified.
    assert (src / "good.dcm").read_bytes() == data
    # References are pseudonymous: a folder number and a keyed hash, never a source name.
    assert all(re.fullmatch(r"0:[A-Z2-7]{10}", e.ref) for e in report.errors)


def test_duplicate_sop_instance_is_reported_once(tmp_path: Path) -> None:
    src = tmp_path / "in"
    identified_file(src / "a.dcm")
    (src / "b.dcm").write_bytes((src / "a.dcm").read_bytes())
    report = _run([src], tmp_path / "out")
    assert report.anonymized == 1
    assert [e.reason for e in report.errors] == ["duplicate SOP Instance UID: skipped"]


def test_burned_in_annotation_is_withheld(tmp_path: Path) -> None:
    src = tmp_path / "in"
    path = identified_file(src / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(path)
    report = _run([src], tmp_path / "out")
    assert (report.withheld, report.anonymized, report.failed) == (1, 0, 0)
    assert report.withheld_by == {"burned-in-header": 1}
    shard = report.shard("processed").patch(0)["status"]["shards"]["0"]
    assert shard["reasons"] == {"withheld": {"burned-in-header": 1}, "failed": {}}
    assert _outputs(tmp_path / "out") == []


def test_shards_of_a_plan_partition_the_series_and_read_only_their_files(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for n, source in enumerate(
        ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "ExplVR_BigEnd.dcm"]
    ):
        identified_file(src / f"{n}.dcm", source=source)
    plan = tmp_path / "plan.sqlite"
    assert make(plan, [src], 2, InlineExecutor(), 2).header_reads == 4
    reports = [
        _run([src], tmp_path / f"out{i}", plan=plan, shard=(i, 2), planned=True) for i in range(2)
    ]
    assert sum(r.discovered for r in reports) == 4 and all(r.discovered for r in reports)
    assert [r.header_reads for r in reports] == [0, 0]  # the plan pass read them, once
    series = [{p.parent.name for p in _outputs(tmp_path / f"out{i}")} for i in range(2)]
    assert not series[0] & series[1], "a series belongs to one shard only"
    again = _run([src], tmp_path / "again", plan=plan, shard=(0, 2), planned=True)
    assert {p.parent.name for p in _outputs(tmp_path / "again")} == series[0]
    assert again.discovered == reports[0].discovered


def test_a_shard_without_its_plan_or_of_another_count_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in"
    identified_file(src / "a.dcm")
    plan = tmp_path / "plan.sqlite"
    with pytest.raises(Permanent, match="no readable plan"):
        _run([src], tmp_path / "out", plan=plan, shard=(0, 2), planned=True)
    make(plan, [src], 2, InlineExecutor(), 2)  # one series: one shard
    with pytest.raises(Permanent, match="do not match the plan"):
        _run([src], tmp_path / "out", plan=plan, shard=(0, 2), planned=True)


def test_alone_a_run_plans_itself_and_reads_each_header_once(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for n, source in enumerate(["CT_small.dcm", "MR_small.dcm"]):
        identified_file(src / f"{n}.dcm", source=source)
    (src / "notes.txt").write_text("not DICOM")
    report = _run([src], tmp_path / "out")
    assert (report.header_reads, report.discovered, report.skipped) == (3, 2, 1)


def test_pool_of_processes_gives_the_same_result_as_inline(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for n, source in enumerate(["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]):
        identified_file(src / f"{n}.dcm", source=source)
    inline = _run([src], tmp_path / "inline")
    pooled = run_shard(ShardOptions(folders=[src], output=tmp_path / "pool", key=KEY, workers=2))
    assert inline.counts() == pooled.counts()
    assert [p.relative_to(tmp_path / "inline") for p in _outputs(tmp_path / "inline")] == [
        p.relative_to(tmp_path / "pool") for p in _outputs(tmp_path / "pool")
    ]


def test_an_image_without_file_meta_gets_one(tmp_path: Path) -> None:
    path = identified_file(tmp_path / "src.dcm")
    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.preamble = None
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "bare.dcm", implicit_vr=True, little_endian=True)
    report = _run([tmp_path / "in"], tmp_path / "out")
    assert report.anonymized == 1, report.errors
    out = pydicom.dcmread(_outputs(tmp_path / "out")[0])
    assert out.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_alone(kind: str, tmp_path: Path) -> None:
    copy_bundled(tmp_path / "in", [KINDS[kind]])
    report = _run([tmp_path / "in"], tmp_path / "out")
    assert report.failed == 0, report.errors
    assert report.anonymized + report.withheld == 1


def test_pool_processes_die_with_a_killed_run(tmp_path: Path) -> None:
    """SIGKILL of `sendit run` must not leave pool processes writing outputs behind it."""
    for n in range(30):
        identified_file(tmp_path / "in" / f"{n}.dcm", SOPInstanceUID=f"1.2.3.{n}")
    proc = subprocess.Popen(
        [
            Path(sys.executable).with_name("sendit"),
            "run",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--workers",
            "2",
        ],
        env={**os.environ, "SENDIT_PSEUDONYM_KEY": KEY.decode()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    deadline = time.monotonic() + 30
    while len(children) < 2 and time.monotonic() < deadline:
        children = psutil.Process(proc.pid).children()
        time.sleep(0.05)
    assert len(children) >= 2, "the pool did not start"
    proc.kill()
    proc.wait()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []


# -- bad input and identity found on the way (issue 11) ---------------------------------------


def test_a_fifo_or_device_is_skipped_and_nothing_blocks(tmp_path: Path) -> None:
    src = tmp_path / "in"
    identified_file(src / "a.dcm")
    os.mkfifo(src / "pipe")
    started = time.monotonic()
    report = _run([src], tmp_path / "out")
    assert time.monotonic() - started < 30
    assert report.anonymized == 1
    assert [e.reason for e in report.errors] == [
        "not a regular file (a FIFO, socket or device): skipped"
    ]


def test_a_file_name_that_is_not_utf8_is_processed_like_any(tmp_path: Path) -> None:
    src = tmp_path / "in"
    identified_file(src / "a.dcm")
    os.rename(src / "a.dcm", os.fsencode(src) + b"/\xff\xfe-Doe.dcm")
    report = _run([src], tmp_path / "out")
    assert report.anonymized == 1, report.errors


def test_an_empty_study_uid_fails_the_file_never_writes_outside_the_output(tmp_path: Path) -> None:
    src = tmp_path / "in"
    path = identified_file(src / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = ""
    ds.save_as(path)
    report = _run([src], tmp_path / "out")
    assert report.anonymized == 0 and report.failed + report.skipped == 1
    assert not list(Path(tmp_path).glob("*.dcm")) and not Path("/", "2.25").exists()


def test_an_image_cut_before_its_pixel_data_fails_as_truncated(tmp_path: Path) -> None:
    src = tmp_path / "in"
    path = identified_file(src / "a.dcm")
    data = path.read_bytes()
    ds = pydicom.dcmread(path)
    path.write_bytes(data[: ds.get_item(0x7FE00010).value_tell - 12])  # the element boundary
    report = _run([src], tmp_path / "out")
    assert report.failed == 1 and report.errors[0].reason.startswith("truncated")


def test_two_patients_in_one_series_keep_their_own_pseudonyms(tmp_path: Path) -> None:
    src = tmp_path / "in"
    a = identified_file(src / "a.dcm", PatientID="PID-AAAA1")
    b = identified_file(src / "b.dcm", PatientID="PID-BBBB2")
    ds = pydicom.dcmread(b)
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".2"
    ds.SeriesInstanceUID = pydicom.dcmread(a).SeriesInstanceUID
    ds.save_as(b)
    report = _run([src], tmp_path / "out")
    assert report.anonymized == 2 and report.series == 1
    patients = {pydicom.dcmread(p).PatientID for p in _outputs(tmp_path / "out")}
    assert len(patients) == 2


def test_one_mrn_from_two_issuers_is_two_patients(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for name, issuer in (("a", "HOSPITAL A"), ("b", "HOSPITAL B")):
        path = identified_file(src / name / "x.dcm", PatientID="12345")
        ds = pydicom.dcmread(path)
        ds.IssuerOfPatientID = issuer
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ds.SOPInstanceUID = (
            f"1.2.3.{len(issuer)}{name}"
        )
        ds.StudyInstanceUID += ".1"
        ds.SeriesInstanceUID += ".2"
        ds.save_as(path)
    report = _run([src], tmp_path / "out")
    assert report.anonymized == 2, report.errors
    assert len({pydicom.dcmread(p).PatientID for p in _outputs(tmp_path / "out")}) == 2


def test_a_failure_says_which_element_and_what_without_a_value(tmp_path: Path) -> None:
    src = tmp_path / "in"
    path = identified_file(src / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.add_new(0x00082112, "SQ", None)
    ds[0x00082112].VR = "LO"  # a sequence attribute holding text
    ds[0x00082112].value = "Zyxwvutson"
    ds.save_as(path)
    report = _run([src], tmp_path / "out")
    assert report.failed == 1
    reason = report.errors[0].reason
    assert "(0008,2112) SourceImageSequence" in reason and "Zyxwvutson" not in reason


def test_every_image_pydicom_bundles_is_released_or_withheld_for_a_stated_reason(tmp_path):
    """pydicom's own test images, each alone: the damaged ones fail with what is wrong with
    them, none on Sendit's own error, and no reason is only an exception's name."""
    outcomes = {}
    for number, path in enumerate(sorted(BUNDLED.glob("*.dcm"))):
        source = tmp_path / str(number) / "in"
        source.mkdir(parents=True)
        shutil.copy(path, source / "image.dcm")
        report = _run([source], tmp_path / str(number) / "out")
        reasons = [e.reason for e in report.errors + report.withheld_files]
        outcomes[path.name] = (report.anonymized, report.withheld, report.failed, reasons)
        assert not any(re.fullmatch(r"[^:(]*\(\w+\)", r) for r in reasons), (path.name, reasons)
    failed = {name for name, (_, _, failures, _) in outcomes.items() if failures}
    # Damaged on purpose: cut short, or a BitsAllocated of '1A'.
    assert failed <= {"MR_truncated.dcm", "rtplan_truncated.dcm", "badVR.dcm"}
    assert outcomes["rtstruct.dcm"][0] == 1  # its patient is named "Patient"
    assert outcomes["SC_ybr_full_422_uncompressed.dcm"][0] == 1
    assert outcomes["SC_rgb_jpeg.dcm"][0] == 1
    released = sum(1 for done, *_ in outcomes.values() if done)
    assert released >= 60, outcomes


def test_pixels_declared_too_large_to_decode_fail_that_file_only(tmp_path):
    """A decompression bomb's header (a small RLE stream declaring 30000 x 30000): checked
    before anything is decoded; the file fails with that reason, the batch goes on."""
    src = tmp_path / "in"
    copy_bundled(src, ["MR_small_RLE.dcm", "CT_small.dcm"])
    bomb = pydicom.dcmread(src / "MR_small_RLE.dcm")
    bomb.Rows = bomb.Columns = 30000
    bomb.save_as(src / "MR_small_RLE.dcm")
    report = _run([src], tmp_path / "out")
    assert report.anonymized == 1 and report.failed == 1
    (error,) = report.errors
    assert error.reason.startswith("could not decode the pixels") and "MiB" in error.reason


def test_implicit_vr_keeps_elements_whose_dictionary_vr_is_ambiguous(tmp_path):
    """In implicit VR nothing says whether PixelPaddingValue is US or SS: the dataset's pixel
    representation does. They are kept as explicit VR keeps them (they were removed as
    unknown)."""
    ds = pydicom.dcmread(BUNDLED / KINDS["mr_implicit"])
    ds.add_new(0x00280120, "SS", -2000)  # PixelPaddingValue
    ds.add_new(0x00280106, "SS", 0)  # SmallestImagePixelValue
    ds.add_new(0x00280107, "SS", 4000)  # LargestImagePixelValue
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "a.dcm", implicit_vr=True, little_endian=True)
    assert pydicom.dcmread(tmp_path / "in" / "a.dcm").get_item(0x00280120).VR is None
    report = _run([tmp_path / "in"], tmp_path / "out")
    assert report.anonymized == 1, report.errors
    out = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert (out.PixelPaddingValue, out.SmallestImagePixelValue, out.LargestImagePixelValue) == (
        -2000,
        0,
        4000,
    )

"""Withheld images kept for review, and what a reviewer does with them, on a laptop: a batch run
with a quarantine, then releases (through the whole pipeline, delivered once), rejections, the
audit log, a rule saved for the device. Real runs of the batch runner throughout (the text
detector included); delivery to fake-gcs-server (real) where a test names it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from batches import batch
from dicomdata import KEY, leaks, planted_tokens
from withheld import BLOCKING, CLASSES, LETTER_TEXT, write_withheld

from sendit_api.errors import Permanent
from sendit_api.names import PSEUDONYM_KEY_ENV
from sendit_api.spec import parse_batch
from sendit_worker.pixels import PixelOutcome
from sendit_worker.pixels.candidates import Region as Found
from sendit_worker.quarantine import review
from sendit_worker.quarantine.rules import Region, Rule
from sendit_worker.quarantine.store import RELEASED, WAITING, Quarantine, name_of
from sendit_worker.report import Report
from sendit_worker.run.batch import clean_source, run_batch
from sendit_worker.run.placement import LocalPlacement, PodPlacement


class Quiet:
    def stage(self, report) -> None: ...

    def advance(self, report, images: int) -> None: ...


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, KEY.decode())


def run(tmp_path: Path, policy: str = "clean", **spec) -> tuple[Report, Quarantine]:
    """The batch over write_withheld's folder, its filter withholding blocked.dcm, delivered to
    tmp/out, withheld images kept in tmp/q."""
    if not (tmp_path / "in").exists():
        write_withheld(tmp_path / "in" / "ST-1")
        (tmp_path / "blocking.deid").write_text(BLOCKING)
    spec.setdefault("destinations", {"local": {"path": "out"}})
    b = batch(
        source={"volume": {"hostPath": {"path": "in"}}, "folders": ["ST-1"]},
        deidentify={"pixels": {"policy": policy, "filters": [{"file": "blocking.deid"}]}},
        **spec,
    )
    placement = LocalPlacement(tmp_path, quarantine_dir=tmp_path / "q")
    report = run_batch(b, placement, Quiet(), deliver=True, workers=1)
    return report, Quarantine.open(tmp_path / "q")


def by_file(report: Report, tmp_path: Path) -> dict[str, str]:
    """Each withheld file's reference, by the name of its source file."""
    q = Quarantine.open(tmp_path / "q")
    source = {p.read_bytes(): p.name for p in (tmp_path / "in" / "ST-1").iterdir()}
    return {source[q.image(q.item(f.ref)).read_bytes()]: f.ref for f in report.withheld_files}


def outputs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "out").rglob("*.dcm"))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def release(q: Quarantine, refs: list[str], rule: Rule, **options) -> review.Released:
    asked = review.asked(q, refs)
    review.check(q, asked.waiting, rule)
    return review.release(q, asked.waiting, rule, Quiet(), who="reviewer", workers=1, **options)


def test_each_withheld_image_is_kept_unchanged_with_its_reason_and_preview_none_in_the_output(
    tmp_path: Path,
) -> None:
    report, q = run(tmp_path)
    expected = {name: kind for name, kind in CLASSES.items() if kind}
    assert (report.withheld, report.quarantined, report.anonymized) == (6, 6, 1)
    refs = by_file(report, tmp_path)
    assert set(refs) == set(expected)
    for name, ref in refs.items():
        item = q.item(ref)
        source = tmp_path / "in" / "ST-1" / name
        assert (item.kind, item.state) == (expected[name], WAITING), name
        assert item.reason == next(f.reason for f in report.withheld_files if f.ref == ref)
        assert q.image(item).read_bytes() == source.read_bytes()  # unchanged, byte for byte
        if name == "hsv.dcm":  # pixels the pixel stage cannot decode render no preview either
            assert not item.preview and not q.preview(item).exists()
            continue
        picture = pydicom.dcmread(source)
        png = cv2_read(q.preview(item))
        assert item.preview and png.shape[:2] == (picture.Rows, picture.Columns)
    assert len(outputs(tmp_path)) == 1  # the one image anonymized, nothing withheld
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in (tmp_path / "in" / "ST-1").iterdir()}
    assert not any(pydicom.dcmread(p).SOPInstanceUID in uids for p in outputs(tmp_path))


def cv2_read(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path))[..., ::-1]  # RGB


def test_the_preview_outlines_the_text_the_search_found(tmp_path: Path) -> None:
    report, q = run(tmp_path)
    item = q.item(by_file(report, tmp_path)["page.dcm"])
    assert len(item.found) >= 8  # the letter's lines
    png = cv2_read(q.preview(item))
    x0, y0, x1, _y1 = item.found[0]
    assert tuple(png[y0, (x0 + x1) // 2]) == (255, 40, 40)  # the box's top edge, in red


def test_the_withhold_policy_keeps_what_it_flags(tmp_path: Path) -> None:
    """Its two classes: the header's claim, and deid's rules (an image without ImageType, nor
    a BurnedInAnnotation NO to clear it)."""
    write_withheld(tmp_path / "in" / "ST-1")
    (tmp_path / "blocking.deid").write_text(BLOCKING)
    plain = tmp_path / "in" / "ST-1" / "plain.dcm"
    ds = pydicom.dcmread(plain)
    del ds.ImageType, ds.BurnedInAnnotation
    ds.save_as(plain)
    report, q = run(tmp_path, policy="withhold")
    kinds = {q.item(ref).kind for ref in by_file(report, tmp_path).values()}
    assert {"burned-in-header", "burned-in-suspected"} <= kinds
    assert report.quarantined == report.withheld


def test_text_left_after_cleaning_is_kept_with_what_was_found(tmp_path, monkeypatch) -> None:
    """The one class no drawn image reaches reliably (the search cleans what it finds): the
    pixel stage here is a MOCK whose outcome is text that remains, for every image, so that
    the quarantine's side of it is tested; test_pixels_clean tests the stage itself."""
    from sendit_worker.run import instance

    class TextRemains(instance.PixelCleaner):
        def apply(self, ds) -> PixelOutcome:
            found = (Found(10, 12, 90, 30, 14),)
            return PixelOutcome(withheld="burned-in text remains after cleaning", blanked=found)

    monkeypatch.setattr(instance, "PixelCleaner", TextRemains)  # one worker: this process
    report, q = run(tmp_path)
    item = q.item(by_file(report, tmp_path)["plain.dcm"])
    assert (item.kind, item.found, item.preview) == ("text-remains", ((10, 12, 90, 30),), True)


def test_nothing_identifying_names_a_quarantined_file_or_enters_its_records(tmp_path) -> None:
    report, q = run(tmp_path)
    refs = by_file(report, tmp_path)
    release(q, [refs["header-yes.dcm"]], Rule.of_regions([Region(0, 0, 20, 20)]))
    review.reject(q, [q.item(refs["face.dcm"])], who="reviewer")
    tokens = [*planted_tokens(), "Lindqvist", "MRN", "ST-1", "header-yes", "letter"]
    for path in q.root.rglob("*"):
        assert not leaks(str(path.relative_to(q.root)).encode(), tokens), path
    records = [
        *q.root.glob("items/*.json"),
        q.root / "audit.jsonl",
        *q.root.glob("releases/*.deid"),
    ]
    for path in records:
        assert not leaks(path.read_bytes(), tokens), path


def test_a_release_with_a_region_delivers_the_image_de_identified_and_verified(tmp_path) -> None:
    report, q = run(tmp_path)
    ref = by_file(report, tmp_path)["header-yes.dcm"]
    before = set(outputs(tmp_path))
    done = release(q, [ref], Rule.of_regions([Region(0, 0, 40, 12)]))
    assert [i.ref for i in done.released] == [ref] and not done.waiting
    assert (done.report.anonymized, done.report.sent) == (1, 1)
    [new] = set(outputs(tmp_path)) - before
    out = pydicom.dcmread(new)
    source = pydicom.dcmread(tmp_path / "in" / "ST-1" / "header-yes.dcm")
    assert out.SOPInstanceUID != source.SOPInstanceUID  # the batch's pseudonymous UIDs
    assert out.BurnedInAnnotation == "NO" and not leaks(new.read_bytes(), planted_tokens())
    assert (out.pixel_array[:12, :40] == out.pixel_array.min()).all()  # the region blanked
    assert (out.pixel_array[12:, 40:] == source.pixel_array[12:, 40:]).all()  # nothing else
    item = q.item(ref)
    assert (item.state, item.release) == (RELEASED, "b-release-1")
    assert not (q.root / "images" / f"{name_of(ref)}.dcm").exists()  # moved to its release


def test_a_second_release_of_the_same_reference_sends_nothing(tmp_path) -> None:
    report, q = run(tmp_path)
    ref = by_file(report, tmp_path)["header-yes.dcm"]
    release(q, [ref], Rule.of_regions([Region(0, 0, 20, 20)]))
    delivered = {p: p.stat().st_mtime_ns for p in outputs(tmp_path)}
    asked = review.asked(q, [ref])
    assert not asked.waiting and [i.ref for i in asked.decided] == [ref]
    assert {p: p.stat().st_mtime_ns for p in outputs(tmp_path)} == delivered
    assert len(q.audited()) == 1


def test_what_the_pipeline_withholds_again_waits_again_and_nothing_is_sent(tmp_path) -> None:
    """A region does not release a face: the release goes through the whole pipeline."""
    report, q = run(tmp_path)
    ref = by_file(report, tmp_path)["face.dcm"]
    before = tree(tmp_path / "out")
    done = release(q, [ref], Rule.of_regions([Region(0, 0, 8, 8)]))
    assert not done.released and done.waiting[ref].startswith("withheld again: recognizable")
    assert tree(tmp_path / "out") == before
    item = q.item(ref)
    assert (item.state, item.release) == (WAITING, "") and q.image(item).exists()
    assert q.audited()[-1]["outcome"].startswith("withheld again")


def test_a_region_over_the_text_found_releases_a_page_the_search_withheld(tmp_path) -> None:
    """What a rule blanks is blanked before the search looks: the region a reviewer names is
    not found again as text (nor counted as a document's lines)."""
    report, q = run(tmp_path)
    ref = by_file(report, tmp_path)["page.dcm"]
    done = release(q, [ref], Rule.of_regions([Region(*LETTER_TEXT)]))
    assert [i.ref for i in done.released] == [ref]
    x, y, w, h = LETTER_TEXT
    [page] = [p for p in outputs(tmp_path) if pydicom.dcmread(p).Modality == "OT"]
    pixels = pydicom.dcmread(page).pixel_array
    assert (pixels[y : y + h, x : x + w] == pixels.min()).all()


def test_reject_keeps_it_out_for_good_and_cleanup_removes_it_at_once(tmp_path) -> None:
    report, q = run(tmp_path, cleanup={"source": "delete"})
    refs = by_file(report, tmp_path)
    item = q.item(refs["letter.dcm"])
    q.proposal(item).write_bytes(review.proposed(q, item, Rule.of_regions([Region(0, 0, 9, 9)])))
    review.reject(q, [item], who="reviewer")
    assert q.item(item.ref).state == "rejected"
    assert not q.image(item).exists() and not q.preview(item).exists()
    assert not q.proposal(item).exists()  # it shows the pixels too
    assert review.asked(q, [item.ref]).decided  # never released after
    assert (tmp_path / "in" / "ST-1").is_dir()  # the source stays (images were withheld)


def test_reject_without_cleanup_keeps_the_original(tmp_path) -> None:
    report, q = run(tmp_path)
    item = q.item(by_file(report, tmp_path)["letter.dcm"])
    review.reject(q, [item], who="reviewer")
    assert q.image(item).exists() and q.item(item.ref).state == "rejected"


def test_with_cleanup_delete_a_released_image_goes_after_its_delivery(tmp_path) -> None:
    report, q = run(tmp_path, cleanup={"source": "delete"})
    refs = by_file(report, tmp_path)
    release(q, [refs["header-yes.dcm"]], Rule.of_regions([Region(0, 0, 20, 20)]))
    item = q.item(refs["header-yes.dcm"])
    assert item.state == RELEASED and not q.image(item).exists() and not q.preview(item).exists()
    waiting = q.item(refs["letter.dcm"])
    assert q.image(waiting).exists() and q.preview(waiting).exists()  # undecided: kept


def test_the_audit_log_records_each_decision(tmp_path) -> None:
    report, q = run(tmp_path)
    refs = by_file(report, tmp_path)
    release(q, [refs["header-yes.dcm"]], Rule.of_regions([Region(0, 0, 20, 20)]))
    release(q, [refs["face.dcm"]], Rule.of_regions([Region(0, 0, 8, 8)]))
    review.reject(q, [q.item(refs["letter.dcm"])], who="someone else")
    entries = q.audited()
    assert [(e["decision"], e["ref"], e["who"]) for e in entries] == [
        ("release", refs["header-yes.dcm"], "reviewer"),
        ("release", refs["face.dcm"], "reviewer"),
        ("reject", refs["letter.dcm"], "someone else"),
    ]
    assert entries[0]["rule"] == {"regions": ["0,0,20,20"]} and entries[0]["outcome"] == "delivered"
    assert entries[1]["release"] == "b-release-2" and all(e["time"] for e in entries)


@pytest.mark.parametrize(
    ("refs", "rule", "error"),
    [
        (["0:NOSUCHREF0"], "0,0,5,5", "no such reference"),
        (["header-yes.dcm"], "100,100,50,50", "is outside the image (128 columns, 128 rows)"),
        (
            ["header-yes.dcm"],
            "FORMAT dicom\n%filter graylist\nLABEL x\n  contains Modality\n  coordinates 0,0,5,5",
            "does not parse",
        ),
        (
            ["header-yes.dcm"],
            "FORMAT dicom\n%filter graylist\nLABEL x\n  bogus Rows\n  coordinates 0,0,5,5",
            "a rule without criteria",
        ),
        (["header-yes.dcm"], "FORMAT dicom\n%filter\nLABEL x\n  present Rows", "parse"),
        (
            ["header-yes.dcm"],
            "FORMAT dicom\n%filter graylist\nLABEL x\n  present Rows",
            "no region",
        ),
        (["header-yes.dcm"], "%filter graylist\nLABEL x\n  coordinates 0,0,1,1", "deid's syntax"),
        (
            ["header-yes.dcm"],
            "FORMAT dicom\n%filter graylist\nLABEL x\n  present Rows\n  coordinates a,b,c,d",
            "not four numbers",
        ),
        (
            ["header-yes.dcm"],
            "FORMAT dicom\n%filter graylist\nLABEL x\n  equals Modality MR\n  coordinates 0,0,9,9",
            "names no region for this image",
        ),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(tmp_path, refs, rule, error) -> None:
    report, q = run(tmp_path)
    files = by_file(report, tmp_path)
    before = tree(q.root)
    if rule.startswith(("FORMAT", "%")):
        (tmp_path / "rule.deid").write_text(rule)
        make = lambda: Rule.read(tmp_path / "rule.deid")  # noqa: E731
    else:
        make = lambda: Rule.of_regions([Region.parse(rule)])  # noqa: E731
    with pytest.raises(Permanent, match=re.escape(error)):
        release(q, [files.get(r, r) for r in refs], make())
    assert tree(q.root) == before


def test_a_rule_file_releases_the_images_it_names_regions_for(tmp_path) -> None:
    report, q = run(tmp_path)
    ref = by_file(report, tmp_path)["header-yes.dcm"]
    (tmp_path / "rule.deid").write_text(
        "FORMAT dicom\n\n%filter graylist\n\nLABEL CT corner\n  equals Modality CT\n"
        "  ctpcoordinates 0,0,30,10\n"
    )
    done = release(q, [ref], Rule.read(tmp_path / "rule.deid"))
    assert [i.ref for i in done.released] == [ref]
    assert q.audited()[0]["rule"]["file"].startswith("sha256:")


def test_a_rule_saved_for_the_device_cleans_the_next_batch_without_review(tmp_path) -> None:
    report, q = run(tmp_path)
    ref = by_file(report, tmp_path)["header-yes.dcm"]
    saved = tmp_path / "devices.deid"
    release(q, [ref], Rule.of_regions([Region(0, 0, 30, 10)]), save=saved)
    text = saved.read_text()
    assert "equals Manufacturer Test Maker" in text and "equals Rows 128" in text
    assert q.audited()[0]["saved"] == "devices.deid"
    again = tmp_path / "again"
    write_withheld(again / "in" / "ST-1")
    b = batch(
        source={"volume": {"hostPath": {"path": str(again / "in")}}, "folders": ["ST-1"]},
        deidentify={"pixels": {"filters": [{"file": str(saved)}]}},
        destinations={"local": {"path": str(again / "out")}},
    )
    second = run_batch(b, LocalPlacement(again), Quiet(), deliver=True, workers=1)
    kinds = {f.reason for f in second.withheld_files}
    assert not any(k.startswith("burned-in annotation") for k in kinds)  # cleaned, released
    assert second.anonymized == 3  # with plain.dcm, and blocked.dcm (no blocking filter here)


def test_a_device_without_a_model_gets_no_rule_and_nothing_changes(tmp_path) -> None:
    report, q = run(tmp_path)
    ref = by_file(report, tmp_path)["letter.dcm"]  # the letter's header names no model
    before = tree(q.root)
    with pytest.raises(Permanent, match="no manufacturer or no model"):
        release(q, [ref], Rule.of_regions([Region(0, 0, 5, 5)]), save=tmp_path / "d.deid")
    assert tree(q.root) == before and not (tmp_path / "d.deid").exists()


def test_a_release_needs_the_batchs_key(tmp_path, monkeypatch) -> None:
    report, q = run(tmp_path)
    ref = by_file(report, tmp_path)["header-yes.dcm"]
    before = tree(q.root)
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, "another-key-0123456789")
    with pytest.raises(Permanent, match="not the pseudonym key the batch ran with"):
        release(q, [ref], Rule.of_regions([Region(0, 0, 5, 5)]))
    assert tree(q.root) == before


def test_a_rerun_of_the_batch_leaves_the_reviewers_decisions(tmp_path) -> None:
    report, q = run(tmp_path)
    refs = by_file(report, tmp_path)
    review.reject(q, [q.item(refs["letter.dcm"])], who="reviewer")
    again, q = run(tmp_path)
    assert again.withheld == 6 and again.quarantined == 5  # the rejected one stays rejected
    assert q.item(refs["letter.dcm"]).state == "rejected"


def test_the_quarantine_must_be_outside_the_output_and_the_inputs(tmp_path) -> None:
    write_withheld(tmp_path / "in" / "ST-1")
    b = batch(
        source={"volume": {"hostPath": {"path": "in"}}, "folders": ["ST-1"]},
        destinations={"local": {"path": "out"}},
    )
    for inside in (tmp_path / "out" / "q", tmp_path / "in" / "ST-1" / "q"):
        placement = LocalPlacement(tmp_path, quarantine_dir=inside)
        with pytest.raises(Permanent, match="quarantine must be outside"):
            run_batch(b, placement, Quiet(), deliver=True, workers=1)


@pytest.mark.emulators
def test_a_release_to_gcs_is_delivered_once_even_when_the_first_attempt_fails(
    tmp_path, fake_gcs, monkeypatch
) -> None:
    """The first release finds no bucket (delivery fails: the image waits again); the second
    delivers it; a third sends nothing."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    fake_gcs.bucket("released-once")
    report, q = run(tmp_path, destinations={"gcs": {"bucket": "released-once"}})
    fake_gcs.bucket("released-once").delete(force=True)
    ref = by_file(report, tmp_path)["header-yes.dcm"]
    rule = Rule.of_regions([Region(0, 0, 20, 20)])
    with pytest.raises(Permanent, match="released-once"):
        release(q, [ref], rule)
    assert q.item(ref).state == WAITING and q.image(q.item(ref)).exists()
    bucket = fake_gcs.bucket("released-once")
    before = {b.name for b in bucket.list_blobs()}
    release(q, [ref], rule)
    after = {b.name for b in bucket.list_blobs()}
    assert len(after - before) == 1
    assert not review.asked(q, [ref]).waiting
    assert {b.name for b in bucket.list_blobs()} == after


def test_the_record_is_the_batchs_manifest_without_its_status(tmp_path) -> None:
    _, q = run(tmp_path)
    record = json.loads((q.root / "quarantine.json").read_text())
    assert record["manifest"]["metadata"] == {"name": "b", "namespace": "ns", "uid": "uid-b"}
    assert record["base"] == str(tmp_path) and "status" not in record["manifest"]


def test_in_a_cluster_a_release_is_a_senditbatch_whose_source_is_the_quarantine(tmp_path) -> None:
    """A pod's batch keeps its quarantine on the workspace claim; the release is a ConfigMap
    (the rule) and a SenditBatch, which then runs like any other: its source the release's
    folder on that claim, its images under the references they were withheld under, and its
    cleanup removing the released images with their previews."""
    write_withheld(tmp_path / "src" / "in")
    work = {"persistentVolumeClaim": {"claimName": "work"}}
    spec = {"destinations": {"local": {"path": "/data/out"}}, "cleanup": {"source": "delete"}}
    first = batch(workspace=work, **spec)
    mounts = (tmp_path / "src", tmp_path / "work", tmp_path / "config")
    pod = PodPlacement(*mounts, tmp_path / "local", uid="uid-b", shard=(0, 1))
    run_batch(first, pod, Quiet(), deliver=True, workers=1)
    q = Quarantine.open(tmp_path / "work" / "uid-b" / "quarantine")
    refs = {i.kind: i.ref for i in q.items()}
    rule = Rule.of_regions([Region(0, 0, 20, 20)])
    applied: list = []
    item = q.item(refs["burned-in-header"])
    documents = review.release_batch(q, [item], rule, applied.append, who="reviewer")
    assert applied == [documents]
    config_map, manifest = documents
    assert config_map["metadata"]["name"] == manifest["metadata"]["name"] == "b-release-1"
    assert config_map["data"] == {"release.deid": rule.text}
    assert manifest["metadata"]["labels"] == {"sendit.dev/releases": "b"}
    assert manifest["spec"]["source"] == {
        "volume": work,
        "folders": ["uid-b/quarantine/releases/b-release-1"],
    }
    assert manifest["spec"]["deidentify"]["pixels"]["filters"][-1] == {
        "configMapKeyRef": {"name": "b-release-1", "key": "release.deid"}
    }
    assert (q.root / "releases" / "b-release-1.yaml").exists()
    assert q.item(item.ref).state == RELEASED and not review.asked(q, [item.ref]).waiting

    report, released, pod = run_release(tmp_path, manifest, rule)
    assert (report.anonymized, report.sent) == (1, 1)
    assert len(list((tmp_path / "local-b-release-1").rglob("*.dcm"))) == 1
    assert clean_source(released, pod, report.counts()) == 1  # cleanup: delete, once sent
    assert not (q.root / "releases" / "b-release-1").exists() and not q.preview(item).exists()
    assert q.preview(q.item(refs["document"])).exists()  # undecided: kept

    face = q.item(refs["face"])
    [_, manifest] = review.release_batch(q, [face], rule, None, who="reviewer")
    report, released, pod = run_release(tmp_path, manifest, rule)
    assert [f.ref for f in report.withheld_files] == [face.ref]  # under its reference
    assert Quarantine.open(tmp_path / "work" / "uid-b-release-2" / "quarantine").item(face.ref)
    assert clean_source(released, pod, report.counts()) == 0  # not sent: it stays


def run_release(tmp_path: Path, manifest: dict, rule: Rule):
    """A release batch's pod: the workspace claim is its source, the ConfigMap its config."""
    name = manifest["metadata"]["name"]
    (tmp_path / "config" / name).mkdir(parents=True)
    (tmp_path / "config" / name / "release.deid").write_text(rule.text)
    released = parse_batch({**manifest, "metadata": {**manifest["metadata"], "uid": f"uid-{name}"}})
    mounts = (tmp_path / "work", tmp_path / "work", tmp_path / "config")
    pod = PodPlacement(*mounts, tmp_path / f"local-{name}", uid=f"uid-{name}", shard=(0, 1))
    return run_batch(released, pod, Quiet(), deliver=True, workers=1), released, pod

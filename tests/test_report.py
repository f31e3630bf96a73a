"""The run report's reason classes (worker/sendit_worker/report.py): every reason the worker
gives, by its class, the small fixed set a metric label and the status may carry."""

from __future__ import annotations

from sendit_api.status import FAILED_REASONS, WITHHELD_REASONS
from sendit_worker.intake.planner import ADDED, CHANGED
from sendit_worker.pixels import BURNED_IN_HEADER
from sendit_worker.report import FAILED_CLASSES, WITHHELD_CLASSES, Report, counted, reason_class

FAILED = {
    "truncated: the file ends inside an element": "unreadable",
    "truncated pixel data": "unreadable",
    "unreadable: Permission denied": "unreadable",
    "vanished while reading": "unreadable",
    CHANGED: "source-changed",
    ADDED: "source-changed",
    "verification: PatientName kept": "verification",
    "could not de-identify (0010,0010): bad value": "deidentify",
    "could not write the file (OverflowError)": "deidentify",
    "could not decode the pixels: 900 MiB of pixels declared": "deidentify",
    "something new": "other",
}
WITHHELD = {
    BURNED_IN_HEADER: "burned-in-header",
    "possible burned-in text: deid graylist rule matched": "burned-in-suspected",
    "burned-in annotation: the header says YES and no text was proven": "burned-in-header",
    "burned-in text remains after cleaning": "text-remains",
    "text by nature: deid blacklist rule matched": "document",
    "text by nature: the pixels are a document": "document",
    "recognizable visual features: the header says the image shows a face": "face",
    "withheld by a blacklist rule of the batch's filters": "filter-rule",
    "pixels not cleaned: float pixel data": "not-cleaned",
    "a reason added later": "other",
}


def test_every_reason_has_a_class_of_the_fixed_set():
    assert {reason_class(FAILED_CLASSES, r) for r in FAILED} <= set(FAILED_REASONS)
    assert {r: reason_class(FAILED_CLASSES, r) for r in FAILED} == FAILED
    assert set(FAILED.values()) == set(FAILED_REASONS)
    assert {r: reason_class(WITHHELD_CLASSES, r) for r in WITHHELD} == WITHHELD
    assert set(WITHHELD.values()) == set(WITHHELD_REASONS)


def test_the_report_counts_by_class_and_keeps_the_text_to_itself():
    report = Report()
    for reason in FAILED:
        report.fail("0:REF", reason)
    report.withhold("0:REF", BURNED_IN_HEADER)
    shard = report.shard("processed").patch(3)["status"]["shards"]["3"]
    assert shard["failed"] == len(FAILED) and shard["withheld"] == 1
    assert shard["reasons"] == {
        "withheld": {"burned-in-header": 1},
        "failed": {
            "unreadable": 4,
            "source-changed": 2,
            "verification": 1,
            "deidentify": 3,
            "other": 1,
        },
    }
    assert "PatientName" not in str(shard)  # the reason's text stays in the report
    assert [e.reason for e in report.errors] == list(FAILED)


def test_the_summary_says_how_many_had_text_blanked_and_sent_only_when_done():
    report = Report(discovered=3, anonymized=2, withheld=1, pixels_cleaned=1, studies=1)
    assert report.summary() == (
        "discovered 3, anonymized 2 (burned-in text blanked in 1), withheld 1, failed 0, "
        "skipped 0, sent 0, studies 1, series 0"
    )
    assert "sent" not in report.summary(sent=False)  # de-identified, not yet delivered
    assert [counted(n, w) for n, w in ((1, "image"), (2, "image"), (2, "series"))] == [
        "1 image",
        "2 images",
        "2 series",
    ]

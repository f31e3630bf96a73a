"""`sendit status`: what it prints of a batch and the exit code a script gets (the cluster
test runs it against a real batch)."""

from __future__ import annotations

from sendit_worker.cli.status import line, verdict


def body(phase: str | None, send: str = "auto", **status) -> dict:
    return {"spec": {"send": send}, "status": {"phase": phase, **status} if phase else {}}


def test_the_exit_code_says_how_the_batch_ended():
    assert verdict(body("Sent")) == 0
    assert verdict(body("DoneProcessing", send="manual")) == 0  # waiting for the researcher
    assert verdict(body("DoneProcessing")) is None  # auto: delivery is next
    assert verdict(body("Failed")) == verdict(body("Cancelled")) == 1
    assert verdict(body("Processing")) is verdict(body(None)) is None


def test_the_line_shows_phase_progress_rate_and_counts():
    shown = line(
        body(
            "Processing",
            progress="5/20",
            imagesPerSecond=0.5,
            secondsLeft=30,
            counts={"anonymized": 4, "withheld": 1},
            message="0/2 shards processed",
        )
    )
    assert shown == (
        "Processing | 5/20 | 0.5 img/s, 30 s left | anonymized 4, withheld 1, failed 0, sent 0"
        " | 0/2 shards processed"
    )
    assert line(body(None)).startswith("Queued | 0/0")

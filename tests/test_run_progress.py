"""A local run's progress (worker/sendit_worker/run/progress.py): without a terminal (a CI log,
a pipe), a line at a steady interval with the counts, the rate and the time left; and how far
an interrupted run got."""

from __future__ import annotations

import logging

import pytest

from sendit_api.status import Counts, ShardReport
from sendit_worker.run.progress import TerminalProgress, duration


def processing(discovered: int, anonymized: int = 0, withheld: int = 0) -> ShardReport:
    counts = Counts(discovered=discovered, anonymized=anonymized, withheld=withheld)
    return ShardReport("processing", counts)


def test_without_a_terminal_a_line_at_each_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sendit")
    progress = TerminalProgress(terminal=False, every=0.0)
    progress.stage(processing(40))
    progress.advance(processing(40, anonymized=9, withheld=1), 10)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("progress: 10 of 40 images; anonymized 9, withheld 1, failed 0; ")
    assert " img/s, about " in lines[0] and lines[0].endswith(" left")
    assert progress.bar is None


def test_lines_wait_for_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sendit")
    progress = TerminalProgress(terminal=False, every=3600.0)
    progress.stage(processing(40))
    progress.advance(processing(40, anonymized=10), 10)
    assert caplog.records == []


def test_an_interrupted_run_says_how_far_it_got() -> None:
    progress = TerminalProgress(terminal=False)
    assert progress.written() == "0 written (the folders were still being read)"
    progress.stage(processing(40))
    progress.advance(processing(40, anonymized=9, withheld=1), 10)
    assert progress.written() == "9 of 40 written"
    progress.stage(ShardReport("sending", Counts(discovered=40, anonymized=39, withheld=1)))
    assert progress.written() == "39 of 40 written"


def test_a_time_left_reads_as_a_person_says_it() -> None:
    assert [duration(s) for s in (0, 44.6, 200, 7500)] == ["0 s", "45 s", "3 min 20 s", "2 h 5 min"]

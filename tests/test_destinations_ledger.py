"""The ledger survives a crash mid-write and keys series by their exact images."""

from __future__ import annotations

from pathlib import Path

from sendit_worker.destinations.ledger import Ledger, series_key


def test_records_survive_a_reopen_and_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.record("k1", series="s1", images=3)
    ledger.record("k2", series="s2", images=4)
    with open(path, "a") as f:
        f.write('{"key": "k3", "ser')  # SIGKILL in the middle of a write
    again = Ledger(path)
    assert again.done("k1") == {"key": "k1", "series": "s1", "images": 3}
    assert again.done("k2") is not None
    assert again.done("k3") is None
    assert len(again) == 2


def test_series_key_depends_on_the_exact_images() -> None:
    assert series_key("s", ["a", "b"]) == series_key("s", ["b", "a"])
    assert series_key("s", ["a", "b"]) != series_key("s", ["a"])
    assert series_key("s", ["a"]) != series_key("t", ["a"])

"""Atomic writes (worker/sendit_worker/files.py): a reader never sees half a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendit_worker.files import copy_atomically, write_atomically


def test_a_write_lands_whole_under_its_name(tmp_path: Path) -> None:
    write_atomically(tmp_path / "a" / "x.dcm", b"data")
    copy_atomically(tmp_path / "a" / "x.dcm", tmp_path / "b" / "x.dcm")
    assert (tmp_path / "b" / "x.dcm").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "x.dcm", "x.dcm"]


def test_a_write_stopped_by_an_exception_leaves_nothing(tmp_path: Path) -> None:
    """An interrupted run unwinds through the write: neither the file nor its hidden partial
    stays (the bytes here are of the wrong type, so the write itself raises)."""
    with pytest.raises(TypeError):
        write_atomically(tmp_path / "x.dcm", "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []

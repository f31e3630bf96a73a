"""Discovery reads each header from the file's head in memory; the head's size never changes
what it finds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from dicomdata import BUNDLED, KINDS

from sendit_worker.intake import discovery
from sendit_worker.intake.discovery import Candidate, Instance, Problem, read_header


def _header(path: Path) -> Instance | Problem:
    result = read_header(Candidate(path, path.parent))
    # The path is the same either way; compare what was read.
    return result if isinstance(result, Problem) else replace(result, path=Path(), root=Path())


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns of the values a cut leaves
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_head_cut_anywhere_in_the_header_reads_the_same(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heads that end inside an element, a sequence or the file meta fall back to the file."""
    path = BUNDLED / KINDS[kind]
    expected = _header(path)
    assert isinstance(expected, Instance)
    for size in range(132, 4000, 37):  # at least the preamble and "DICM"
        monkeypatch.setattr(discovery, "HEAD_BYTES", size)
        assert _header(path) == expected, f"head of {size} bytes"


def test_a_header_longer_than_the_head_is_read_from_the_file(tmp_path: Path) -> None:
    ds = pydicom.dcmread(BUNDLED / KINDS["ct"])
    block = ds.private_block(0x0009, "SENDIT TEST", create=True)
    block.add_new(0x01, "OB", b"\x01" * (discovery.HEAD_BYTES + 1000))
    path = tmp_path / "long.dcm"
    ds.save_as(path)
    found = read_header(Candidate(path, tmp_path))
    assert isinstance(found, Instance)
    assert found.series_uid == ds.SeriesInstanceUID
    assert found.sop_uid == ds.SOPInstanceUID

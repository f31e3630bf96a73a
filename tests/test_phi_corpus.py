"""The planted-PHI corpus (tests/phi_corpus.py), one case per class of header leak, through
the real pipeline with its defaults: every case is released, and no sentinel reaches it."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicomdata import KEY
from phi_corpus import CASES, Case, leaked

from sendit_worker.run.shard import ShardOptions, run_shard


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_planted_value_reaches_an_output(case: Case, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    case.build().save_as(tmp_path / "in" / "image.dcm", enforce_file_format=True)
    report = run_shard(
        ShardOptions(folders=[tmp_path / "in"], output=tmp_path / "out", key=KEY, workers=1)
    )
    assert report.discovered == 1
    assert report.anonymized == 1, report.errors  # fail closed is not fail always
    assert leaked(tmp_path / "out", case) == []

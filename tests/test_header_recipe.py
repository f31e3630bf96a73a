"""A user's deid recipe on top of the built-in profile."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from dicomdata import KEY, identified_file

from sendit_api.errors import Permanent
from sendit_worker.header.recipe import UserRecipe
from sendit_worker.run.shard import ShardOptions, run_shard


def test_a_recipe_runs_after_the_profile(tmp_path: Path) -> None:
    recipe = tmp_path / "r.deid"
    recipe.write_text(
        "FORMAT dicom\n\n%header\n\nREPLACE BodyPartExamined CHEST\n"
        "ADD ClinicalTrialSponsorName Sendit Study\n"
    )
    identified_file(tmp_path / "in" / "a.dcm")
    report = run_shard(
        ShardOptions(
            folders=[tmp_path / "in"],
            output=tmp_path / "out",
            key=KEY,
            workers=1,
            recipe=recipe,
        )
    )
    assert report.anonymized == 1, report.errors
    out = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert out.ClinicalTrialSponsorName == "Sendit Study"


def test_a_file_that_is_not_a_recipe_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "r.deid").write_text("hello")
    with pytest.raises(Permanent, match="not a deid recipe"):
        UserRecipe.load(tmp_path / "r.deid")
    with pytest.raises(Permanent, match="cannot read"):
        UserRecipe.load(tmp_path / "missing.deid")

"""A reviewer's region and rule file as deid filter rules, and a rule saved for a device."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from dicomdata import bundled

from sendit_api.errors import Permanent
from sendit_worker.pixels.screen import PixelScreen
from sendit_worker.quarantine.rules import Region, Rule, device_rule, save_rules
from sendit_worker.quarantine.store import Item

ITEM = Item("0:K3JQ7XN2AB", "r", "burned-in-header", "CT", 128, 256, 1, "Acme Medical", "CT 9")


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "-1,0,5,5", "0,0,0,5", "1,2,3,4,5"])
def test_a_region_that_is_not_x_y_w_h_is_refused(text: str) -> None:
    with pytest.raises(Permanent, match="--region"):
        Region.parse(text)


def test_a_region_is_deids_coordinates_and_fits_or_not() -> None:
    region = Region.parse("10,20,30,40")
    assert region.coordinates == "10,20,40,60" and str(region) == "10,20,30,40"
    assert region.fits(ITEM) and not Region(250, 0, 10, 10).fits(ITEM)


def test_a_regions_rule_blanks_it_on_every_image(tmp_path: Path) -> None:
    rule = Rule.of_regions([Region(1, 2, 3, 4)])
    (tmp_path / "r.deid").write_text(rule.text)
    assert Rule.read(tmp_path / "r.deid").text == rule.text  # it parses as the stage reads it
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    assert rule.regions_for([ds]) == [((0, "1,2,4,6"),)]
    assert rule.audit() == {"regions": ["1,2,3,4"]}


def test_a_devices_rule_matches_that_device_and_size_only(tmp_path: Path) -> None:
    text = device_rule(ITEM, [Region(0, 0, 50, 10)])
    save_rules(tmp_path / "devices.deid", [text])
    screen = PixelScreen([tmp_path / "devices.deid"])
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.Manufacturer, ds.ManufacturerModelName, ds.Rows, ds.Columns = (
        "Acme Medical",
        "CT 9",
        128,
        256,
    )
    assert (0, "0,0,50,10") in screen.verdict(ds).regions
    ds.Rows = 512
    assert (0, "0,0,50,10") not in screen.verdict(ds).regions


def test_saving_appends_and_what_would_not_parse_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "devices.deid"
    save_rules(path, [device_rule(ITEM, [Region(0, 0, 5, 5)])])
    save_rules(path, [device_rule(ITEM, [Region(9, 9, 5, 5)])])
    assert path.read_text().count("LABEL") == 2
    (tmp_path / "other.deid").write_text("not deid at all\n")
    with pytest.raises(Permanent, match="deid's syntax"):
        save_rules(tmp_path / "other.deid", [device_rule(ITEM, [Region(0, 0, 5, 5)])])
    assert (tmp_path / "other.deid").read_text() == "not deid at all\n"


@pytest.mark.parametrize(
    ("manufacturer", "model", "error"),
    [("", "CT 9", "no manufacturer or no model"), ("Acme + Co", "CT 9", "reads as syntax")],
)
def test_a_device_deids_syntax_cannot_name_gets_no_rule(manufacturer, model, error) -> None:
    item = Item("0:K3JQ7XN2AB", "r", "other", "CT", 1, 1, 1, manufacturer, model)
    with pytest.raises(Permanent, match=error):
        device_rule(item, [Region(0, 0, 1, 1)])

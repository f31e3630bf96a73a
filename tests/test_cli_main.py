"""`sendit` as a user runs it: exit codes, the report, manifests, locating a bad file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from dicomdata import KEY, identified_file, leaks, planted_tokens

from sendit_api.names import PSEUDONYM_KEY_ENV as KEY_ENV
from sendit_worker.cli.main import main


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY.decode())


def test_run_writes_outputs_and_a_report_with_counts(tmp_path: Path) -> None:
    identified_file(tmp_path / "in" / "a.dcm")
    (tmp_path / "in" / "junk.txt").write_text("x")
    code = main(
        [
            "run",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--report",
            str(tmp_path / "report.json"),
            "--workers",
            "1",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["anonymized"], report["skipped"], report["failed"]) == (1, 1, 0)
    assert report["errors"][0]["reason"] == "not a DICOM file"
    assert not leaks((tmp_path / "report.json").read_bytes(), [*planted_tokens(), "junk"])


def test_exit_code_is_1_when_an_image_failed(tmp_path: Path) -> None:
    data = identified_file(tmp_path / "src.dcm", source="MR_small.dcm").read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.dcm").write_bytes(data[:-3000])
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "1"]) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["run", "IN", "-o", "IN/out"],
        ["run", "IN", "-o", "OUT", "--report", "OUT/r.json"],
        ["run", "-f", "MISSING.yaml"],
    ],
)
def test_usage_and_configuration_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "IN").mkdir()
    argv = [
        a.replace("IN", str(tmp_path / "IN"))
        .replace("OUT", str(tmp_path / "OUT"))
        .replace("MISSING", str(tmp_path / "missing"))
        for a in args
    ]
    assert main(argv) == 2


def test_a_manifest_runs_locally(tmp_path: Path) -> None:
    identified_file(tmp_path / "data" / "study1" / "a.dcm")
    (tmp_path / "batch.yaml").write_text(
        "apiVersion: sendit.dev/v1alpha1\nkind: SenditBatch\nmetadata: {name: local}\n"
        "spec:\n  source:\n    volume: {hostPath: {path: data}}\n    folders: [study1]\n"
        "  destinations: {local: {path: out}}\n"
    )
    assert main(["run", "-f", str(tmp_path / "batch.yaml"), "--workers", "1"]) == 0
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1


def test_locate_finds_the_file_behind_a_reference(tmp_path: Path, capsys) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "sub" / "bad.bin").write_bytes(b"\x00" * 10)
    main(
        [
            "run",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--report",
            str(tmp_path / "r.json"),
            "--workers",
            "1",
        ]
    )
    ref = json.loads((tmp_path / "r.json").read_text())["errors"][0]["ref"]
    capsys.readouterr()
    assert main(["locate", ref, str(tmp_path / "in")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "in" / "sub" / "bad.bin")


def test_a_key_that_cannot_be_created_is_a_clear_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local run without a key makes one in the config directory; where that cannot be
    written (a read-only root, as in the worker image), it says so and exits 2. The read-only
    case itself runs in the image: tests/test_images.py."""
    identified_file(tmp_path / "in" / "a.dcm")
    (tmp_path / "file").write_text("")
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "file" / "config")  # cannot be a directory
    result = subprocess.run(
        [Path(sys.executable).with_name("sendit"), "run", str(tmp_path / "in"), "-o",
         str(tmp_path / "out")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "no pseudonym key, and none can be created at" in result.stderr
    assert f"give --key-file or set {KEY_ENV}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_console_script_is_installed_and_logs_no_identifiers(tmp_path: Path) -> None:
    identified_file(tmp_path / "Zyxwvutson_Quintessa" / "a.dcm")
    result = subprocess.run(
        [
            Path(sys.executable).with_name("sendit"),
            "run",
            str(tmp_path / "Zyxwvutson_Quintessa"),
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "anonymized 1" in result.stderr
    assert not leaks((result.stdout + result.stderr).encode(), [*planted_tokens(), "Zyxwvutson"])


@pytest.mark.emulators
def test_an_incomplete_delivery_still_writes_the_report_and_exits_1(
    tmp_path: Path, pubsub_emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivery that ends incomplete is a stand-in here (Delivery.finish raising, as it does
    when a series was not delivered): the report says what was done, the exit code says so."""
    from sendit_worker.destinations.deliver import Delivery
    from sendit_worker.destinations.errors import DeliveryError

    def incomplete(self, report) -> None:
        raise DeliveryError("1 series not delivered; rerun to complete")

    monkeypatch.setattr(Delivery, "finish", incomplete)
    topic = pubsub_emulator.topic("sendit-test", "cli-incomplete")
    identified_file(tmp_path / "data" / "st" / "a.dcm")
    (tmp_path / "batch.yaml").write_text(
        "apiVersion: sendit.dev/v1alpha1\nkind: SenditBatch\nmetadata: {name: part}\n"
        "spec:\n  source:\n    volume: {hostPath: {path: data}}\n    folders: [st]\n"
        f"  destinations: {{local: {{path: out}}, pubsub: {{topic: '{topic}'}}}}\n"
    )
    report = tmp_path / "report.json"
    code = main(["run", "-f", str(tmp_path / "batch.yaml"), "--report", str(report)])
    assert code == 1
    assert json.loads(report.read_text())["anonymized"] == 1


def _pixel_run(tmp_path: Path, name: str, *flags: str) -> tuple[dict, list[str]]:
    """One run of tmp_path/in; the report and the method codes of its one output, if any."""
    out, report = tmp_path / name, tmp_path / f"{name}.json"
    args = ["run", str(tmp_path / "in"), "-o", str(out), "--report", str(report)]
    assert main([*args, "--workers", "1", *flags]) == 0
    codes = [
        item.CodeValue
        for path in out.rglob("*.dcm")
        for item in pydicom.dcmread(path).DeidentificationMethodCodeSequence
    ]
    return json.loads(report.read_text()), codes


def test_pixels_withhold_withholds_what_the_clean_default_checks(tmp_path: Path) -> None:
    path = identified_file(tmp_path / "in" / "a.dcm", source="MR_small.dcm")
    ds = pydicom.dcmread(path)
    ds.ImageType = ["DERIVED", "SECONDARY"]  # deid's filters flag it
    del ds.BurnedInAnnotation
    ds.save_as(path)
    report, codes = _pixel_run(tmp_path, "clean")
    assert (report["anonymized"], report["withheld"]) == (1, 0)
    assert "113101" in codes  # Clean Pixel Data: the detector looked
    report, _ = _pixel_run(tmp_path, "withhold", "--pixels", "withhold")
    assert (report["anonymized"], report["withheld"]) == (0, 1)


def test_trusting_burned_in_annotation_skips_the_detector_on_an_exact_no(tmp_path: Path) -> None:
    identified_file(tmp_path / "in" / "a.dcm", source="MR_small.dcm")  # BurnedInAnnotation NO
    _, codes = _pixel_run(tmp_path, "trust", "--trust-burned-in-annotation")
    assert "113101" not in codes
    _, codes = _pixel_run(tmp_path, "default")
    assert "113101" in codes

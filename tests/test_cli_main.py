"""`sendit` as a user runs it: exit codes, the report, manifests, locating a bad file."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from contextlib import suppress
from pathlib import Path

import pydicom
import pytest
from dicomdata import KEY, identified_file, leaks, planted_tokens

from sendit_api.names import PSEUDONYM_KEY_ENV as KEY_ENV
from sendit_worker.cli.main import main, run_exit_code
from sendit_worker.cli.sample import make_sample
from sendit_worker.intake.planner import CHANGED
from sendit_worker.report import Report

ROOT = Path(__file__).resolve().parents[1]


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


def sendit(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None):
    """The installed console script, as a user runs it."""
    return subprocess.run(
        [Path(sys.executable).with_name("sendit"), *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, check=False, timeout=300,
    )  # fmt: skip


def one_error(result: subprocess.CompletedProcess, code: int) -> str:
    """The exit code is `code` and stderr ends in one line of its own, no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_a_file_that_fails_on_its_own_exits_3_and_is_listed(tmp_path: Path, capsys) -> None:
    """A truncated file fails the same way in every rerun: the run finished (exit 3, not the 1
    of an incomplete run), and the summary names it by reference, with the reason."""
    data = identified_file(tmp_path / "src.dcm", source="MR_small.dcm").read_bytes()
    identified_file(tmp_path / "in" / "whole.dcm")
    (tmp_path / "in" / "cut.dcm").write_bytes(data[:-3000])
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "1"]) == 3
    err = capsys.readouterr().err
    assert "anonymized 1, withheld 0, failed 1" in err
    assert re.search(r"^  0:[A-Z2-7]{10}: truncated", err, re.MULTILINE)


def test_a_failure_a_rerun_may_complete_exits_1() -> None:
    """Files that changed on the source during the run are the one per-file failure a rerun
    completes; any other failure with them still makes the run incomplete."""
    changed, cut = Report(), Report()
    changed.fail("0:REF", CHANGED)
    cut.fail("0:REF", "truncated pixel data")
    assert run_exit_code(changed) == 1
    assert run_exit_code(cut) == 3
    cut.fail("0:REF2", CHANGED)
    assert run_exit_code(cut) == 1
    assert run_exit_code(Report(anonymized=3, withheld=1)) == 0


MANIFEST = (
    "apiVersion: sendit.dev/v1alpha1\nkind: SenditBatch\nmetadata: {name: local}\n"
    "spec:\n  source:\n    volume: {hostPath: {path: .}}\n    folders: [IN, IM]\n"
    "  destinations: {local: {path: out}}\n"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "nothing to do: give one or more folders, or -f MANIFEST"),
        (["run", "IN", "-o", "IN/out"], "the output folder must be outside every input folder"),
        (["run", "IN", "-o", "OUT", "--report", "OUT/r.json"], "outside the output folder"),
        (["run", "-f", "MISSING.yaml"], "cannot read the manifest: No such file or directory"),
        (["run", "MISSING", "-o", "OUT"], "the input folder does not exist (not named here"),
        (["run", "FILE", "-o", "OUT"], "the input folder is a file, not a folder"),
        (["run", "-f", "misspelt.yaml"], "input folder 2 of 2 does not exist"),
        (["run", "IN", "-o", "FILE"], "the output is a file, not a folder"),
        (["run", "IN", "-o", "FILE/out"], "the output folder cannot be made (Not a directory)"),
        (["run", "IN", "-o", "OUT", "--report", "FILE/r.json"], "the report's folder cannot"),
        (["run", "IN", "-o", "OUT", "--workers", "-1"], "argument --workers: -1 is less than 1"),
        (["run", "IN", "-o", "OUT", "--workers", "two"], "--workers: 'two' is not a whole"),
        (["sample", "OUT", "--patients", "0"], "argument --patients: 0 is less than 1"),
        (["sample", "OUT", "--files", "0"], "argument --files: 0 is less than 1"),
        (["locate", "0:ABCDEFGHIJ", "IN"], "no pseudonym key: give --key-file or set"),
    ],
)
def test_usage_and_configuration_errors_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Every one, through the installed command: exit 2, one line saying what is wrong, no
    traceback, nothing written; and no folder name from the command line in the message."""
    identified_file(tmp_path / "IN" / "a.dcm")
    (tmp_path / "FILE").write_text("")
    (tmp_path / "misspelt.yaml").write_text(MANIFEST)
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no default key: locate has none
    if args[0] != "locate":
        env[KEY_ENV] = KEY.decode()
    line = one_error(sendit(*args, env=env, cwd=tmp_path), 2)
    assert message in line
    assert "MISSING" not in line and "IM" not in line.split(":", 1)[1]
    assert not (tmp_path / "OUT").exists()


def test_the_command_line_reads_as_documented(tmp_path: Path) -> None:
    """`--version`, a whole description and the exit codes in `--help`, help for every
    argument a newcomer types, and `-q` after the command as well as before it."""
    assert sendit("--version").stdout.startswith("sendit ")
    top = sendit("--help").stdout
    assert "Try it on made-up data: `sendit sample in` then `sendit run in --output out`." in top
    run = sendit("run", "--help").stdout
    for text in (top, run):
        assert "exit codes:" in text and "3    finished, but some files failed" in text
        assert "130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM" in text
    assert "a folder of DICOM files" in run
    sample = sendit("sample", "--help").stdout
    assert "made-up patients" in sample and "files in all" in sample
    assert "--no-burned-in" in sample
    identified_file(tmp_path / "in" / "a.dcm")
    quiet = sendit("run", tmp_path / "in", "-o", tmp_path / "out", "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert " INFO " not in quiet.stderr and "anonymized 1" in quiet.stderr


def test_the_log_and_the_summary_agree(tmp_path: Path) -> None:
    """The de-identification's own line reports no `sent` (delivery comes after it); the
    summary does; counts are spelt in the singular when there is one."""
    identified_file(tmp_path / "in" / "a.dcm")
    result = sendit("run", tmp_path / "in", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "sent 0" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("sendit: discovered 1, anonymized 1")
    assert "sent 1" in result.stderr
    assert "planned 1 image in 1 series onto 1 shard (0 files skipped, 0 failed)" in result.stderr


def test_on_a_terminal_log_lines_go_above_the_bar_not_onto_it(tmp_path: Path) -> None:
    """stderr a terminal (a pseudo-terminal 100 columns wide): the bar is drawn, and each log
    line starts a line of its own instead of continuing the bar's."""
    make_sample(tmp_path / "in", patients=2, files=8)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, KEY_ENV: KEY.decode()}
    proc = subprocess.Popen(
        [Path(sys.executable).with_name("sendit"), "run", tmp_path / "in", "-o", tmp_path / "out"],
        stdout=follower, stderr=follower, env=env,
    )  # fmt: skip
    os.close(follower)
    shown = b""
    with suppress(OSError):  # the terminal's end is read until the process closes it
        while chunk := os.read(leader, 65536):
            shown += chunk
    assert proc.wait(timeout=120) == 0
    text = shown.decode(errors="replace")
    assert "8/8 [" in text  # the bar
    assert re.search(r"[\r\n]\d{4}-\d\d-\d\d [\d:,]+ INFO sendit: de-identified:", text)
    assert not re.search(r"img/s\]\d{4}-", text)


def test_a_destination_without_credentials_is_one_clear_error(tmp_path: Path) -> None:
    """examples/batch-gcs.yaml on a machine with no Google credentials (and no emulators):
    exit 2 and what to do, before any file is read (docs/destinations.md). The metadata
    server is not asked (NO_GCE_CHECK): this is not a Google machine."""
    manifest = tmp_path / "batch-gcs.yaml"
    manifest.write_text((ROOT / "examples" / "batch-gcs.yaml").read_text())
    for folder in ("ST-000001", "ST-000002"):
        identified_file(tmp_path / "exports" / folder / "a.dcm")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOOGLE_", "CLOUDSDK_")) and not k.endswith("_EMULATOR_HOST")
    }
    env.update({"HOME": str(tmp_path), "NO_GCE_CHECK": "true", KEY_ENV: KEY.decode()})
    line = one_error(sendit("run", "-f", manifest, env=env), 2)
    assert line.startswith("sendit: no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS")
    assert not (tmp_path / ".sendit" / "ct-2024-06" / "ct-2024-06").exists()


def test_status_without_a_cluster_is_one_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update({"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")})
    line = one_error(sendit("status", "first-batch", env=env), 2)
    assert line == (
        "sendit: no Kubernetes cluster configured: not in a pod, and no usable kubeconfig "
        "($KUBECONFIG or ~/.kube/config)"
    )


def test_locate_finds_the_key_the_run_created(tmp_path: Path, monkeypatch) -> None:
    """No key given: `sendit run` made one in the config folder, and `locate` reads it."""
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.bin").write_bytes(b"\x00" * 10)
    report = tmp_path / "r.json"
    args = ["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--report", str(report)]
    assert main([*args, "--workers", "1"]) == 0
    assert (tmp_path / "config" / "sendit" / "pseudonym.key").is_file()
    ref = json.loads(report.read_text())["errors"][0]["ref"]
    assert main(["locate", ref, str(tmp_path / "in")]) == 0


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
